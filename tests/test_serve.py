"""``voxcodec serve``: voxcodec-coded zarr arrays and groups, and .vxc streams, served over HTTP as
uncompressed zarr v2 and read back with zarr-python through fsspec's HTTP filesystem, equal to the source
(uint8, uint16, int16; edge chunks; an OME-Zarr 0.5 multiscale group); CORS, preflight, HEAD, ranges,
404 for missing keys, the chunk cache, and the command line (startup line, SIGTERM / Ctrl-C, bad DEST)."""

import json
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
import tifffile

import voxcodec
from conftest import SHARED_DATA, console_script, running

zarr = pytest.importorskip("zarr")
pytest.importorskip("aiohttp")
pytest.importorskip("fsspec")

from voxcodec.storage.serve import ChunkCache, make_server, v2_group_attrs  # noqa: E402
from voxcodec.zarr import VoxCodec  # noqa: E402

SHAPE = (20, 96, 80)
CHUNKS = (8, 40, 32)  # 3 x 3 x 3 chunks, every last one cut short: edge chunks on every axis


@pytest.fixture(scope="module")
def vol_u8():
    """A crop of a real FIB-SEM volume (or of the bundled sample when the shared data is absent)."""
    path = SHARED_DATA / "flyem_fib_ts1.tif"
    if path.exists():
        vol = tifffile.imread(path, key=range(SHAPE[0]))
    else:
        vol = voxcodec.sample_volume()
    return np.ascontiguousarray(vol[:SHAPE[0], :SHAPE[1], :SHAPE[2]])


@pytest.fixture(scope="module")
def vol_u16(vol_u8):
    rng = np.random.default_rng(1)
    return (vol_u8.astype(np.uint16) * 181 + rng.integers(0, 50, vol_u8.shape)).astype(np.uint16)


@pytest.fixture(scope="module")
def vol_i16(vol_u8):
    return (vol_u8.astype(np.int16) - 128) * 97


def _vox_array(path, vol, chunks=CHUNKS, fill_value=0, **kw):
    arr = zarr.create_array(str(path), shape=vol.shape, chunks=chunks, dtype=vol.dtype, fill_value=fill_value,
                            serializer=VoxCodec(preset="fast"), compressors=None, **kw)
    arr[...] = vol
    return arr


def _http(url, method="GET", headers=None):
    """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _options():
    """fsspec HTTP options: a request that hangs fails the test instead of blocking it."""
    import aiohttp

    return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=30)}}


def _store(url):
    return zarr.storage.FsspecStore.from_url(url, storage_options=_options(), read_only=True)


def _open_remote(url, **kw):
    """zarr-python 3 reading the served zarr v2 through fsspec's HTTP filesystem (aiohttp)."""
    return zarr.open_array(_store(url), mode="r", **kw)


# -- zarr-python reads what is served, equal to the source ------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_zarr_v3_array_read_back_over_http(tmp_path, vol_u8, vol_u16, vol_i16, dtype):
    vol = {"uint8": vol_u8, "uint16": vol_u16, "int16": vol_i16}[dtype]
    _vox_array(tmp_path / "em.zarr", vol, fill_value=7)
    with running(tmp_path / "em.zarr") as srv:
        meta = json.loads(_http(srv.url + ".zarray")[2])
        assert meta == {"zarr_format": 2, "shape": list(SHAPE), "chunks": list(CHUNKS),
                        "dtype": {"uint8": "|u1", "uint16": "<u2", "int16": "<i2"}[dtype], "compressor": None,
                        "fill_value": 7, "order": "C", "filters": None, "dimension_separator": "."}
        arr = zarr.open_array(srv.url, mode="r", storage_options=_options())  # a plain URL: format found by probing
        assert arr.metadata.zarr_format == 2 and arr.dtype == vol.dtype and arr.shape == vol.shape
        np.testing.assert_array_equal(arr[:], vol)
        np.testing.assert_array_equal(_open_remote(srv.url, zarr_format=2)[3:17, 50:, 70:], vol[3:17, 50:, 70:])


def test_edge_chunks_are_full_size_and_padded_with_the_fill_value(tmp_path, vol_u16):
    _vox_array(tmp_path / "em.zarr", vol_u16, fill_value=4242)
    with running(tmp_path / "em.zarr") as srv:
        status, headers, body = _http(srv.url + "2.2.2")  # the far corner: 4 x 16 x 16 voxels of 8 x 40 x 32
        assert status == 200 and headers["Content-Type"] == "application/octet-stream"
        assert len(body) == int(np.prod(CHUNKS)) * 2 == int(headers["Content-Length"])
        chunk = np.frombuffer(body, "<u2").reshape(CHUNKS)
        np.testing.assert_array_equal(chunk[:4, :16, :16], vol_u16[16:, 80:, 64:])
        assert (chunk[4:] == 4242).all() and (chunk[:, 16:] == 4242).all() and (chunk[:, :, 16:] == 4242).all()
        inner = np.frombuffer(_http(srv.url + "1.0.1")[2], "<u2").reshape(CHUNKS)
        np.testing.assert_array_equal(inner, vol_u16[8:16, 0:40, 32:64])


def test_group_with_two_levels_and_ome_metadata(tmp_path, vol_u8):
    """An OME-Zarr 0.5 multiscale group (as voxcodec convert writes): zarr v2 clients see OME-NGFF 0.4."""
    root = zarr.open_group(str(tmp_path / "em.ome.zarr"), mode="w")
    half = vol_u8[::2, ::2, ::2].copy()
    ome = {"version": "0.5", "multiscales": [{
        "name": "em", "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
        "datasets": [{"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [8.0 * 2 ** i] * 3}]}
                     for i in range(2)]}]}
    root.attrs["ome"] = ome
    for name, v in (("0", vol_u8), ("1", half)):
        a = root.create_array(name, shape=v.shape, chunks=(8, 32, 32), dtype="uint8",
                              serializer=VoxCodec(preset="fast"), compressors=None, dimension_names=("z", "y", "x"))
        a[...] = v
    with running(tmp_path / "em.ome.zarr") as srv:
        assert json.loads(_http(srv.url + ".zgroup")[2]) == {"zarr_format": 2}
        attrs = json.loads(_http(srv.url + ".zattrs")[2])
        assert "ome" not in attrs and attrs["multiscales"][0]["version"] == "0.4"
        assert attrs["multiscales"][0]["datasets"] == ome["multiscales"][0]["datasets"]
        assert attrs["multiscales"][0]["axes"] == ome["multiscales"][0]["axes"]
        # each level alone keeps its voxel size: neuroglancer's dimension_units (level 1: 16 nm)
        assert json.loads(_http(srv.url + "1/.zattrs")[2]) == {"_ARRAY_DIMENSIONS": ["z", "y", "x"],
                                                               "dimension_units": ["16 nm"] * 3}
        assert json.loads(_http(srv.url + "0/.zattrs")[2])["dimension_units"] == ["8 nm"] * 3
        assert srv.neuroglancer_state()["dimensions"] == {"x": [8e-9, "m"], "y": [8e-9, "m"], "z": [8e-9, "m"]}
        group = zarr.open_group(_store(srv.url), mode="r", zarr_format=2)
        assert sorted(group.array_keys()) == ["0", "1"]
        assert group.attrs["multiscales"][0]["name"] == "em"
        np.testing.assert_array_equal(group["0"][:], vol_u8)
        np.testing.assert_array_equal(group["1"][:], half)
        np.testing.assert_array_equal(_open_remote(srv.url + "1")[:], half)
        consolidated = json.loads(_http(srv.url + ".zmetadata")[2])["metadata"]
        assert {".zgroup", ".zattrs", "0/.zarray", "1/.zarray", "1/.zattrs"} <= set(consolidated)
        listing = _http(srv.url)[2].decode()
        assert 'href="/0/"' in listing and 'href="/1/"' in listing


def test_vxc_stream_served_by_blocks(tmp_path, vol_i16):
    path = tmp_path / "em.vxc"
    path.write_bytes(voxcodec.encode(vol_i16, preset="fast", block_depth=8, tile=(64, 48)))
    with running(path) as srv:
        meta = json.loads(_http(srv.url + ".zarray")[2])
        assert meta["chunks"] == [8, 64, 48] and meta["dtype"] == "<i2" and meta["fill_value"] == 0
        arr = _open_remote(srv.url)
        np.testing.assert_array_equal(arr[:], vol_i16)
        edge = np.frombuffer(_http(srv.url + "2.1.1")[2], "<i2").reshape(8, 64, 48)  # 4 x 32 x 32 voxels
        np.testing.assert_array_equal(edge[:4, :32, :32], vol_i16[16:, 64:, 48:])
        assert not edge[4:].any() and not edge[:, 32:].any() and not edge[:, :, 32:].any()


def test_arrays_with_other_codecs_are_served_beside_voxcodec_ones(tmp_path, vol_u8):
    root = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    root.create_array("em", shape=SHAPE, chunks=CHUNKS, dtype="uint8", serializer=VoxCodec(preset="fast"),
                      compressors=None)[...] = vol_u8
    labels = (vol_u8 > 128).astype(np.uint32)
    root.create_array("labels", shape=SHAPE, chunks=(10, 48, 48), dtype="uint32")[...] = labels  # zstd
    with running(tmp_path / "g.zarr") as srv:
        np.testing.assert_array_equal(_open_remote(srv.url + "labels")[:], labels)
        np.testing.assert_array_equal(_open_remote(srv.url + "em")[:], vol_u8)


def test_sharded_array_served_by_inner_chunks(tmp_path, vol_u8):
    _vox_array(tmp_path / "sh.zarr", vol_u8, chunks=(10, 32, 32), shards=(20, 64, 64))
    with running(tmp_path / "sh.zarr") as srv:
        assert json.loads(_http(srv.url + ".zarray")[2])["chunks"] == [10, 32, 32]
        np.testing.assert_array_equal(_open_remote(srv.url)[:], vol_u8)


def test_zarr_format_2_array_with_the_numcodecs_codec(tmp_path, vol_u16):
    from voxcodec.numcodecs import VoxCodec as VoxCodecV2

    arr = zarr.create_array(str(tmp_path / "v2.zarr"), shape=SHAPE, chunks=CHUNKS, dtype="uint16",
                            compressors=VoxCodecV2(preset="fast"), zarr_format=2, fill_value=5)
    arr[...] = vol_u16
    with running(tmp_path / "v2.zarr") as srv:
        meta = json.loads(_http(srv.url + ".zarray")[2])
        assert meta["compressor"] is None and meta["fill_value"] == 5 and meta["dimension_separator"] == "."
        np.testing.assert_array_equal(_open_remote(srv.url)[:], vol_u16)


# -- HTTP behaviour -------------------------------------------------------------------------------------------
def test_missing_keys_are_404_and_read_as_fill_value(tmp_path, vol_u8):
    arr = zarr.create_array(str(tmp_path / "sparse.zarr"), shape=SHAPE, chunks=CHUNKS, dtype="uint8", fill_value=9,
                            serializer=VoxCodec(preset="fast"), compressors=None)
    arr[:8, :40, :32] = vol_u8[:8, :40, :32]  # only chunk 0.0.0 is stored
    with running(tmp_path / "sparse.zarr") as srv:
        assert _http(srv.url + "0.0.0")[0] == 200
        for key in ("1.1.1", "3.0.0", "0.0", "0.0.0.0", "a.b.c", "00.0.0", "0/0/0", "zarr.json", ".zgroup",
                    "nothere/.zarray"):
            status, headers, _ = _http(srv.url + key)
            assert status == 404, key
            assert headers["Access-Control-Allow-Origin"] == "*"
        assert _http(srv.url + "1.1.1", method="HEAD")[0] == 404
        back = _open_remote(srv.url)[:]
        want = np.full(SHAPE, 9, np.uint8)
        want[:8, :40, :32] = vol_u8[:8, :40, :32]
        np.testing.assert_array_equal(back, want)
        assert srv.cache.decodes == 1  # the chunks that are not stored were never decoded


def test_cors_preflight_head_and_range(tmp_path, vol_u8):
    _vox_array(tmp_path / "em.zarr", vol_u8)
    with running(tmp_path / "em.zarr") as srv:
        status, headers, _ = _http(srv.url + "0.0.0")
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Server"] == f"voxcodec/{voxcodec.__version__}"
        assert _http(srv.url + ".zarray")[1]["Access-Control-Allow-Origin"] == "*"
        status, headers, body = _http(srv.url + "0.0.0", method="OPTIONS", headers={
            "Origin": "http://viewer.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range"})
        assert status == 204 and body == b""
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert "GET" in headers["Access-Control-Allow-Methods"] and "range" in headers["Access-Control-Allow-Headers"]
        status, headers, body = _http(srv.url + "1.2.0", method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == int(np.prod(CHUNKS))
        assert srv.cache.decodes == 1  # the GET of 0.0.0 above; HEAD does not decode
        status, headers, body = _http(srv.url + "1.0.0", headers={"Range": "bytes=1280-1289"})
        assert status == 206 and headers["Content-Range"] == f"bytes 1280-1289/{int(np.prod(CHUNKS))}"
        assert body == vol_u8[8:16, :40, :32].tobytes()[1280:1290]
        assert _http(srv.url + "1.0.0", headers={"Range": "bytes=-5"})[2] == vol_u8[8:16, :40, :32].tobytes()[-5:]
        assert _http(srv.url + "1.0.0", headers={"Range": "bytes=99999999-"})[0] == 416


def test_cache_serves_a_second_request_without_decoding(tmp_path, vol_u8, monkeypatch):
    from voxcodec.storage import chunks

    calls = []
    real = chunks.decode_chunk
    monkeypatch.setattr(chunks, "decode_chunk", lambda *a, **k: calls.append(1) or real(*a, **k))
    _vox_array(tmp_path / "em.zarr", vol_u8)
    with running(tmp_path / "em.zarr") as srv:
        first = _http(srv.url + "1.1.1")[2]
        assert len(calls) == 1 and srv.cache.decodes == 1
        assert _http(srv.url + "1.1.1")[2] == first
        assert len(calls) == 1 and srv.cache.decodes == 1 and srv.cache.hits == 1
        _http(srv.url + "0.1.1")
        assert len(calls) == 2
    with running(tmp_path / "em.zarr", cache_mb=0) as srv:  # no cache: every request decodes
        _http(srv.url + "1.1.1")
        _http(srv.url + "1.1.1")
        assert len(calls) == 4 and srv.cache.decodes == 2 and len(srv.cache) == 0


def test_vxc_cache_counts_block_decodes(tmp_path, vol_u8, monkeypatch):
    from voxcodec.core import learn

    calls = []
    real = learn.decode_block
    monkeypatch.setattr(learn, "decode_block", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = tmp_path / "em.vxc"
    path.write_bytes(voxcodec.encode(vol_u8, preset="fast", block_depth=10, tile=(48, 48)))
    with running(path) as srv:
        for _ in range(3):
            assert _http(srv.url + "1.1.0")[0] == 200
        assert len(calls) == 1  # one block per chunk, decoded once


def test_chunk_cache_bounds_bytes_and_decodes_once_under_concurrency():
    cache = ChunkCache(max_bytes=250)
    for k in range(4):
        cache.get(k, lambda: bytes(100))
    assert len(cache) == 2 and cache.nbytes == 200  # least recently used dropped
    cache.get(2, lambda: pytest.fail("cached"))
    cache.get(4, lambda: bytes(100))
    assert 2 in cache._items and 3 not in cache._items
    assert cache.get("big", lambda: bytes(300)) == bytes(300) and "big" not in cache._items

    started, release, computed = threading.Event(), threading.Event(), []

    def slow():
        computed.append(1)
        started.set()
        release.wait(10)
        return b"x"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(5)]
    threads[0].start()
    started.wait(10)
    for t in threads[1:]:
        t.start()
    while cache.shared < 4:  # the others are waiting on the first decode
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join(10)
    assert computed == [1] and results == [b"x"] * 5

    def boom():
        raise RuntimeError("damaged")

    with pytest.raises(RuntimeError):
        cache.get("bad", boom)
    assert cache.get("bad", lambda: b"ok") == b"ok"  # a failure is not cached


def test_damaged_chunk_is_a_500_and_the_server_goes_on(tmp_path, vol_u8):
    arr = _vox_array(tmp_path / "em.zarr", vol_u8)
    key = tmp_path / "em.zarr" / "c" / "1" / "1" / "1"
    data = bytearray(key.read_bytes())
    data[len(data) // 2] ^= 0xFF
    key.write_bytes(bytes(data))
    with running(tmp_path / "em.zarr") as srv:
        status, _, body = _http(srv.url + "1.1.1")
        assert status == 500 and b"1.1.1" in body
        assert _http(srv.url + "0.0.0")[2] == vol_u8[:8, :40, :32].tobytes()
    assert arr.shape == SHAPE


def test_v2_group_attrs_translation():
    attrs = {"ome": {"version": "0.5", "multiscales": [{"axes": [], "datasets": [], "name": "x"}],
                     "omero": {"channels": []}, "image-label": {"colors": []}}, "other": 1}
    out = v2_group_attrs(attrs)
    assert out == {"other": 1, "multiscales": [{"version": "0.4", "axes": [], "datasets": [], "name": "x"}],
                   "omero": {"channels": []}, "image-label": {"version": "0.4", "colors": []}}
    assert v2_group_attrs({"a": [1]}) == {"a": [1]}


# -- bad sources --------------------------------------------------------------------------------------------
def test_bad_sources_are_refused(tmp_path, vol_u8):
    from voxcodec.errors import UnsupportedError

    plain = zarr.create_array(str(tmp_path / "plain.zarr"), shape=(4, 8, 8), chunks=(4, 8, 8), dtype="uint8")
    plain[...] = 1
    (tmp_path / "folder").mkdir()
    (tmp_path / "x.tif").write_bytes(b"II*\x00" + bytes(100))
    for bad, msg in ((tmp_path / "missing.zarr", "does not exist"), (tmp_path / "plain.zarr", "no voxcodec-coded"),
                     (tmp_path / "folder", "not a zarr"), (tmp_path / "x.tif", "neither a .vxc")):
        with pytest.raises(UnsupportedError, match=msg):
            make_server(bad, port=0)


# -- command line -------------------------------------------------------------------------------------------
def _as_in_a_terminal():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background job may inherit SIGINT ignored


def _start_cli(*args):
    proc = subprocess.Popen(console_script("voxcodec", "voxcodec_cli.main") + ["serve", *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_in_a_terminal)
    line = proc.stdout.readline()  # the startup line, once the server listens
    m = re.search(r"at (http://127\.0\.0\.1:(\d+)/)", line)
    if not m:
        proc.kill()
        pytest.fail(f"no startup line: {line!r} {proc.communicate()}")
    return proc, m.group(1), line


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops_cleanly(tmp_path, vol_u8, sig):
    _vox_array(tmp_path / "em.zarr", vol_u8)
    proc, url, line = _start_cli(str(tmp_path / "em.zarr"), "--cache-mb", "16")
    try:
        assert "zarr v2" in line and f"zarr.open_array({url!r})" in line
        link = proc.stdout.readline()  # the neuroglancer link, its state in the fragment
        assert link.startswith("neuroglancer") and "https://neuroglancer-demo.appspot.com/#!" in link
        state = json.loads(urllib.parse.unquote(link.strip().split("#!", 1)[1]))
        assert state["layers"][0]["source"] == f"zarr2://{url}" and state["layout"] == "xy"
        np.testing.assert_array_equal(_open_remote(url)[:], vol_u8)
        assert _http(url + "9.9.9")[0] == 404
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped serving" in err and "27 chunks decoded" in err


def test_cli_bad_dest_exits_2_with_one_line(tmp_path):
    (tmp_path / "notzarr").mkdir()
    for dest in (tmp_path / "missing", tmp_path / "notzarr"):
        res = subprocess.run(console_script("voxcodec", "voxcodec_cli.main") + ["serve", str(dest), "--port", "0"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("voxcodec: error:") and str(dest) in lines[0]


def test_cli_port_in_use_exits_2(tmp_path, vol_u8):
    from voxcodec_cli.main import main

    _vox_array(tmp_path / "em.zarr", vol_u8)
    with running(tmp_path / "em.zarr") as srv:
        port = srv.server_address[1]
        assert main(["serve", str(tmp_path / "em.zarr"), "--port", str(port)]) == 2



def test_serves_what_voxcodec_convert_writes_as_valid_ome_zarr_04(tmp_path, vol_u8):
    """A multiscale OME-Zarr 0.5 from ``voxcodec convert``, served: an OME-NGFF 0.4 image over zarr v2."""
    convert = pytest.importorskip("voxcodec.storage.convert")
    v04 = pytest.importorskip("ome_zarr_models.v04.image")
    np.save(tmp_path / "v.npy", vol_u8)
    convert.convert(str(tmp_path / "v.npy"), str(tmp_path / "out.ome.zarr"), levels=2, preset="fast", chunks=CHUNKS,
                    workers=1, voxel_size=(8, 4, 4), unit="nm")
    with running(tmp_path / "out.ome.zarr") as srv:
        group = zarr.open_group(_store(srv.url), mode="r", zarr_format=2)
        image = v04.Image.from_zarr(group)  # validates the attributes and the arrays they name
        ms = image.attributes.multiscales[0]
        assert [d.path for d in ms.datasets] == ["0", "1"] and ms.axes[0].unit == "nanometer"
        np.testing.assert_array_equal(group["0"][:], vol_u8)
        assert group["1"].shape == (20, 48, 40)
        np.testing.assert_array_equal(group["1"][:], zarr.open_array(str(tmp_path / "out.ome.zarr" / "1"))[:])


def test_levels_are_listed_in_order_and_the_example_opens_level_0(tmp_path, vol_u8, monkeypatch):
    """The store lists a group's members in any order (a directory listing): the server sorts them by
    path, numbers as numbers, and its startup line suggests the multiscale group's first level."""
    from voxcodec.storage.serve import _natural

    assert sorted(["10", "2", "s1/0", "0", "s0/1"], key=_natural) == ["0", "2", "10", "s0/1", "s1/0"]
    root = zarr.open_group(str(tmp_path / "em.ome.zarr"), mode="w")
    levels = [vol_u8[:, :: 2 ** i, :: 2 ** i].copy() for i in range(3)]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
        "datasets": [{"path": str(i),
                      "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0 ** i, 2.0 ** i]}]}
                     for i in range(3)]}]}
    for i in (2, 0, 1):
        a = root.create_array(str(i), shape=levels[i].shape, chunks=(8, 32, 32), dtype="uint8",
                              serializer=VoxCodec(preset="fast"), compressors=None)
        a[...] = levels[i]
    members = zarr.Group.members
    monkeypatch.setattr(zarr.Group, "members", lambda self, **kw: list(reversed(list(members(self, **kw)))))
    with running(tmp_path / "em.ome.zarr") as srv:
        assert [p for p, a in srv.nodes.items() if a.kind == "array"] == ["0", "1", "2"]
        assert srv.example().endswith(f"zarr.open_array({srv.url + '0'!r})")
        assert re.search(r"of 3 arrays \(0: .*; 1: .*; 2: ", srv.describe())



def test_neuroglancer_state_shows_xy_sections_with_the_voxel_size(tmp_path, vol_u8):
    """The printed link's state: x, y, z display dimensions in meters from the source's voxel size (a
    (z, y, x) array otherwise shows a z-y strip in neuroglancer's xy panel), the source, the xy layout;
    a .vxc stream's voxel size reaches its served attributes too."""
    from voxcodec.storage.serve import _dimension_units

    path = tmp_path / "em.vxc"
    path.write_bytes(voxcodec.encode(vol_u8, preset="fast", metadata={"voxel_size": [30, 6, 6], "unit": "nanometer"}))
    with running(path) as srv:
        assert json.loads(_http(srv.url + ".zattrs")[2])["dimension_units"] == ["30 nm", "6 nm", "6 nm"]
        state = srv.neuroglancer_state()
        assert state["dimensions"] == {"x": [6e-9, "m"], "y": [6e-9, "m"], "z": [3e-8, "m"]}
        assert state["layers"] == [{"type": "image", "source": f"zarr2://{srv.url}", "name": "em"}]
        assert state["layout"] == "xy"
        url = srv.neuroglancer_url("http://127.0.0.1:9999")
        assert url.startswith("http://127.0.0.1:9999/#!")
        assert json.loads(urllib.parse.unquote(url.split("#!", 1)[1])) == state
    plain = tmp_path / "plain.vxc"
    plain.write_bytes(voxcodec.encode(vol_u8, preset="fast"))
    with running(plain) as srv:  # no voxel size: unitless dimensions, still x, y, z
        assert "dimension_units" not in json.loads(_http(srv.url + ".zattrs")[2])
        assert srv.neuroglancer_state()["dimensions"] == {"x": [1, ""], "y": [1, ""], "z": [1, ""]}
    assert _dimension_units((None, 2.5, 2.5), "angstrom") == [None, "250 pm", "250 pm"]
    assert _dimension_units((40, 4, 4), "micrometer") == ["40 um", "4 um", "4 um"]
    assert _dimension_units(None, "nanometer") is None and _dimension_units((1, 1, 1), None) is None
