"""``voxcodec convert``: zarr v2 / N5 / HDF5 / MRC / TIFF sources to a voxcodec-coded OME-Zarr image, read
back with plain zarr, metadata validated with ome-zarr-models; resuming after kill -9; pyramids; refusals.

The volumes are crops of a real EM volume from ../shared/data (the bundled FIB-SEM sample where that is
absent), small enough for each test to take seconds.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from conftest import SHARED_DATA, console_script, moto_s3

zarr = pytest.importorskip("zarr")
h5py = pytest.importorskip("h5py")
mrcfile = pytest.importorskip("mrcfile")
pytest.importorskip("dask")
pytest.importorskip("ome_zarr_models")

from voxcodec.errors import InputError, UnsupportedError  # noqa: E402
from voxcodec.storage import n5  # noqa: E402
from voxcodec.storage import convert as conv  # noqa: E402
from voxcodec.storage.sources import open_source  # noqa: E402

REAL = SHARED_DATA / "snemi3d_ac4_z00-31.tif"
FAST = ("--preset", "fast", "-q")


@pytest.fixture(scope="module")
def crop():
    """16 x 128 x 128 uint8 from a real EM volume (serial-section SEM), or the bundled FIB-SEM sample."""
    if REAL.exists():
        with tifffile.TiffFile(REAL) as tif:
            vol = np.stack([tif.pages[i].asarray()[256:384, 256:384] for i in range(16)])
    else:
        from voxcodec.storage.volume_io import sample_volume

        vol = sample_volume()[:16, :128, :128]
    return np.ascontiguousarray(vol)


def cli(*args, timeout=300):
    return subprocess.run(console_script("voxcodec", "voxcodec_cli.main") + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout)


def ok(*args):
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    return res


def refused(*args, code=2):
    """The command fails with ``code`` and one line on stderr (no traceback)."""
    res = cli(*args)
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("voxcodec: error: "), res.stderr
    return lines[0]


def read_level(dest, level=0):
    """DEST's level as any zarr reader sees it (plain zarr.open_array: the codec comes from its entry point)."""
    return zarr.open_array(f"{dest}/{level}", mode="r")[:]


def validated(dest):
    """DEST's OME-NGFF metadata, validated (metadata and arrays) with ome-zarr-models."""
    from ome_zarr_models.v05 import Image

    image = Image.from_zarr(zarr.open_group(str(dest), mode="r"))
    ms = image.ome_attributes.multiscales[0]
    return {"axes": [(a.name, a.type, a.unit) for a in ms.axes],
            "scales": [list(d.coordinateTransformations[0].scale) for d in ms.datasets]}


# -- sources ------------------------------------------------------------------------------------------------
def make_zarr_v2(path, vol):
    import numcodecs

    arr = zarr.create_array(str(path), shape=vol.shape, chunks=(8, 48, 48), dtype=vol.dtype, zarr_format=2,
                            compressors=numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE))
    arr[:] = vol
    return str(path)


def make_n5(path, vol):
    n5.write_dataset(path / "raw", vol, (8, 50, 60), compression="gzip",
                     attrs={"resolution": [4.0, 4.0, 30.0], "units": ["nm", "nm", "nm"]})
    return str(path / "raw")


def make_h5(path, vol):
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("volumes/raw", data=vol, chunks=(8, 64, 64), compression="gzip")
        ds.attrs["resolution"] = [30.0, 4.0, 4.0]
    return f"{path}:/volumes/raw"


SOURCES = {"zarr_v2_blosc": ("v2.zarr", make_zarr_v2, None),
           "n5": ("c.n5", make_n5, [30.0, 4.0, 4.0]),
           "hdf5": ("v.h5", make_h5, [30.0, 4.0, 4.0])}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_source_converts_with_two_workers_and_reads_back_with_plain_zarr(kind, crop, tmp_path):
    name, make, scale = SOURCES[kind]
    src, dest = make(tmp_path / name, crop), tmp_path / "out.ome.zarr"
    res = ok("convert", src, dest, "--workers", "2", "--chunks", "8,64,64", "--preset", "fast")
    assert "8 chunks written" in res.stdout
    back = read_level(dest)
    assert back.dtype == crop.dtype and np.array_equal(back, crop)
    meta = validated(dest)
    assert [a[0] for a in meta["axes"]] == ["z", "y", "x"]
    if scale is None:  # a zarr v2 array says nothing about its voxels: scale 1, no unit, and the user is told
        assert meta["scales"] == [[1.0, 1.0, 1.0]] and all(a[2] is None for a in meta["axes"])
        assert "voxel size unknown" in res.stderr
    else:
        assert meta["scales"] == [scale] and all(a[2] == "nanometer" for a in meta["axes"])
    arr = zarr.open_array(f"{dest}/0", mode="r")
    assert arr.metadata.codecs[0].to_dict()["name"] == "voxcodec" and arr.chunks == (8, 64, 64)


@pytest.mark.parametrize("dtype", ["uint16", "int16"])
def test_uint16_and_int16_round_trip_exactly(dtype, crop, tmp_path):
    base = crop.astype(np.int32)
    vol = (base * 251 + 3 if dtype == "uint16" else base * 97 - 12000).astype(dtype)  # uses the type's range
    assert vol.min() < 0 if dtype == "int16" else vol.max() > 255
    np.save(tmp_path / "v.npy", vol)
    dest = tmp_path / "out.zarr"
    ok("convert", tmp_path / "v.npy", dest, "--workers", "1", "--chunks", "8,128,128", *FAST)
    back = read_level(dest)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, vol)


def test_mrc_voxel_size_from_header_in_nanometers(crop, tmp_path):
    vol = (crop.astype(np.int16) - 100)[:8]
    with mrcfile.new(tmp_path / "tomo.mrc") as mrc:
        mrc.set_data(vol)
        mrc.voxel_size = (21.0, 21.0, 42.0)  # x, y, z in Å
    dest = tmp_path / "tomo.ome.zarr"
    ok("convert", tmp_path / "tomo.mrc", dest, "--workers", "1", *FAST)
    assert np.array_equal(read_level(dest), vol)
    meta = validated(dest)
    assert np.allclose(meta["scales"][0], [4.2, 2.1, 2.1]) and {a[2] for a in meta["axes"]} == {"nanometer"}


def test_tiff_stack_and_voxel_size_option(crop, tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", crop)
    dest = tmp_path / "out.zarr"
    ok("convert", tmp_path / "stack.tif", dest, "--workers", "1", "--voxel-size", "30,4,4", "--unit", "nm", *FAST)
    assert np.array_equal(read_level(dest), crop)
    meta = validated(dest)
    assert meta["scales"] == [[30.0, 4.0, 4.0]] and {a[2] for a in meta["axes"]} == {"nanometer"}


def test_ome_zarr_source_converts_its_level_0_with_its_scale(crop, tmp_path):
    first, second = tmp_path / "a.zarr", tmp_path / "b.zarr"
    res = conv.convert(make_h5(tmp_path / "v.h5", crop), first, chunks=(16, 64, 64), levels=2, preset="fast", workers=1)
    assert res.written == 4 + 1 and res.voxel_size == (30.0, 4.0, 4.0)
    src = open_source(str(first))
    assert src.shape == crop.shape and src.voxel_size == (30.0, 4.0, 4.0) and src.unit == "nanometer"
    conv.convert(str(first), second, chunks=(16, 128, 128), preset="fast", workers=1)
    assert np.array_equal(read_level(second), crop) and validated(second)["scales"] == [[30.0, 4.0, 4.0]]


def test_file_urls_for_source_and_dest(crop, tmp_path):
    src = make_h5(tmp_path / "v.h5", crop)
    dest = tmp_path / "out.zarr"
    ok("convert", "file://" + src, "file://" + str(dest), "--workers", "1", *FAST)
    assert np.array_equal(read_level(dest), crop)


# -- pyramids -----------------------------------------------------------------------------------------------
def test_levels_2_isotropic_halves_every_axis_by_the_integer_mean(crop, tmp_path):
    with h5py.File(tmp_path / "fib.h5", "w") as f:
        f["raw"] = crop
        f["raw"].attrs["element_size_um"] = [0.008, 0.008, 0.008]
    dest = tmp_path / "out.zarr"
    ok("convert", f"{tmp_path / 'fib.h5'}:/raw", dest, "--levels", "2", "--chunks", "8,64,64", "--workers", "2", *FAST)
    s = crop.astype(np.int64).reshape(8, 2, 64, 2, 64, 2).sum(axis=(1, 3, 5))
    want = ((s + 4) // 8).astype(np.uint8)  # mean of 8 voxels, rounded half up
    assert np.array_equal(read_level(dest, 0), crop)
    assert np.array_equal(read_level(dest, 1), want)
    meta = validated(dest)
    assert meta["scales"] == [[0.008] * 3, [0.016] * 3] and {a[2] for a in meta["axes"]} == {"micrometer"}


def test_levels_keep_z_of_anisotropic_volumes_until_in_plane_catches_up():
    assert conv.level_factors((100, 4096, 4096), (30, 4, 4), 5) == [(1, 1, 1), (1, 2, 2), (1, 4, 4), (1, 8, 8),
                                                                     (2, 16, 16)]
    assert conv.level_factors((64, 64, 64), None, 3) == [(1, 1, 1), (2, 2, 2), (4, 4, 4)]
    assert conv.level_factors((1, 64, 64), (8, 8, 8), 2) == [(1, 1, 1), (1, 2, 2)]  # one slice stays one


def test_mean_reduce_averages_cut_blocks_over_the_voxels_they_have():
    rng = np.random.default_rng(1)
    vol = rng.integers(-3000, 3000, size=(5, 7, 9)).astype(np.int16)
    got = conv.mean_reduce(vol, (2, 2, 2))
    assert got.shape == (3, 4, 5) and got.dtype == np.int16
    for idx in np.ndindex(*got.shape):
        block = vol[tuple(slice(2 * i, 2 * i + 2) for i in idx)].astype(np.int64)
        assert got[idx] == (block.sum() + block.size // 2) // block.size


def test_level_of_a_chunked_conversion_equals_reducing_the_whole_volume(crop, tmp_path):
    """Chunks of a downsampled level are made independently (and a few planes at a time): the result must
    not depend on where the chunk borders fall."""
    vol = crop[:, :, :125]  # odd widths: cut blocks at the end
    np.save(tmp_path / "v.npy", vol)
    conv.convert(str(tmp_path / "v.npy"), tmp_path / "o.zarr", chunks=(3, 20, 24), levels=3, preset="fast",
                 workers=1, voxel_size=(30, 4, 4), unit="nm")
    assert np.array_equal(read_level(tmp_path / "o.zarr", 2), conv.mean_reduce(vol, (1, 4, 4)))


# -- resume, verification -----------------------------------------------------------------------------------
def chunk_files(level_dir: Path) -> list[Path]:
    return sorted(p for p in level_dir.rglob("*") if p.is_file() and p.name != "zarr.json"
                  and not p.name.startswith("."))


def test_resume_after_kill_keeps_verified_chunks_and_recodes_a_damaged_one(crop, tmp_path):
    vol = np.tile(crop[:8], (1, 4, 4))  # 8 x 512 x 512: 4 chunks of about a quarter of a second each with `max`
    np.save(tmp_path / "v.npy", vol)
    dest = tmp_path / "out.zarr"
    args = ["convert", tmp_path / "v.npy", dest, "--chunks", "4,256,512", "--preset", "max"]  # 4 chunks
    cmd = console_script("voxcodec", "voxcodec_cli.main") + [str(a) for a in args] + ["--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(chunk_files(dest / "0")) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = chunk_files(dest / "0")
    assert 2 <= len(done) < 4, f"{len(done)} chunks at the kill"
    assert not json.loads((dest / "zarr.json").read_text())["attributes"]["voxcodec_convert"]["complete"]
    refused(*args)  # DEST exists: refused without --resume
    damaged = done[0]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # as if cut by a crash
    res = ok(*args, "--resume", "--workers", "2")
    kept = len(done) - 1
    assert f"{kept} chunks kept" in res.stdout and f"{4 - kept} chunks written" in res.stdout, res.stdout
    assert np.array_equal(read_level(dest), vol)
    assert json.loads((dest / "zarr.json").read_text())["attributes"]["voxcodec_convert"]["complete"]
    validated(dest)


def test_resume_of_a_complete_conversion_codes_nothing(crop, tmp_path, monkeypatch):
    np.save(tmp_path / "v.npy", crop)
    monkeypatch.setattr(conv, "BATCH", 3)  # 8 chunks in dask graphs of 3, 3 and 2
    first = conv.convert(str(tmp_path / "v.npy"), tmp_path / "o.zarr", chunks=(8, 64, 64), preset="fast", workers=2)
    again = conv.convert(str(tmp_path / "v.npy"), tmp_path / "o.zarr", chunks=(8, 64, 64), preset="fast", workers=1,
                         resume=True)
    assert (first.written, again.written, again.kept) == (8, 0, 8)


def test_resume_with_other_options_is_refused(crop, tmp_path):
    np.save(tmp_path / "v.npy", crop)
    conv.convert(str(tmp_path / "v.npy"), tmp_path / "o.zarr", chunks=(8, 64, 64), preset="fast", workers=1)
    msg = refused("convert", tmp_path / "v.npy", tmp_path / "o.zarr", "--chunks", "16,64,64", "--resume", *FAST)
    assert "was started with other levels" in msg and "--overwrite" in msg


def test_a_chunk_that_reads_back_different_fails_naming_it(crop, tmp_path, monkeypatch):
    """Verification is real: a store that damages what it writes is caught, with exit status 1."""
    from voxcodec_cli.main import main

    np.save(tmp_path / "v.npy", crop)
    real_put = conv.Store.put

    def damaging_put(self, key, data):
        if key == "0/c/1/0/1":
            data = data[:-40] + bytes(40)
        real_put(self, key, data)

    monkeypatch.setattr(conv.Store, "put", damaging_put)
    with pytest.raises(conv.VerifyError, match=r"chunk 0/c/1/0/1 \(level 0, grid position \(1, 0, 1\)\)"):
        conv.convert(str(tmp_path / "v.npy"), tmp_path / "a.zarr", chunks=(8, 64, 64), preset="fast", workers=1)
    assert main(["convert", str(tmp_path / "v.npy"), str(tmp_path / "b.zarr"), "--chunks", "8,64,64",
                 "--workers", "1", *FAST]) == 1


def test_zero_chunks_are_not_stored_and_read_as_zero(crop, tmp_path):
    vol = crop.copy()
    vol[:8] = 0
    np.save(tmp_path / "v.npy", vol)
    res = conv.convert(str(tmp_path / "v.npy"), tmp_path / "o.zarr", chunks=(8, 64, 64), preset="fast", workers=1)
    assert (res.empty, res.written) == (4, 4)
    assert np.array_equal(read_level(tmp_path / "o.zarr"), vol)


# -- N5 reader ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", ["raw", "gzip"])
def test_n5_reader_blocks_byte_order_and_missing_blocks(compression, tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 65535, size=(5, 33, 40)).astype(np.uint16)
    vol[:, :16, :] = 0
    n5.write_dataset(tmp_path / "c.n5" / "v", vol, (2, 16, 16), compression=compression, skip_zero_blocks=True)
    assert not (tmp_path / "c.n5" / "v" / "0" / "0" / "0").exists()  # x/y/z = 0/0/0 was all zero
    raw = (tmp_path / "c.n5" / "v" / "2" / "2" / "2").read_bytes()  # the corner block: cut to 1 x 1 x 8 (x, y, z)
    assert raw[:4] == b"\x00\x00\x00\x03" and raw[4:16] == b"\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x01"
    ds = n5.N5Dataset(str(tmp_path / "c.n5" / "v"))
    assert ds.shape == vol.shape and ds.dtype == np.uint16 and ds.attrs["dimensions"] == [40, 33, 5]
    assert np.array_equal(ds[:], vol) and np.array_equal(ds[1:4, 10:30, 7:39], vol[1:4, 10:30, 7:39])


# -- refusals -----------------------------------------------------------------------------------------------
def test_refusals_exit_2_with_one_line(crop, tmp_path):
    make_h5(tmp_path / "v.h5", crop)
    msg = refused("convert", f"{tmp_path / 'v.h5'}:/volumes/nope", tmp_path / "a.zarr", *FAST)
    assert "has no dataset /volumes/nope" in msg and "/volumes/raw" in msg
    np.save(tmp_path / "f.npy", crop.astype(np.float32))
    msg = refused("convert", tmp_path / "f.npy", tmp_path / "b.zarr", *FAST)
    assert "float32" in msg and "uint8, uint16, int8 and int16" in msg
    (tmp_path / "exists.zarr").mkdir()
    (tmp_path / "exists.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    msg = refused("convert", f"{tmp_path / 'v.h5'}:/volumes/raw", tmp_path / "exists.zarr", *FAST)
    assert "exists" in msg and "--resume" in msg and "--overwrite" in msg
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_refused_inputs_in_python():
    with pytest.raises(FileNotFoundError):
        open_source("/nonexistent/volume.tif")
    with pytest.raises(InputError, match="is not a length unit"):
        conv.ome.normalize_unit("parsec")


def test_unsupported_n5_compression_is_refused(crop, tmp_path):
    path = tmp_path / "c.n5" / "v"
    n5.write_dataset(path, crop, (8, 64, 64), compression="raw")
    attrs = json.loads((path / "attributes.json").read_text())
    attrs["compression"] = {"type": "blosc", "cname": "zstd"}
    (path / "attributes.json").write_text(json.dumps(attrs))
    msg = refused("convert", path, tmp_path / "o.zarr", *FAST)
    assert "N5 compression 'blosc' is not supported" in msg
    with pytest.raises(UnsupportedError):
        open_source(str(path))


# -- remote: sources and DEST on S3 (moto's in-memory S3 server on 127.0.0.1) ---------------------------------
@pytest.fixture
def s3():
    yield from moto_s3("em-data")


def test_remote_sources_and_dest_on_s3(crop, tmp_path, s3):
    fs, opts = s3
    vol = crop[:8]
    local = tmp_path / "src"
    local.mkdir()
    make_zarr_v2(local / "v2.zarr", vol)
    make_n5(local / "c.n5", vol)
    make_h5(local / "v.h5", vol)
    tifffile.imwrite(local / "stack.tif", vol)
    with mrcfile.new(local / "tomo.mrc") as mrc:
        mrc.set_data(vol.astype(np.int16))
        mrc.voxel_size = (40.0, 40.0, 300.0)
    fs.put(str(local) + "/", "em-data/src/", recursive=True)
    options = [f"{k}={v}" for k, v in opts.items()]
    # through the command line: an HDF5 dataset read from S3, DEST on S3, two workers
    args = ["convert", "s3://em-data/src/v.h5:/volumes/raw", "s3://em-data/out.zarr", "--workers", "2",
            "--chunks", "4,64,64", *FAST]
    for o in options:
        args += ["--storage-option", o, "--dest-storage-option", o]
    ok(*args)
    back = zarr.open_array("s3://em-data/out.zarr/0", mode="r", storage_options=opts)
    assert np.array_equal(back[:], vol)
    group = zarr.open_group("s3://em-data/out.zarr", mode="r", storage_options=opts)
    assert group.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [30, 4, 4]
    # every other kind read from S3 (the source's chunks or byte ranges, a TIFF copied locally first)
    for name, want, scale in (("v2.zarr", vol, None), ("c.n5/raw", vol, (30.0, 4.0, 4.0)),
                              ("tomo.mrc", vol.astype(np.int16), (30.0, 4.0, 4.0)), ("stack.tif", vol, "any")):
        dest = tmp_path / (name.replace("/", "_") + ".out.zarr")
        res = conv.convert(f"s3://em-data/src/{name}", dest, chunks=(8, 64, 64), preset="fast", workers=1,
                           storage_options=opts)
        assert np.array_equal(read_level(dest), want), name
        assert scale == "any" or res.voxel_size == scale, name


def test_scheduler_address_sends_the_chunks_to_a_dask_distributed_cluster(crop, tmp_path):
    distributed = pytest.importorskip("distributed")
    src = make_n5(tmp_path / "c.n5", crop)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        ok("convert", src, tmp_path / "out.zarr", "--scheduler", cluster.scheduler_address, "--chunks", "8,64,64",
           "--levels", "2", *FAST)
    assert np.array_equal(read_level(tmp_path / "out.zarr"), crop)
    assert validated(tmp_path / "out.zarr")["scales"] == [[30.0, 4.0, 4.0], [30.0, 8.0, 8.0]]


def test_chunks_name_no_model(crop, tmp_path):
    """Format 6 chunks carry everything: the codec's configuration is the preset alone, and the options of
    voxcodec 0.5 (--model) are gone."""
    np.save(tmp_path / "v.npy", crop)
    ok("convert", tmp_path / "v.npy", tmp_path / "o.zarr", "--chunks", "8,64,64", "--workers", "1", *FAST)
    arr = zarr.open_array(str(tmp_path / "o.zarr" / "0"), mode="r")
    assert arr.metadata.codecs[0].to_dict()["configuration"] == {"preset": "fast"}
    assert np.array_equal(arr[:], crop)
    msg = refused("convert", tmp_path / "v.npy", tmp_path / "p.zarr", "--model", "zoo:em-general-v1", *FAST)
    assert "--model" in msg


def test_ome_zarr_0_4_group_with_t_and_c_axes_of_size_1(crop, tmp_path):
    group = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=2)
    arr = group.create_array("s0", shape=(1, 1, *crop.shape), chunks=(1, 1, 8, 64, 64), dtype=crop.dtype)
    arr[:] = crop[None, None]
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + \
           [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 0.03, 0.004, 0.004]}]}]}]
    src = open_source(str(tmp_path / "img.zarr"))
    assert src.shape == crop.shape and src.voxel_size == (0.03, 0.004, 0.004) and src.unit == "micrometer"
    assert np.array_equal(src[2:5, 10:20, 30:33], crop[2:5, 10:20, 30:33])
    channels = zarr.open_group(str(tmp_path / "two.zarr"), mode="w", zarr_format=2)
    channels.create_array("s0", shape=(1, 2, 4, 8, 8), dtype="uint8")
    channels.attrs["multiscales"] = group.attrs["multiscales"]
    with pytest.raises(InputError, match=r"c \(2\)"):
        open_source(str(tmp_path / "two.zarr"))


def test_n5_multiscale_group_converts_s0_with_the_groups_pixel_resolution(crop, tmp_path):
    n5.write_dataset(tmp_path / "c.n5" / "vol" / "s0", crop, (16, 64, 64))
    (tmp_path / "c.n5" / "vol" / "attributes.json").write_text(
        json.dumps({"pixelResolution": {"unit": "nm", "dimensions": [8.0, 8.0, 40.0]}}))
    src = open_source(str(tmp_path / "c.n5" / "vol"))
    assert src.voxel_size == (40.0, 8.0, 8.0) and src.unit == "nanometer" and src.label.endswith("vol/s0")
    assert np.array_equal(src[:], crop)


def test_a_worker_opens_a_source_once_for_all_its_chunks(crop, tmp_path, monkeypatch):
    """Chunk tasks arrive as unpickled copies of the source: they share one open file per process."""
    import pickle

    from voxcodec.storage import sources

    path = make_h5(tmp_path / "v.h5", crop)
    src = open_source(path)
    opened = []
    real_open = sources.HDF5Source._open
    monkeypatch.setattr(sources.HDF5Source, "_open", lambda self: opened.append(1) or real_open(self))
    copies = [pickle.loads(pickle.dumps(src)) for _ in range(3)]
    for i, c in enumerate(copies):
        assert np.array_equal(c.read(((i, i + 2), (0, 64), (0, 64))), crop[i:i + 2, :64, :64])
    assert len(opened) == 1
    src.close()
