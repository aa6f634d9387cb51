"""Input volumes are read completely or refused with one clear line (voxcodec.storage.volume_io)."""

import numpy as np
import pytest
import tifffile

from voxcodec.errors import InputError
from voxcodec.storage.volume_io import VolumeReader, read_image, sample_volume, write_volume

imagecodecs = pytest.importorskip("imagecodecs")


@pytest.fixture(scope="module")
def vol():
    return sample_volume()  # 64 x 128 x 128 uint8


@pytest.fixture(scope="module")
def stack30(vol):
    """30 slices of 192 x 192 (2.2 MB), so the first 1 MB holds only part of it."""
    return np.ascontiguousarray(np.tile(vol[:30], (1, 2, 2))[:, :192, :192])


def read_all(path):
    with VolumeReader(path) as r:
        whole = r.read(0, r.shape[0])
        assert whole.shape == r.shape and whole.dtype == r.dtype
        chunks = list(r.iter_chunks(5))
        assert r.nbytes == whole.nbytes
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    return whole


def write_pages(path, slices, **kw):
    with tifffile.TiffWriter(path) as tw:
        for s in slices:
            tw.write(s, **kw)


def cut(path, nbytes, to=None):
    data = path.read_bytes()
    (to or path).write_bytes(data[:nbytes])
    return to or path


def png_folder(path, slices):
    path.mkdir()
    for i, s in enumerate(slices):
        imagecodecs.imwrite(path / f"s{i}.png", s)
    return path


# -- the four inputs that used to give a wrong volume silently ------------------------------------

def test_page_by_page_tiff_reads_every_slice(tmp_path, vol):
    f = tmp_path / "pages.tif"
    write_pages(f, vol)
    np.testing.assert_array_equal(read_all(f), vol)


def test_truncated_tiff_is_refused(tmp_path, stack30):
    f = tmp_path / "stack.tif"
    tifffile.imwrite(f, stack30)
    cut(f, 2**20)
    with pytest.raises(InputError, match=r"^stack\.tif: the file is cut short: it declares 30 slices .*"
                                         r"but only 28 are complete \(was the copy interrupted\?\)$"):
        VolumeReader(f)


def test_truncated_tiff_written_page_by_page_or_compressed_is_refused(tmp_path, stack30):
    for name, kw in [("pages.tif", {}), ("zlib.tif", {"compression": "zlib"}), ("ij.tif", {"imagej": True})]:
        f = tmp_path / name
        if name == "pages.tif":
            write_pages(f, stack30)
        else:
            tifffile.imwrite(f, stack30, **kw)
        for n in (f.stat().st_size // 3, f.stat().st_size - 50):
            bad = cut(f, n, tmp_path / f"cut_{n}_{name}")
            with pytest.raises(InputError, match=rf"^cut_{n}_{name}: the file is (cut short|damaged or cut short)"):
                VolumeReader(bad)


def test_folder_numbered_without_padding_is_read_in_natural_order(tmp_path, vol):
    d = png_folder(tmp_path / "slices", vol[:12])
    np.testing.assert_array_equal(read_all(d), vol[:12])


@pytest.mark.parametrize("kind", ["tif", "npy", "png"])
def test_single_rgb_image_is_refused_with_a_hint(tmp_path, vol, kind):
    rgb = np.stack([vol[0], vol[1], vol[2]], axis=-1)  # (128, 128, 3)
    f = tmp_path / f"photo.{kind}"
    {"tif": tifffile.imwrite, "npy": np.save, "png": imagecodecs.imwrite}[kind](f, rgb)
    hint = {"tif": r"tifffile\.imwrite\('ch0\.tif', tifffile\.imread\('photo\.tif'\)\[\.\.\., 0\]\)",
            "npy": r"numpy\.save\('ch0\.npy', numpy\.load\('photo\.npy', mmap_mode='r'\)\[\.\.\., 0\]\)",
            "png": r"imagecodecs\.imwrite\('ch0\.png', imagecodecs\.imread\('photo\.png'\)\[\.\.\., 0\]\)"}[kind]
    with pytest.raises(InputError, match=rf"^photo\.{kind}: .*(RGB|channel).*{hint}"):
        VolumeReader(f)


# -- other multi-channel inputs -------------------------------------------------------------------

def test_multichannel_inputs_are_refused(tmp_path, vol):
    two = np.stack([vol[:4], vol[4:8]], axis=1)  # (z, c, y, x)
    cases = {
        "rgbstack.tif": lambda f: tifffile.imwrite(f, np.stack([vol[:4]] * 3, axis=-1)),
        "ome_c.ome.tif": lambda f: tifffile.imwrite(f, two, ome=True, metadata={"axes": "ZCYX"}),
        "ij_c.tif": lambda f: tifffile.imwrite(f, two, imagej=True, metadata={"axes": "ZCYX"}),
        "zyxc.npy": lambda f: np.save(f, np.stack([vol[:4]] * 3, axis=-1)),
    }
    for name, make in cases.items():
        make(tmp_path / name)
        with pytest.raises(InputError, match=rf"^{name}: .*(samples per pixel|channels).*select one, e\.g\. "
                                             r"(tifffile\.imwrite|numpy\.save)\('ch0"):
            VolumeReader(tmp_path / name)
    d = tmp_path / "rgb_slices"
    d.mkdir()
    for i in range(3):
        imagecodecs.imwrite(d / f"s{i}.png", np.stack([vol[i]] * 3, axis=-1))
    with pytest.raises(InputError, match=r"^rgb_slices/s0\.png: the image is RGB; .*every slice.*"
                                         r"imagecodecs\.imwrite\('grey/s0\.png', imagecodecs\.imread\('s0\.png'\)"):
        VolumeReader(d)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_three_slices_stored_as_planar_rgb_get_a_hint(tmp_path, vol):
    f = tmp_path / "z3.tif"
    tifffile.imwrite(f, vol[:3])  # tifffile stores a (3, y, x) array as planar RGB
    with pytest.raises(InputError, match=r"3 samples per pixel.*photometric='minisblack'"):
        VolumeReader(f)


def test_time_series_of_volumes_is_refused(tmp_path, vol):
    f = tmp_path / "tz.tif"
    tifffile.imwrite(f, vol[:6].reshape(2, 3, 128, 128), imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(InputError, match=r"^tz\.tif: holds a 4-D image \(axes TZYX"):
        VolumeReader(f)


# -- refusals -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["empty.tif", "empty.npy", "empty.png"])
def test_empty_file_is_refused(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputError, match=rf"^{name}: the file is empty \(0 bytes\)"):
        VolumeReader(tmp_path / name)


def test_not_a_tiff_is_refused(tmp_path):
    f = tmp_path / "notes.tif"
    f.write_text("this is not an image\n")
    with pytest.raises(InputError, match=r"^notes\.tif: the file is not a readable TIFF \(not a TIFF file"):
        VolumeReader(f)


def test_text_under_npy_name_is_refused(tmp_path):
    f = tmp_path / "volume.npy"
    f.write_text("1 2 3\n4 5 6\n")
    with pytest.raises(InputError, match=r"^volume\.npy: the file is not a NumPy \.npy array.*numpy\.save"):
        VolumeReader(f)


def test_npz_under_npy_name_is_refused(tmp_path, vol):
    f = tmp_path / "volume.npz"
    np.savez(f, vol[:2])
    g = f.rename(tmp_path / "volume.npy")
    with pytest.raises(InputError, match=r"^volume\.npy: the file is a \.npz archive"):
        VolumeReader(g)


def test_truncated_npy_is_refused(tmp_path, vol):
    f = tmp_path / "volume.npy"
    np.save(f, vol[:10])
    cut(f, f.stat().st_size - 100)
    with pytest.raises(InputError, match=r"^volume\.npy: the file is cut short: it declares 10 slices "
                                         r"\(10x128x128 uint8\) but only 9 are complete"):
        VolumeReader(f)
    np.save(f, vol[0])
    cut(f, 60)  # inside the header
    with pytest.raises(InputError, match=r"^volume\.npy: the \.npy header is damaged"):
        VolumeReader(f)


def test_object_npy_is_refused_without_unpickling(tmp_path):
    f = tmp_path / "objects.npy"
    np.save(f, np.array([[{"a": 1}, None]], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"^objects\.npy: holds Python objects"):
        VolumeReader(f)


def test_float_and_structured_npy_pass_through(tmp_path, vol):
    """The reader hands them on; the encoder refuses what it cannot code."""
    for name, arr in [("f.npy", vol[:3].astype(np.float32)),
                      ("s.npy", np.zeros((2, 4, 5), dtype=[("a", "u1"), ("b", "<f4")]))]:
        np.save(tmp_path / name, arr)
        got = read_all(tmp_path / name)
        assert got.dtype == arr.dtype
        np.testing.assert_array_equal(got, arr)


def test_truncated_png_in_a_folder_is_refused_naming_the_file(tmp_path, vol):
    d = png_folder(tmp_path / "slices", vol[:6])
    cut(d / "s3.png", (d / "s3.png").stat().st_size // 2)
    with VolumeReader(d) as r:
        np.testing.assert_array_equal(r.read(0, 3), vol[:3])
        with pytest.raises(InputError, match=r"^slices/s3\.png: cannot decode the PNG image .*damaged or cut short"):
            r.read(0, 6)
    cut(d / "s4.png", 20)  # not even a header
    with pytest.raises(InputError, match=r"^slices/s4\.png: the PNG file is cut short"):
        VolumeReader(d)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_folder_slice_of_other_size_or_type_is_refused_naming_the_file(tmp_path, vol, ext):
    write = imagecodecs.imwrite if ext == "png" else tifffile.imwrite
    for odd, what in [(vol[5, :64], r"64x128 uint8"), (vol[5].astype(np.uint16), r"128x128 uint16")]:
        d = tmp_path / f"slices_{what[:6]}"
        d.mkdir()
        for i in range(8):
            write(d / f"s{i}.{ext}", odd if i == 5 else vol[i])
        with pytest.raises(InputError, match=rf"^{d.name}/s5\.{ext}: the slice is {what} but the first slice "
                                             rf"\(s0\.{ext}\) is 128x128 uint8"):
            r = VolumeReader(d)
            r.read(0, 8)


def test_unknown_extension_and_missing_path(tmp_path, vol):
    f = tmp_path / "volume.raw"
    f.write_bytes(vol.tobytes())
    with pytest.raises(InputError, match=r"^volume\.raw: cannot read a \.raw file: give a TIFF stack"):
        VolumeReader(f)
    with pytest.raises(FileNotFoundError):
        VolumeReader(tmp_path / "nothing.tif")


def test_folder_without_slices_is_refused(tmp_path):
    d = tmp_path / "empty_dir"
    d.mkdir()
    (d / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match=r"^empty_dir: the folder holds no slice images"):
        VolumeReader(d)


def test_multi_series_tiff_is_refused_saying_what_it_holds(tmp_path, vol):
    f = tmp_path / "two.tif"
    with tifffile.TiffWriter(f) as tw:
        tw.write(vol[:4], photometric="minisblack")
        tw.write(vol[:2, :64, :64], photometric="minisblack")
    with pytest.raises(InputError, match=r"^two\.tif: holds 2 separate images \(series 0: 4x128x128 uint8, "
                                         r"series 1: 2x64x64 uint8\).*series=0"):
        VolumeReader(f)


def test_tiff_page_of_other_size_is_refused(tmp_path, vol):
    f = tmp_path / "odd.tif"
    with tifffile.TiffWriter(f) as tw:  # pages without metadata: tifffile groups them by shape
        for i in range(6):
            tw.write(vol[i, :64] if i == 4 else vol[i], metadata=None)
    with pytest.raises(InputError, match=r"^odd\.tif: "):
        VolumeReader(f)


def test_damaged_compressed_page_is_refused_not_raised_raw(tmp_path, vol):
    f = tmp_path / "zlib.tif"
    tifffile.imwrite(f, vol[:8], compression="zlib")
    with tifffile.TiffFile(f) as t:
        off, n = t.pages[5].dataoffsets[0], t.pages[5].databytecounts[0]
    data = bytearray(f.read_bytes())
    data[off:off + n] = bytes(n)
    f.write_bytes(bytes(data))
    with VolumeReader(f) as r:
        np.testing.assert_array_equal(r.read(0, 5), vol[:5])
        with pytest.raises(InputError, match=r"^zlib\.tif: cannot read slice 5 "):
            r.read(0, 8)


def test_read_image_refuses_a_multipage_slice(tmp_path, vol):
    f = tmp_path / "s0.tif"
    tifffile.imwrite(f, vol[:4], photometric="minisblack")
    with pytest.raises(InputError, match=r"^s0\.tif: holds 4 slices; a slice image must hold one 2-D image"):
        read_image(f)
    tifffile.imwrite(f, vol[0])
    np.testing.assert_array_equal(read_image(f), vol[0])


# -- formats that must keep working ---------------------------------------------------------------

TIFF_WRITERS = {
    "plain": lambda f, v: tifffile.imwrite(f, v),
    "imagej": lambda f, v: tifffile.imwrite(f, v, imagej=True),
    "imagej_zyx": lambda f, v: tifffile.imwrite(f, v, imagej=True, metadata={"axes": "ZYX"}),
    "bigtiff": lambda f, v: tifffile.imwrite(f, v, bigtiff=True),
    "ome": lambda f, v: tifffile.imwrite(f, v, ome=True, metadata={"axes": "ZYX"}),
    "zlib": lambda f, v: tifffile.imwrite(f, v, compression="zlib"),
    "tiled_zlib": lambda f, v: tifffile.imwrite(f, v, tile=(64, 64), compression="zlib"),
    "contiguous": lambda f, v: tifffile.imwrite(f, v, contiguous=True),
    "page_by_page": lambda f, v: write_pages(f, v),
    "page_by_page_contiguous": lambda f, v: write_pages(f, v, contiguous=True),
    "no_metadata": lambda f, v: write_pages(f, v, metadata=None),
    "stack_writer": lambda f, v: write_volume(f, v),
}


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("how", sorted(TIFF_WRITERS))
def test_tiff_stacks_read_back_exactly(tmp_path, vol, how, dtype):
    v = vol[:12].astype(dtype) * (257 if dtype == "uint16" else 1)
    f = tmp_path / f"{how}.tif"
    TIFF_WRITERS[how](f, v)
    np.testing.assert_array_equal(read_all(f), v)
    with VolumeReader(f) as r:
        np.testing.assert_array_equal(r.read(3, 7), v[3:7])
        np.testing.assert_array_equal(r.read(10, 99), v[10:])
        assert r.read(5, 5).shape == (0, 128, 128)


def test_imagej_file_with_a_single_ifd_is_memory_mapped(tmp_path, vol):
    """ImageJ writes stacks over 4 GB as one IFD followed by the data of every slice."""
    f = tmp_path / "ij_big.tif"
    tifffile.imwrite(f, vol[0], description="ImageJ=1.11a\nimages=64\nslices=64\nhyperstack=true\nmode=grayscale\n",
                     metadata=None)
    with open(f, "ab") as fh:
        fh.write(vol[1:].tobytes())
    np.testing.assert_array_equal(read_all(f), vol)
    cut(f, f.stat().st_size // 2)
    with pytest.raises(InputError, match=r"^ij_big\.tif: the file is cut short: it declares 64 slices in its ImageJ "
                                         r"metadata \(images=\) but only 31 are complete"):
        VolumeReader(f)


def test_single_2d_images_are_one_slice(tmp_path, vol):
    tifffile.imwrite(tmp_path / "one.tif", vol[7])
    imagecodecs.imwrite(tmp_path / "one.png", vol[7])
    np.save(tmp_path / "one.npy", vol[7])
    for name in ("one.tif", "one.png", "one.npy"):
        np.testing.assert_array_equal(read_all(tmp_path / name), vol[7:8])


def test_npy_is_memory_mapped_and_read_slice_by_slice(tmp_path, vol):
    f = tmp_path / "v.npy"
    np.save(f, vol)
    with VolumeReader(f) as r:
        assert isinstance(r._arr, np.memmap)
        np.testing.assert_array_equal(r.read(10, 13), vol[10:13])
    np.testing.assert_array_equal(read_all(f), vol)
    np.save(f, vol[:5, ..., None])  # (z, y, x, 1)
    np.testing.assert_array_equal(read_all(f), vol[:5])
    np.save(f, vol[0, ..., None])  # (y, x, 1): one grey image
    np.testing.assert_array_equal(read_all(f), vol[:1])
    np.save(f, vol[:2, :4, :4])  # a tiny volume is not taken for an image with 4 channels
    np.testing.assert_array_equal(read_all(f), vol[:2, :4, :4])
    np.save(f, np.asfortranarray(vol[:5]))
    np.testing.assert_array_equal(read_all(f), vol[:5])


@pytest.mark.parametrize("ext", ["tif", "tiff", "png"])
def test_slice_folders_read_back_exactly(tmp_path, vol, ext):
    d = tmp_path / "slices"
    d.mkdir()
    v = vol[:11].astype(np.uint16) * 200
    for i, s in enumerate(v):
        (tifffile.imwrite if ext != "png" else imagecodecs.imwrite)(d / f"img_{i}.{ext}", s)
    (d / "._img_0.png").write_bytes(b"\0" * 10)  # macOS resource fork left by a copy: ignored
    np.testing.assert_array_equal(read_all(d), v)


def test_tiff_reader_streams(tmp_path, vol, monkeypatch):
    """Opening decodes no slice; read(z0, z1) decodes only those slices."""
    f = tmp_path / "v.tif"
    tifffile.imwrite(f, vol, compression="zlib")
    decoded = []
    orig = tifffile.TiffPage.asarray
    monkeypatch.setattr(tifffile.TiffPage, "asarray",
                        lambda self, *a, **k: decoded.append(self.index) or orig(self, *a, **k))
    with VolumeReader(f) as r:
        assert decoded == []
        np.testing.assert_array_equal(r.read(20, 23), vol[20:23])
        assert decoded == [20, 21, 22]


def test_real_em_stack_reads_like_tifffile():
    from conftest import SHARED_DATA

    f = SHARED_DATA / "isbi_train.tif"
    if not f.exists():
        pytest.skip("shared EM data not available")
    np.testing.assert_array_equal(read_all(f), tifffile.imread(f))
