"""The napari reader (voxcodec/storage/napari.py) without napari: the layer data it gives napari are
lazy arrays equal to the volume, with the voxel size, unit and levels of the source; paths that are
not for it get None; the npe2 manifest is packaged and names the reader."""

from pathlib import Path

import numpy as np
import pytest

import voxcodec
from voxcodec.storage.napari import get_reader, read_vxc, read_zarr

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")


@pytest.fixture()
def vol(sample):
    return np.ascontiguousarray(sample[:12, :64, :80])


def test_vxc_stream_is_one_lazy_layer_with_its_voxel_size(tmp_path, vol):
    path = tmp_path / "em.vxc"
    path.write_bytes(voxcodec.encode(vol, preset="fast", block_depth=4, tile=(32, 48),
                                     metadata={"voxel_size": [30.0, 6.0, 6.0], "unit": "nanometer"}))
    assert get_reader(str(path)) is read_vxc and get_reader([str(path)]) is read_vxc
    [(data, kw, kind)] = read_vxc(str(path))
    assert kind == "image" and isinstance(data, da.Array)
    assert data.chunksize == (4, 32, 48)  # a dask chunk per block: napari decodes only what it shows
    assert kw["name"] == "em" and kw["scale"] == (30.0, 6.0, 6.0) and kw["units"] == ("nanometer",) * 3
    assert kw["axis_labels"] == ("z", "y", "x") and kw["contrast_limits"] == (0, 255)
    np.testing.assert_array_equal(data[5].compute(), vol[5])
    np.testing.assert_array_equal(data.compute(scheduler="threads"), vol)  # blocks from several threads


def test_stream_without_a_voxel_size_has_no_scale(tmp_path, vol):
    path = tmp_path / "plain.vxc"
    path.write_bytes(voxcodec.encode(vol, preset="fast"))
    [(data, kw, _)] = read_vxc(str(path))
    assert "scale" not in kw and "units" not in kw and data.shape == vol.shape


def test_ome_zarr_is_one_multiscale_layer_with_the_voxel_size_of_level_0(tmp_path, vol):
    import tifffile

    from voxcodec.storage.convert import convert

    src = tmp_path / "em.tif"
    tifffile.imwrite(src, vol, photometric="minisblack")
    dest = tmp_path / "em.ome.zarr"  # as `voxcodec convert --levels 2 --voxel-size 30,6,6 --unit nanometer`
    convert(str(src), str(dest), chunks=(8, 32, 32), levels=2, preset="fast", workers=1, voxel_size=(30, 6, 6),
            unit="nanometer")
    assert get_reader(str(dest)) is read_zarr
    [(data, kw, kind)] = read_zarr(str(dest))
    assert kind == "image" and kw["multiscale"] is True and len(data) == 2
    assert kw["scale"] == (30.0, 6.0, 6.0) and kw["units"] == ("nanometer",) * 3
    assert kw["metadata"]["levels"] == ["0", "1"]
    np.testing.assert_array_equal(data[0].compute(), vol)
    assert data[1].shape[1] < vol.shape[1]  # the downsampled level, after the full one


def test_voxcodec_zarr_array_and_what_is_not_for_this_reader(tmp_path, vol):
    from voxcodec.zarr import VoxCodec

    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=vol.shape, chunks=(6, 32, 40), dtype="uint8",
                            serializer=VoxCodec(preset="fast"), compressors=None)
    arr[...] = vol
    assert get_reader(str(tmp_path / "a.zarr")) is read_zarr
    [(data, kw, _)] = read_zarr(str(tmp_path / "a.zarr"))
    np.testing.assert_array_equal(data.compute(), vol)
    assert kw["name"] == "a" and "scale" not in kw
    other = zarr.create_array(str(tmp_path / "zstd.zarr"), shape=vol.shape, chunks=(6, 32, 40), dtype="uint8")
    other[...] = vol
    (tmp_path / "x.tif").write_bytes(b"II*\x00")
    for path in [tmp_path / "zstd.zarr", tmp_path / "x.tif", tmp_path / "missing.vxc", tmp_path]:
        assert get_reader(str(path)) is None, path  # napari asks its other readers
    assert get_reader([str(tmp_path / "a.zarr")] * 2) is None


def test_served_url_is_read_over_http(tmp_path, vol):
    pytest.importorskip("aiohttp")
    from conftest import running

    path = tmp_path / "em.vxc"
    path.write_bytes(voxcodec.encode(vol, preset="fast", block_depth=4))
    with running(str(path)) as server:
        assert get_reader(server.url) is read_zarr
        [(data, kw, _)] = read_zarr(server.url)
        np.testing.assert_array_equal(data.compute(), vol)


def test_the_manifest_is_packaged_and_names_the_reader():
    import importlib.metadata as md

    eps = [e for e in md.entry_points(group="napari.manifest") if e.name == "voxcodec"]
    assert eps and eps[0].value == "voxcodec:napari.yaml"
    text = (Path(voxcodec.__file__).parent / "napari.yaml").read_text()
    assert "python_name: voxcodec.storage.napari:get_reader" in text and '"*.vxc"' in text
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(Path(voxcodec.__file__).parent / "napari.yaml")
    assert manifest.name == "voxcodec" and manifest.contributions.readers[0].command == "voxcodec.get_reader"
