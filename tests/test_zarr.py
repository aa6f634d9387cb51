"""voxcodec and the PNG / JPEG-XL baselines as zarr v3 codecs and numcodecs (zarr v2) codecs."""

import hashlib
import pickle

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
numcodecs = pytest.importorskip("numcodecs")

import voxcodec.numcodecs as vn  # noqa: E402
import voxcodec.zarr as vz  # noqa: E402

READER = """
import hashlib, sys, zarr  # a fresh process that never imports voxcodec itself
for path in sys.argv[1:]:
    store = zarr.storage.ZipStore(path, mode="r") if path.endswith(".zip") else path
    a = zarr.open_array(store, mode="r")[...]
    print(hashlib.sha256(a.tobytes()).hexdigest(), a.dtype, a.shape)
    if hasattr(store, "close"):
        store.close()
"""


def _volume(sample, dtype, shape=(10, 50, 45)):
    v = np.ascontiguousarray(sample[:shape[0], :shape[1], :shape[2]])
    return v if dtype == np.uint8 else v.astype(np.uint16) * 37 + 500


def _codecs(kind, fmt):
    if fmt == "v2":
        return {"voxcodec": vn.VoxCodec(preset="fast"), "voxcodec_png": vn.PngCodec(level=6),
                "voxcodec_jpegxl": vn.JpegXlCodec(effort=3)}[kind]
    return {"voxcodec": vz.VoxCodec(preset="fast"), "voxcodec_png": vz.PngCodec(level=6),
            "voxcodec_jpegxl": vz.JpegXlCodec(effort=3)}[kind]


def _create(store, vol, kind, fmt, chunks=(4, 32, 32)):
    codec = _codecs(kind, fmt)
    if fmt == "v2":
        return zarr.create_array(store, shape=vol.shape, chunks=chunks, dtype=vol.dtype, compressors=codec,
                                 zarr_format=2, fill_value=0)
    if fmt == "v3-sharded":
        return zarr.create_array(store, shape=vol.shape, chunks=chunks, shards=(8, 64, 64), dtype=vol.dtype,
                                 serializer=codec, compressors=None, fill_value=0)
    return zarr.create_array(store, shape=vol.shape, chunks=chunks, dtype=vol.dtype, serializer=codec,
                             compressors=None, fill_value=0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("fmt", ["v3", "v3-sharded", "v2"])
@pytest.mark.parametrize("kind", ["voxcodec", "voxcodec_png", "voxcodec_jpegxl"])
def test_write_then_read_in_a_fresh_process(tmp_path, sample, kind, fmt, dtype):
    """Chunks (4, 32, 32) do not divide (10, 50, 45): edge chunks arrive padded."""
    vol = _volume(sample, dtype)
    paths = []
    for store_kind in ("dir", "zip"):
        path = tmp_path / f"a.{store_kind}"
        path = str(path) + (".zip" if store_kind == "zip" else ".zarr")
        store = zarr.storage.ZipStore(path, mode="w") if store_kind == "zip" else path
        arr = _create(store, vol, kind, fmt)
        arr[...] = vol
        np.testing.assert_array_equal(arr[...], vol)
        if store_kind == "zip":
            store.close()
        paths.append(path)
    want = hashlib.sha256(vol.tobytes()).hexdigest()
    out = _read_fresh(paths)
    assert out == [f"{want} {np.dtype(dtype)} {vol.shape}"] * 2


def _read_fresh(paths):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", READER, *paths], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_chunks_and_metadata_name(tmp_path, sample):
    """Format 6 chunks carry everything they need; the metadata names the codec plainly."""
    import json

    vol = np.ascontiguousarray(sample[:24, :96, :96])
    path = str(tmp_path / "t.zarr")
    arr = zarr.create_array(path, shape=vol.shape, chunks=(12, 96, 96), dtype="uint8",
                            serializer=vz.VoxCodec(), compressors=None)
    arr[...] = vol
    meta = json.loads((tmp_path / "t.zarr" / "zarr.json").read_text())
    assert meta["codecs"][0] == {"name": "voxcodec", "configuration": {"preset": "default"}}
    assert _read_fresh([path]) == [f"{hashlib.sha256(vol.tobytes()).hexdigest()} uint8 {vol.shape}"]


def test_small_chunks_need_no_shared_model(tmp_path, sample):
    """Chunks of 16 x 64 x 64 (too small for voxcodec 0.5 to carry their own networks): format 6 codes them
    with nothing but themselves, well below PNG."""
    vol = np.ascontiguousarray(sample[16:48])
    size = {}
    for name, c in (("vxc", vz.VoxCodec(preset="fast")), ("png", vz.PngCodec())):
        path = str(tmp_path / f"{name}.zarr")
        arr = zarr.create_array(path, shape=vol.shape, chunks=(16, 64, 64), dtype="uint8", serializer=c,
                                compressors=None)
        arr[...] = vol
        size[name] = sum(f.stat().st_size for f in (tmp_path / f"{name}.zarr").rglob("c/*/*/*"))
    assert _read_fresh([str(tmp_path / "vxc.zarr")]) == [f"{hashlib.sha256(vol.tobytes()).hexdigest()} uint8 {vol.shape}"]
    assert size["vxc"] < 0.9 * size["png"]


def _shared_model_chunk():
    """A chunk as voxcodec 0.5 wrote it with a shared model: a format 5 block whose networks live in the
    codec configuration (made from a golden stream by moving its model section out), and that model."""
    import sys
    from pathlib import Path

    from voxcodec.core.legacy.network import BlockModel

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from fuzz import build, parse

    data = (Path(__file__).parent / "data" / "golden_v5_own.vxc").read_bytes()
    p = parse(data)
    from voxcodec.core.legacy.network import ModelConfig

    model = BlockModel.from_bytes(p.records[0].model, ModelConfig.from_json(p.meta["model"]))
    p.meta["shared_model"] = model.id
    p.meta["metadata"]["chunk_shape"] = p.shape
    p.records[0].model = b""
    p.records[0].fields[13] |= 4  # FLAG_SHARED
    return build(p)[0], model


def test_configurations_of_voxcodec_05_with_a_model_keep_working(sample):
    """An array written by voxcodec 0.5 with a shared model keeps it in its codec configuration: its chunks
    decode with it, new chunks are written in format 6 (they need no model), and the configuration
    round-trips and pickles light (the model's text, decoded once per process)."""
    chunk, model = _shared_model_chunk()
    want = voxcodec_decode_with(chunk, model)
    for codec in (vn.VoxCodec(preset="fast", model=model.to_text()),):
        np.testing.assert_array_equal(codec.decode(chunk), want)
        new = np.ascontiguousarray(sample[:8, :32, :32])
        data = codec.encode(new)
        np.testing.assert_array_equal(codec.decode(data), new)
        assert numcodecs.get_codec(codec.get_config()).get_config() == codec.get_config()
        assert len(pickle.dumps(codec)) < len(codec.model) + 500
    zc = vz.VoxCodec(preset="fast", model=model.to_text())
    assert type(zc).from_dict(zc.to_dict()) == zc
    with pytest.raises(Exception):
        vn.VoxCodec(model="not a model")


def voxcodec_decode_with(chunk, model):
    import voxcodec

    with voxcodec.Decoder(chunk, shared_model=model) as dec:
        assert dec.format_version == 5
        return dec.read()


def test_config_roundtrips_and_pickles_light(sample):
    for c in (vn.VoxCodec(preset="max"), vn.PngCodec(level=3), vn.JpegXlCodec(effort=9)):
        again = numcodecs.get_codec(c.get_config())
        assert type(again) is type(c) and again.get_config() == c.get_config()
    for c in (vz.VoxCodec(preset="max"), vz.PngCodec(level=3), vz.JpegXlCodec(effort=9)):
        assert type(c).from_dict(c.to_dict()) == c
        assert len(pickle.dumps(c)) < 1000


def test_numcodecs_chunk_shapes(sample):
    c = vn.VoxCodec(preset="fast")
    for shape in [(7,), (5, 9), (3, 4, 5), (2, 3, 4, 5)]:
        a = np.ascontiguousarray(sample.reshape(-1)[:int(np.prod(shape))].reshape(shape))
        out = c.decode(c.encode(a))
        assert out.shape == shape
        np.testing.assert_array_equal(out, a)
        buf = np.empty(shape, np.uint8)
        c.decode(c.encode(a), out=buf)
        np.testing.assert_array_equal(buf, a)


def test_bad_dtype_and_damaged_chunks(tmp_path):
    with pytest.raises(ValueError, match="uint8, uint16, int8 and int16"):
        zarr.create_array(str(tmp_path / "f.zarr"), shape=(4, 4, 4), chunks=(4, 4, 4), dtype="float32",
                          serializer=vz.VoxCodec(), compressors=None)
    from voxcodec import CorruptStreamError

    a = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    for c in (vn.PngCodec(), vn.JpegXlCodec(), vn.VoxCodec()):
        clean = c.encode(a)
        caught = 0
        for pos in range(0, len(clean), max(len(clean) // 40, 1)):
            data = bytearray(clean)
            data[pos] ^= 0x55
            try:
                out = c.decode(bytes(data))
            except CorruptStreamError:
                caught += 1
            else:  # damage the format tolerates (an ancillary field) must still give the right voxels
                np.testing.assert_array_equal(out, a)
        assert caught > 0
        with pytest.raises(CorruptStreamError):
            c.decode(clean[:len(clean) // 2])
    with pytest.raises(ValueError, match="unknown preset"):
        vz.VoxCodec(preset="turbo")


@pytest.mark.parametrize("codec", [vz.VoxCodec(preset="fast"), vz.PngCodec(), vz.JpegXlCodec()],
                         ids=["voxcodec", "png", "jpegxl"])
def test_a_chunk_of_another_dtype_is_refused_not_cast(tmp_path, sample, codec):
    """A uint16 chunk file found in a uint8 array used to come back as v % 256."""
    from voxcodec import CorruptStreamError

    vol8 = np.ascontiguousarray(sample[:4, :16, :16])
    vol16 = vol8.astype(np.uint16) * 300
    a8 = zarr.create_array(str(tmp_path / "u8.zarr"), shape=vol8.shape, chunks=vol8.shape, dtype="uint8",
                           serializer=codec, compressors=None)
    a8[...] = vol8
    a16 = zarr.create_array(str(tmp_path / "u16.zarr"), shape=vol16.shape, chunks=vol16.shape, dtype="uint16",
                            serializer=codec, compressors=None)
    a16[...] = vol16
    (tmp_path / "u8.zarr" / "c" / "0" / "0" / "0").write_bytes((tmp_path / "u16.zarr" / "c" / "0" / "0" / "0")
                                                                .read_bytes())
    with pytest.raises(CorruptStreamError, match="holds uint16 voxels but the array is uint8"):
        zarr.open_array(str(tmp_path / "u8.zarr"))[...]


def test_a_chunk_knows_its_grid_position(sample):
    from voxcodec import CorruptStreamError
    from voxcodec.storage.chunks import decode_chunk, encode_chunk

    a, b = sample[:4, :16, :16], sample[4:8, :16, :16]
    ca = encode_chunk(a, preset="fast", position=(0, 0, 0))
    cb = encode_chunk(b, preset="fast", position=(1, 0, 0))
    np.testing.assert_array_equal(decode_chunk(cb, shape=b.shape, dtype="uint8", position=(1, 0, 0)), b)
    with pytest.raises(CorruptStreamError, match=r"written for grid position \(0, 0, 0\) was found at \(1, 0, 0\)"):
        decode_chunk(ca, shape=a.shape, dtype="uint8", position=(1, 0, 0))
    np.testing.assert_array_equal(decode_chunk(ca), a)  # a reader that does not know the position still reads it
