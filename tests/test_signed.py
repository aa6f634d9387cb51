"""int8 and int16 volumes (raw FIB-SEM is often int16): coded through the documented offset mapping
``value + 2^(bits - 1)`` and decoded to their own type, exactly."""

import json
import subprocess

import numpy as np
import pytest

import voxcodec
from voxcodec import CorruptStreamError, UnsupportedError
from voxcodec.core.container import from_coded, layout_from_meta, to_coded

from conftest import console_script, run_python


def _int16(sample):
    a = (sample[:8, :48, :64].astype(np.int32) - 128) * 200  # -25600 .. 25400: negative and positive
    a[0, 0, 0], a[-1, -1, -1] = -32768, 32767  # both ends of the type
    return a.astype(np.int16)


def test_the_offset_mapping_is_value_plus_half_the_range():
    a = np.array([-32768, -1, 0, 1, 32767], np.int16)
    np.testing.assert_array_equal(to_coded(a), (a.astype(np.int32) + 32768).astype(np.uint16))
    np.testing.assert_array_equal(from_coded(to_coded(a), np.int16), a)
    b = np.array([-128, -1, 0, 127], np.int8)
    np.testing.assert_array_equal(to_coded(b), (b.astype(np.int16) + 128).astype(np.uint8))
    u = np.array([0, 65535], np.uint16)
    assert to_coded(u) is u


@pytest.mark.parametrize("dtype", [np.int16, np.int8, ">i2"])
def test_signed_volumes_round_trip(sample, dtype):
    a = _int16(sample) if np.dtype(dtype).itemsize == 2 else (sample[:8, :48, :64].astype(np.int16) - 128).astype(np.int8)
    a = a.astype(dtype)
    data = voxcodec.encode(a, preset="fast")
    with voxcodec.Decoder(data) as dec:
        assert dec.dtype == np.dtype(dtype).newbyteorder("=")
        assert dec.meta["dtype"] == ("<i2" if np.dtype(dtype).itemsize == 2 else "|i1")
        np.testing.assert_array_equal(dec[2:6, 5:40:3, ::2], a[2:6, 5:40:3, ::2])
    out = voxcodec.decode(data)
    assert out.dtype == np.dtype(dtype).newbyteorder("=") and np.array_equal(out, a)
    # the same bits as the mapped unsigned volume: only the file header's dtype differs
    assert abs(len(voxcodec.encode(to_coded(a.astype(np.dtype(dtype).newbyteorder("="))), preset="fast"))
               - len(data)) <= 2


def test_signed_types_need_format_4():
    meta = {"dtype": "<i2", "slice_shape": [8, 8], "block_depth": 4, "tile": [8, 8], "model": {}}
    assert layout_from_meta(meta, 4).volume_dtype == np.int16
    with pytest.raises(CorruptStreamError, match="dtype"):
        layout_from_meta(meta, 3)
    with pytest.raises(UnsupportedError, match="int8 and int16"):
        voxcodec.encode(np.zeros((2, 4, 4), np.int32))


def test_cli_int16_tiff_round_trip(sample, tmp_path):
    import tifffile

    a = _int16(sample)
    tifffile.imwrite(tmp_path / "v.tif", a)
    exe = console_script("voxcodec", "voxcodec_cli.main")
    for cmd in (["encode", "v.tif", "-o", "v.vxc", "--preset", "fast"], ["decode", "v.vxc", "-o", "back.tif"],
                ["verify", "v.vxc", "--against", "v.tif"]):
        res = subprocess.run(exe + cmd, cwd=tmp_path, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    back = tifffile.imread(tmp_path / "back.tif")
    assert back.dtype == np.int16 and np.array_equal(back, a)
    info = subprocess.run(exe + ["info", "v.vxc", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert json.loads(info.stdout)["dtype"] == "int16"


def test_zarr_int16_array(sample, tmp_path):
    zarr = pytest.importorskip("zarr")
    from voxcodec.zarr import PngCodec, VoxCodec

    a = _int16(sample)
    arr = zarr.create_array(tmp_path / "a.zarr", shape=a.shape, chunks=(4, 48, 32), dtype="int16",
                            serializer=VoxCodec(preset="fast"), compressors=None)
    arr[:] = a
    code = (f"import zarr, numpy as np; a = zarr.open_array({str(tmp_path / 'a.zarr')!r})[:]; "
            "print(a.dtype, a.min(), a.max(), int(a.astype(np.int64).sum()))")
    assert run_python(code).split() == ["int16", "-32768", "32767", str(int(a.astype(np.int64).sum()))]
    with pytest.raises(UnsupportedError, match="uint8 and uint16"):
        zarr.create_array(tmp_path / "p.zarr", shape=a.shape, chunks=(4, 48, 32), dtype="int16",
                          serializer=PngCodec(), compressors=None)
