"""Voxel size: read from ImageJ / OME / resolution metadata, stored by `voxcodec encode`, shown by `info`,
written back by `decode` as ImageJ calibration."""

import json

import numpy as np
import pytest
import tifffile

from voxcodec.storage import voxel_size as vsize
from voxcodec.storage.volume_io import VolumeReader, write_volume
from voxcodec_cli.main import main

import voxcodec


@pytest.fixture(scope="module")
def vol(sample):
    """A small real crop (8 x 48 x 48) that codes in a second or two."""
    return np.ascontiguousarray(sample[:8, :48, :48])


def encode(src, vxc, *extra):
    return main(["encode", str(src), "-o", str(vxc), "--preset", "fast", "--workers", "1", "-q",
                 *extra])


def stream_meta(vxc):
    with voxcodec.Decoder(vxc) as dec:
        return dec.meta["metadata"]


# -- units ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, unit", [("nm", "nanometer"), ("um", "micrometer"), ("\u00b5m", "micrometer"),
                                        ("\\u00B5m", "micrometer"), ("micron", "micrometer"),
                                        ("Microns", "micrometer"), ("nanometres", "nanometer"),
                                        ("\u00c5", "angstrom"), ("A", "angstrom"), ("angstroms", "angstrom"),
                                        ("mm", "millimeter"), ("Mm", "megameter"), ("micrometer", "micrometer")])
def test_normalize_unit(text, unit):
    assert vsize.normalize_unit(text) == unit


@pytest.mark.parametrize("text", ["pixel", "", "furlong", "NM2", 3])
def test_normalize_unit_refuses(text):
    with pytest.raises(ValueError, match="nanometer"):
        vsize.normalize_unit(text)


# -- reading ------------------------------------------------------------------------------------------------

def test_imagej_hyperstack_is_read(tmp_path):
    a = np.zeros((5, 16, 16), np.uint16)
    for unit in ("micron", "um", "\\u00B5m"):
        p = tmp_path / "ij.tif"
        tifffile.imwrite(p, a, imagej=True, resolution=(1 / 0.004, 1 / 0.005),
                         metadata={"axes": "ZYX", "unit": unit, "spacing": 0.04})
        with VolumeReader(p) as v:
            assert v.voxel_size == (0.04, 0.005, 0.004) and v.voxel_unit == "micrometer", unit
    # ImageJ leaves spacing out when it is 1.0 and when z was never calibrated: z unknown, y and x kept
    tifffile.imwrite(p, a, imagej=True, resolution=(0.25, 0.25), metadata={"axes": "ZYX", "unit": "nm"})
    with VolumeReader(p) as v:
        assert v.voxel_size == (None, 4.0, 4.0) and v.voxel_unit == "nanometer"


def test_imagej_resolution_written_by_imagej_is_rounded(tmp_path):
    """ImageJ stores 1 / 7.3 nm as 136986 / 1000000 (six decimals): 7.3 comes back, not 7.30002."""
    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, np.zeros((3, 8, 8), np.uint8), imagej=True, resolution=((136986, 1000000), (136986, 1000000)),
                     metadata={"axes": "ZYX", "unit": "nm", "spacing": 30.0})
    with VolumeReader(p) as v:
        assert v.voxel_size[0] == 30.0 and v.voxel_size[1] == pytest.approx(7.3, rel=3e-6)
        assert v.voxel_size[1] == vsize.round_sig(1e6 / 136986, 6)


def test_ome_physical_size_is_read(tmp_path):
    a = np.zeros((5, 16, 16), np.uint16)
    p = tmp_path / "v.ome.tif"
    tifffile.imwrite(p, a, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 4.0, "PhysicalSizeXUnit": "nm",
                                               "PhysicalSizeY": 5.0, "PhysicalSizeYUnit": "nm",
                                               "PhysicalSizeZ": 0.04})  # OME's default unit: micrometer
    with VolumeReader(p) as v:
        assert v.voxel_size == (40.0, 5.0, 4.0) and v.voxel_unit == "nanometer"
    tifffile.imwrite(p, a, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.008, "PhysicalSizeY": 0.008})
    with VolumeReader(p) as v:
        assert v.voxel_size == (None, 0.008, 0.008) and v.voxel_unit == "micrometer"


def test_resolution_tags_alone(tmp_path):
    a = np.zeros((5, 16, 16), np.uint8)
    p = tmp_path / "v.tif"
    tifffile.imwrite(p, a, resolution=(1e4 / 0.005, 1e4 / 0.006), resolutionunit="CENTIMETER")
    with VolumeReader(p) as v:  # z is never invented
        assert v.voxel_size == (None, 0.006, 0.005) and v.voxel_unit == "micrometer"
    tifffile.imwrite(p, a, resolution=(254000, 254000), resolutionunit="INCH")
    with VolumeReader(p) as v:
        assert v.voxel_size == (None, 0.1, 0.1) and v.voxel_unit == "micrometer"
    for res, unit in [((72, 72), "INCH"), ((300, 300), "INCH"), ((1, 1), "INCH"), ((1e6, 1e6), "NONE"),
                      ((28.3465, 28.3465), "CENTIMETER")]:  # software defaults, print resolutions, no unit
        tifffile.imwrite(p, a, resolution=res, resolutionunit=unit)
        with VolumeReader(p) as v:
            assert v.voxel_size is None and v.voxel_unit is None, (res, unit)


def test_no_voxel_size(tmp_path):
    a = np.zeros((5, 16, 16), np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", a)  # tifffile's default resolution: 1 / 1, unit NONE
    np.save(tmp_path / "v.npy", a)
    for p in ("v.tif", "v.npy"):
        with VolumeReader(tmp_path / p) as v:
            assert v.voxel_size is None and v.voxel_unit is None


def test_folder_of_slices_gives_y_x(tmp_path):
    folder = tmp_path / "acq"
    folder.mkdir()
    for z in range(3):
        tifffile.imwrite(folder / f"s{z}.tif", np.full((16, 16), z, np.uint8), resolution=(1e4 / 0.004, 1e4 / 0.004),
                         resolutionunit="CENTIMETER")
    with VolumeReader(folder) as v:
        assert v.voxel_size == (None, 0.004, 0.004) and v.voxel_unit == "micrometer"


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int8", "int16"])
def test_writer_round_trip(tmp_path, dtype):
    a = (np.arange(5 * 12 * 10) % 200 - 100 * (np.dtype(dtype).kind == "i")).reshape(5, 12, 10).astype(dtype)
    p = tmp_path / "w.tif"
    write_volume(p, a, (40.0, 3.7, 4.0), "nm")
    with VolumeReader(p) as v:
        assert v.voxel_size == (40.0, 3.7, 4.0) and v.voxel_unit == "nanometer"
        np.testing.assert_array_equal(v.read(0, 5), a)
    with tifffile.TiffFile(p) as t:
        page = t.pages[0]
        assert page.tags["XResolution"].value == (1, 4) and page.tags["YResolution"].value == (10, 37)
        if dtype != "int8":  # ImageJ does not know int8: a tifffile description holds spacing and unit
            assert t.is_imagej and t.imagej_metadata["spacing"] == 40.0 and t.imagej_metadata["unit"] == "nm"
            assert int(page.tags["ResolutionUnit"].value) == 1


# -- the command line ---------------------------------------------------------------------------------------

def test_imagej_tiff_round_trips_through_encode_decode(tmp_path, vol, capsys):
    src, vxc, back = tmp_path / "ij.tif", tmp_path / "ij.vxc", tmp_path / "back.tif"
    tifffile.imwrite(src, vol, imagej=True, resolution=(1 / 0.004, 1 / 0.004),
                     metadata={"axes": "ZYX", "unit": "micron", "spacing": 0.008})
    assert encode(src, vxc) == 0
    meta = stream_meta(vxc)
    assert meta == {"source": "ij.tif", "voxel_size": [0.008, 0.004, 0.004], "unit": "micrometer"}
    capsys.readouterr()
    assert main(["info", str(vxc), "--json"]) == 0
    inf = json.loads(capsys.readouterr().out)
    assert inf["voxel_size"] == [0.008, 0.004, 0.004] and inf["unit"] == "micrometer"
    assert main(["info", str(vxc)]) == 0
    assert "voxel size: 0.008 x 0.004 x 0.004 micrometer (z, y, x)" in capsys.readouterr().out
    assert main(["decode", str(vxc), "-o", str(back), "-q"]) == 0
    with VolumeReader(back) as v:
        assert v.voxel_size == (0.008, 0.004, 0.004) and v.voxel_unit == "micrometer"
        np.testing.assert_array_equal(v.read(0, vol.shape[0]), vol)
    with tifffile.TiffFile(back) as t:  # what Fiji reads: ImageJ spacing/unit, 1 / XResolution
        assert t.imagej_metadata["spacing"] == 0.008 and t.imagej_metadata["unit"] == "um"
        num, den = t.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.004)
    assert main(["decode", str(vxc), "-o", str(tmp_path / "part.tif"), "--z", "2:5", "-q"]) == 0
    with VolumeReader(tmp_path / "part.tif") as v:
        assert v.shape[0] == 3 and v.voxel_size == (0.008, 0.004, 0.004)


@pytest.mark.parametrize("dtype", ["uint16", "int16"])
def test_16_bit_round_trip_with_voxel_size(tmp_path, vol, dtype):
    a = vol.astype(np.int32) * 97 + 11
    a = (a - 12000 if dtype == "int16" else a).astype(dtype)
    src, vxc, back = tmp_path / "v.npy", tmp_path / "v.vxc", tmp_path / "back.tif"
    np.save(src, a)
    assert encode(src, vxc, "--voxel-size", "30,4,4.5", "--unit", "nm") == 0
    assert main(["decode", str(vxc), "-o", str(back), "-q"]) == 0
    with VolumeReader(back) as v:
        assert v.dtype == np.dtype(dtype) and v.voxel_size == (30.0, 4.0, 4.5) and v.voxel_unit == "nanometer"
        np.testing.assert_array_equal(v.read(0, a.shape[0]), a)


def test_options_override_and_convert(tmp_path, vol):
    src, vxc = tmp_path / "ij.tif", tmp_path / "v.vxc"
    tifffile.imwrite(src, vol, imagej=True, resolution=(0.25, 0.25),
                     metadata={"axes": "ZYX", "unit": "nm", "spacing": 40.0})
    assert encode(src, vxc, "--voxel-size", "8,2,2") == 0  # in the input's unit
    assert stream_meta(vxc)["voxel_size"] == [8.0, 2.0, 2.0] and stream_meta(vxc)["unit"] == "nanometer"
    assert encode(src, vxc, "--voxel-size", "0.5x0.25x0.25", "--unit", "\u00b5m", "--overwrite") == 0
    assert stream_meta(vxc)["voxel_size"] == [0.5, 0.25, 0.25] and stream_meta(vxc)["unit"] == "micrometer"
    assert encode(src, vxc, "--unit", "um", "--overwrite") == 0  # --unit alone: the input's size, re-expressed
    assert stream_meta(vxc)["voxel_size"] == [0.04, 0.004, 0.004] and stream_meta(vxc)["unit"] == "micrometer"


def test_no_voxel_size_stores_and_writes_none(tmp_path, vol, capsys):
    src, vxc, back = tmp_path / "v.tif", tmp_path / "v.vxc", tmp_path / "back.tif"
    tifffile.imwrite(src, vol)
    assert encode(src, vxc) == 0
    assert stream_meta(vxc) == {"source": "v.tif"}
    capsys.readouterr()
    assert main(["info", str(vxc), "--json"]) == 0
    inf = json.loads(capsys.readouterr().out)
    assert inf["voxel_size"] is None and inf["unit"] is None
    assert main(["decode", str(vxc), "-o", str(back), "-q"]) == 0
    with VolumeReader(back) as v:
        assert v.voxel_size is None
    with tifffile.TiffFile(back) as t:
        assert not t.is_imagej and int(t.pages[0].tags["ResolutionUnit"].value) == 1


@pytest.mark.parametrize("args, msg", [
    (["--voxel-size", "-1,4,4", "--unit", "nm"], "positive"),
    (["--voxel-size", "0,4,4", "--unit", "nm"], "positive"),
    (["--voxel-size", "nan,4,4", "--unit", "nm"], "positive"),
    (["--voxel-size", "4,4", "--unit", "nm"], "three sizes"),
    (["--voxel-size", "4,4,4,4", "--unit", "nm"], "three sizes"),
    (["--voxel-size", "forty,4,4", "--unit", "nm"], "three sizes"),
    (["--voxel-size", "40,4,4", "--unit", "parsnip"], "unknown unit 'parsnip'"),
    (["--voxel-size", "40,4,4"], "declares no unit for --voxel-size"),  # a .npy declares none
    (["--unit", "nm"], "declares no voxel size"),
])
def test_bad_voxel_size_options_exit_2(tmp_path, vol, capsys, args, msg):
    src, vxc = tmp_path / "v.npy", tmp_path / "v.vxc"
    np.save(src, vol)
    capsys.readouterr()
    assert encode(src, vxc, *args) == 2
    err = capsys.readouterr().err
    assert msg in err and "voxcodec: error:" in err and err.count("\n") == 1
    assert not vxc.exists() and not (tmp_path / "v.vxc.part").exists()


def test_what_a_tiff_cannot_hold(tmp_path):
    """A z size alone (OME PhysicalSizeZ only) has no ImageJ form: the writer says so and writes none;
    ImageJ's "pixel" unit is no calibration."""
    from voxcodec.storage.volume_io import TiffStackWriter

    a = np.ones((3, 8, 8), np.uint8)
    w = TiffStackWriter(tmp_path / "z.tif", a.shape, a.dtype, (40.0, None, None), "nm")
    w.write(a)
    w.close()
    assert len(w.notes) == 1 and "only the stream keeps it" in w.notes[0]
    with VolumeReader(tmp_path / "z.tif") as v:
        assert v.voxel_size is None
    tifffile.imwrite(tmp_path / "px.tif", a, imagej=True, resolution=(0.5, 0.5),
                     metadata={"axes": "ZYX", "unit": "pixel", "spacing": 2.0})
    with VolumeReader(tmp_path / "px.tif") as v:
        assert v.voxel_size is None and v.voxel_unit is None
    with pytest.raises(ValueError, match="positive"):
        write_volume(tmp_path / "bad.tif", a, (1.0, -2.0, 2.0), "nm")
