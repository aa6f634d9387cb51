"""The Decoder as a lazy, thread-safe numpy-like array: basic indexing like numpy, only the blocks
holding requested voxels decoded, ``np.asarray``, dask.array.from_array, concurrent reads."""

import functools
import threading

import numpy as np
import pytest

import voxcodec
from voxcodec import CorruptStreamError, Decoder

SHAPE = (17, 100, 90)  # 4 z-layers (5, 5, 5, 2) x 3 tile rows (48, 48, 4) x 3 tile columns (40, 40, 10)


@pytest.fixture(scope="module")
def vol_u8():
    return np.ascontiguousarray(voxcodec.sample_volume()[:SHAPE[0], :SHAPE[1], :SHAPE[2]])


@pytest.fixture(scope="module")
def vol_u16(vol_u8):
    ramp = (np.arange(SHAPE[2], dtype=np.uint16) * 13) % 251
    return (vol_u8.astype(np.uint16) * 211 + ramp).astype(np.uint16)


def _encode(vol):
    return voxcodec.encode(vol, block_depth=5, tile=(48, 40))


@pytest.fixture(scope="module")
def stream_u8(vol_u8):
    return _encode(vol_u8)


@pytest.fixture(scope="module")
def stream_u16(vol_u16):
    return _encode(vol_u16)


@pytest.fixture(scope="module", params=["uint8", "uint16"])
def case(request, vol_u8, vol_u16, stream_u8, stream_u16):
    return (vol_u8, stream_u8) if request.param == "uint8" else (vol_u16, stream_u16)


@pytest.fixture(scope="module")
def thin(vol_u8, tmp_path_factory):
    """(volume, path) of a file stream of one-slice blocks: a block decodes in ~3 ms, not ~10 ms, so
    the many reads of the thread test stay quick."""
    vol = np.ascontiguousarray(vol_u8[:8])
    path = tmp_path_factory.mktemp("dec") / "thin.vxc"
    path.write_bytes(voxcodec.encode(vol, block_depth=1, tile=(48, 40)))
    return vol, path


def _same(got, want, key):
    assert type(got) is type(want), (key, type(got), type(want))
    assert np.shape(got) == np.shape(want) and np.asarray(got).dtype == np.asarray(want).dtype, (key, np.shape(got))
    np.testing.assert_array_equal(got, want, err_msg=repr(key))


def _cached(dec):
    """Memoise read_block on this Decoder (for tests of many index expressions)."""
    cached = functools.lru_cache(maxsize=None)(dec.read_block)

    def read_block(i, out=None):
        blk = cached(i)
        if out is None:
            return blk
        out[...] = blk  # the decoder reads a whole block into ``out`` when it can
        return out

    dec.read_block = read_block
    return dec


def test_array_attributes(case):
    vol, data = case
    dec = Decoder(data)
    assert dec.shape == vol.shape and dec.dtype == vol.dtype and dec.ndim == 3 and dec.size == vol.size
    assert dec.nbytes == dec.stream_bytes == len(data)  # the stream's size, not the decoded one
    assert len(dec) == len(dec.index) == 4 * 3 * 3  # blocks, not slices


EXPLICIT_KEYS = [
    0, 16, -1, -17, np.int64(3), slice(None), slice(2, 9), slice(None, None, 2), slice(None, None, -1),
    slice(15, 3, -4), slice(-3, None), slice(5, 5), slice(10, 2), slice(100, 200), slice(-100, 3),
    Ellipsis, (), (3, 50, 20), (-1, -1, -1), (0, 0, 0), (16, 99, 89), (np.int32(-2), np.uint8(7)),
    (slice(1, 12, 3), slice(None, None, -7), 5), (..., 7), (2, ...), (..., slice(10, 80, 9)),
    (slice(4, 6), slice(40, 60), slice(30, 50)), (slice(None), 99), (slice(None), slice(None), -1),
    (slice(None, None, -1),) * 3, (slice(0, 17, 16), slice(0, 100, 47), slice(89, None, -88)),
    (4, slice(47, 49), slice(39, 41)), (slice(None), slice(30, 30)), (5, ..., slice(None, None, -3)),
    (slice(None, 1), slice(96, None), slice(80, None)), (..., 3, 4), (slice(14, None, 5), 0, ...),
]


@pytest.fixture(scope="module")
def cached(case):
    """(volume, Decoder whose read_block is memoised): indexing tests without decoding blocks again."""
    vol, data = case
    return vol, _cached(Decoder(data, workers=1))  # in-process: read_block is memoised


@pytest.mark.parametrize("key", EXPLICIT_KEYS, ids=repr)
def test_basic_indexing_matches_numpy(cached, key):
    vol, dec = cached
    _same(dec[key], vol[key], key)


def _random_slice(rng, n):
    def bound():
        return None if rng.random() < 0.25 else int(rng.integers(-n - 5, n + 6))
    step = None if rng.random() < 0.3 else int(rng.choice([-9, -4, -2, -1, 1, 2, 3, 7, 50]))
    return slice(bound(), bound(), step)


def test_random_index_expressions_match_numpy(cached):
    vol, dec = cached
    rng = np.random.default_rng(1)
    for _ in range(400):
        full = [int(rng.integers(-n, n)) if rng.random() < 0.3 else _random_slice(rng, n) for n in vol.shape]
        form = rng.random()
        if form < 0.3:  # a prefix: the axes left out are whole
            key = tuple(full[:int(rng.integers(0, 4))])
        elif form < 0.5:  # '...' standing for a run of whole axes
            a = int(rng.integers(0, 4))
            b = int(rng.integers(a, 4))
            key = tuple(full[:a]) + (Ellipsis,) + tuple(full[b:])
        else:
            key = tuple(full)
        if len(key) == 1 and rng.random() < 0.5:
            key = key[0]
        _same(dec[key], vol[key], key)


def _recorder(dec):
    calls = []
    real = dec.read_block

    def read_block(i, *args):
        calls.append(i)
        return real(i, *args)
    dec.read_block = read_block
    return calls


def _touching(dec, z, y, x):
    """Blocks holding at least one of the voxels at index lists z, y, x (brute force)."""
    return sorted(i for i, e in enumerate(dec.index)
                  if any(e.z0 <= a < e.z0 + e.depth for a in z) and any(e.y0 <= b < e.y0 + e.h for b in y)
                  and any(e.x0 <= c < e.x0 + e.w for c in x))


@pytest.mark.parametrize("key", [
    (slice(None), slice(50, 60), slice(45, 50)),  # one tile column x row, every layer
    (3, 0, 0),  # one voxel: one block
    (slice(6, 8), slice(30, 70), slice(35, 45)),  # 2 x 2 tiles of one layer
    (slice(None), slice(None), slice(None, None, 50)),  # x = 0, 50: skips the last tile column
    (slice(16, None), slice(96, None), slice(85, None)),  # the small corner block
    (slice(None, None, 5), 10, slice(None, None, -1)),  # z = 0, 5, 10, 15: one slice of each layer
    (slice(0, 17, 12), slice(47, 49), 40),  # z = 0, 12
])
def test_only_blocks_holding_requested_voxels_are_decoded(vol_u8, stream_u8, key):
    dec = Decoder(stream_u8, workers=1)  # in-process: its read_block calls are recorded
    calls = _recorder(dec)
    got = dec[key]
    _same(got, vol_u8[key], key)
    z, y, x = (np.arange(n)[k] for n, k in zip(vol_u8.shape, [k if isinstance(k, slice) else [k] for k in key]))
    want = _touching(dec, z, y, x)
    assert sorted(calls) == want and len(set(calls)) == len(calls)
    assert 0 < len(want) < len(dec.index)


def test_blocks_in_box_and_z_reads(vol_u8, stream_u8):
    dec = Decoder(stream_u8, workers=1)
    assert dec.blocks_in_box(0, 17) == list(range(len(dec.index)))
    assert dec.blocks_in_box(0, 17, 50, 60, 45, 50) == _touching(dec, range(17), range(50, 60), range(45, 50))
    assert dec.blocks_in_box(5, 10, 96, None, 80) == _touching(dec, range(5, 10), range(96, 100), range(80, 90))
    calls = _recorder(dec)
    seen = []
    np.testing.assert_array_equal(dec.read(4, 6, progress=seen.append), vol_u8[4:6])
    assert sorted(calls) == dec.blocks_in(4, 6) and len(seen) == len(calls) == 18
    np.testing.assert_array_equal(dec.read(), vol_u8)
    np.testing.assert_array_equal(dec.read(-3), vol_u8[-3:])
    assert dec.read(9, 3).shape == (0, 100, 90)
    e = dec.index[7]
    np.testing.assert_array_equal(dec.read_block(7), vol_u8[e.z0:e.z0 + e.depth, e.y0:e.y0 + e.h, e.x0:e.x0 + e.w])


@pytest.mark.parametrize("key", [17, -18, (0, 100), (0, 0, 90), (0, -101), (0, 0, 0, 0), (..., 0, 0, 0, 0),
                                 (..., ...), (1, ..., 2, ...)], ids=repr)
def test_index_errors(stream_u8, vol_u8, key):
    with pytest.raises(IndexError):
        vol_u8[key]
    with pytest.raises(IndexError):
        Decoder(stream_u8)[key]


@pytest.mark.parametrize("key", [[1, 2], np.array([1, 2]), np.zeros(17, bool), np.array(True), None,
                                 (slice(None), None), True, np.True_, 1.5, "a", (0, [1]), {1}],
                         ids=lambda k: type(k).__name__ + repr(k)[:20])
def test_unsupported_indices_raise_type_error(stream_u8, key):
    dec = Decoder(stream_u8)
    calls = _recorder(dec)
    with pytest.raises(TypeError, match="basic indices"):
        dec[key]
    assert calls == []


def test_zero_step_is_a_value_error_as_in_numpy(stream_u8, vol_u8):
    with pytest.raises(ValueError):
        vol_u8[::0]
    with pytest.raises(ValueError):
        Decoder(stream_u8)[::0]


def test_asarray(case):
    vol, data = case
    dec = Decoder(data)
    _same(np.asarray(dec), vol, "asarray")
    _same(np.array(dec), vol, "array")
    _same(np.asarray(dec, dtype=np.int32), vol.astype(np.int32), "asarray int32")
    with pytest.raises(ValueError, match="copy=False"):
        np.asarray(dec, copy=False)


def test_dask_from_array_threaded(case, tmp_path):
    da = pytest.importorskip("dask.array")
    import dask

    vol, data = case
    path = tmp_path / "v.vxc"
    path.write_bytes(data)
    with Decoder(path) as dec:
        x = da.from_array(dec, chunks=(5, 48, 40))
        assert x.shape == vol.shape and x.dtype == vol.dtype
        calls = _recorder(dec)
        with dask.config.set(scheduler="threads", num_workers=4):
            np.testing.assert_array_equal(x.compute(), vol)
            assert sorted(calls) == list(range(len(dec.index)))  # chunks = blocks: each decoded once
            np.testing.assert_array_equal(x[3:12, 10:90:3, ::-1].compute(), vol[3:12, 10:90:3, ::-1])
            assert int(x.max().compute()) == int(vol.max())


def test_broken_index_raises_instead_of_returning_garbage(vol_u8, stream_u8):
    dec = Decoder(stream_u8)
    lost = dec.index.pop(4)  # block (z 0:5, y 48:96, x 40:80) no longer in the index
    with pytest.raises(CorruptStreamError, match="does not cover"):
        dec[2, 60, 50]
    with pytest.raises(CorruptStreamError, match="does not cover"):
        dec.read(0, 5)
    with pytest.raises(CorruptStreamError, match="does not cover"):
        np.asarray(dec)
    assert (lost.z0, lost.y0, lost.x0) == (0, 48, 40)
    np.testing.assert_array_equal(dec[:, :48], vol_u8[:, :48])  # regions it did not hold still read
    np.testing.assert_array_equal(dec[5:], vol_u8[5:])


def test_threads_share_one_path_backed_decoder(thin):
    """4 threads x 100 random reads on ONE Decoder over a file: right voxels, no (false) errors."""
    vol, path = thin
    dec = Decoder(path)
    errors, bad = [], []
    start = threading.Barrier(4)

    def worker(seed):
        rng = np.random.default_rng(seed)
        start.wait()
        for _ in range(100):
            z0, y0, x0 = (int(rng.integers(0, n)) for n in vol.shape)
            key = (slice(z0, z0 + int(rng.integers(1, 3))), slice(y0, y0 + int(rng.integers(1, 9))),
                   slice(x0, x0 + int(rng.integers(1, 9))))
            try:
                if not np.array_equal(dec[key], vol[key]):
                    bad.append(key)
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dec.close()
    assert not errors, errors[:5]
    assert not bad, bad[:5]


def test_decoder_pickles_for_process_schedulers(tmp_path):
    import pickle

    import dask
    import dask.array as da

    vol = voxcodec.sample_volume()[:10, :64, :64]
    path = tmp_path / "v.vxc"
    path.write_bytes(voxcodec.encode(vol, block_depth=5))
    for source in (str(path), path.read_bytes()):
        with voxcodec.Decoder(source) as dec:
            copy = pickle.loads(pickle.dumps(dec))
            np.testing.assert_array_equal(copy[2:7, 5:60], vol[2:7, 5:60])
            copy.close()
            lazy = da.from_array(dec, chunks=(5, 64, 64))
            assert lazy.name == da.from_array(dec, chunks=(5, 64, 64)).name  # a stable dask name
            with dask.config.set(scheduler="processes", num_workers=2):
                np.testing.assert_array_equal(lazy.compute(), vol)
    with open(path, "rb") as f, voxcodec.Decoder(f) as dec, pytest.raises(TypeError, match="by path"):
        pickle.dumps(dec)


@pytest.mark.parametrize("workers", [1, 2])
def test_whole_blocks_decode_straight_into_the_result(vol_u8, stream_u8, workers):
    """A block the request holds whole, over full slices, is decoded into the result itself (no block
    array and copy); tiles and partial blocks go through a block array. Both give the same voxels."""
    for data, tiled in ((voxcodec.encode(vol_u8, block_depth=5), False), (stream_u8, True)):
        _check_straight_reads(vol_u8, Decoder(data, workers=workers), tiled)


def _check_straight_reads(vol_u8, dec, tiled):
    outs = {}
    real = dec.read_block

    def read_block(i, out=None):
        outs[i] = out
        return real(i, out)

    dec.read_block = read_block
    np.testing.assert_array_equal(dec.read(), vol_u8)
    straight = {i for i, o in outs.items() if o is not None}
    assert straight == (set() if tiled else set(range(len(dec.index)))) and len(outs) == len(dec.index)
    outs.clear()
    e = dec.index[0]
    np.testing.assert_array_equal(dec[e.z0 + 1:e.z0 + e.depth], vol_u8[e.z0 + 1:e.z0 + e.depth])  # part of a block
    assert all(o is None for o in outs.values())
