"""Workers: the same stream and the same voxels for any number of worker threads."""

import numpy as np
import pytest

import voxcodec
from voxcodec import CorruptStreamError
from voxcodec.core import parallel

from conftest import console_script


@pytest.fixture(scope="module")
def vol(sample):
    return np.ascontiguousarray(sample[:20, :64, :96])


@pytest.fixture(scope="module")
def streams(vol):
    """5 layers of 4 slices x 2 tiles: by 1, 2 and 3 workers."""
    opts = dict(block_depth=4, tile=(64, 48))
    return {w: voxcodec.encode(vol, workers=w, **opts) for w in (1, 2, 3)}


def test_the_stream_does_not_depend_on_workers(streams):
    assert streams[1] == streams[2] == streams[3]


@pytest.mark.parametrize("workers", [1, 2, 3, None])
def test_decoding_with_any_workers(vol, streams, workers):
    np.testing.assert_array_equal(voxcodec.decode(streams[1], workers=workers), vol)
    with voxcodec.Decoder(streams[1], workers=workers) as dec:
        np.testing.assert_array_equal(dec[3:17:2, 10:60, ::-3], vol[3:17:2, 10:60, ::-3])
        got = np.concatenate([a for _, _, a in dec.iter_layers(2, 19)])
        np.testing.assert_array_equal(got, vol[2:19])


def test_worker_errors_name_their_block(streams):
    data = bytearray(streams[1])
    with voxcodec.Decoder(bytes(data)) as dec:
        e = dec.index[3]
    data[e.offset + e.length - 5] ^= 0xFF  # inside block 3's payload
    with pytest.raises(CorruptStreamError) as info:
        voxcodec.decode(bytes(data), workers=2)
    assert info.value.block == 3 and str(info.value).startswith("block 3: ")
    with voxcodec.Decoder(bytes(data), workers=2) as dec:
        bad = [i for i, b in dec.iter_blocks(catch=True) if isinstance(b, CorruptStreamError)]
    assert bad == [3]


def test_resolve_workers():
    assert parallel.resolve(None) == parallel.cores() >= 1
    assert parallel.resolve(3) == 3
    with pytest.raises(ValueError):
        parallel.resolve(-1)


def run_cli(*args):
    import subprocess

    res = subprocess.run(console_script("voxcodec", "voxcodec_cli.main") + list(args), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    return res


def test_cli_workers_roundtrip(tmp_path, vol):
    import tifffile

    src = tmp_path / "v.tif"
    tifffile.imwrite(src, vol, photometric="minisblack")
    run_cli("encode", str(src), "-o", str(tmp_path / "v.vxc"), "--preset", "fast", "--block-depth", "5",
            "--workers", "2", "-q")
    run_cli("decode", str(tmp_path / "v.vxc"), "-o", str(tmp_path / "back.tif"), "--workers", "2", "-q")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "back.tif"), vol)
    res = run_cli("verify", str(tmp_path / "v.vxc"), "--against", str(src), "--workers", "2")
    assert res.stdout.startswith("OK")


def test_blocks_code_in_threads_with_the_same_bytes(vol):
    """The native engine releases the GIL: workers are threads, and the stream is still the same for any
    worker count."""
    from concurrent.futures import ThreadPoolExecutor

    opts = dict(preset="fast", block_depth=4, tile=(64, 48))
    enc = voxcodec.Encoder(None, dtype=vol.dtype, slice_shape=vol.shape[1:], workers=2, **opts)
    enc.write(vol)
    assert isinstance(enc._pool, ThreadPoolExecutor)
    enc.close()
    streams = [enc.getvalue()] + [voxcodec.encode(vol, workers=w, **opts) for w in (1, 3)]
    assert streams[0] == streams[1] == streams[2]
    np.testing.assert_array_equal(voxcodec.decode(streams[0], workers=3), vol)


@pytest.mark.parametrize("shape, depth", [
    ((20, 1024, 1024), 5),  # 5 blocks of 4 Mi voxels would leave one core idle at the end: 4
    ((30, 512, 512), 15),
    ((250, 250, 250), 63),
    ((32, 1024, 1024), 4),
    ((3, 2048, 2048), 3),  # at least 4 slices per block, unless the volume is thinner
])
def test_automatic_blocks(shape, depth):
    from voxcodec.core.encoder import auto_block_depth

    assert auto_block_depth(shape[1:], shape[0]) == depth
