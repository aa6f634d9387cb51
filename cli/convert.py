"""``voxcodec convert SRC DEST``: any EM volume (zarr, N5, HDF5, MRC, TIFF, ...) to a voxcodec-coded
OME-Zarr image, in parallel on dask, every chunk verified, resumable (:mod:`voxcodec.storage.convert`)."""

from __future__ import annotations

import os

import click

from voxcodec.core import parallel
from voxcodec.core.presets import PRESETS
from voxcodec_cli.main import _fmt_mb, _progress, command, warn

EPILOG = """\b
examples:
  voxcodec convert raw.zarr em.ome.zarr                       # zarr v2/v3 array, or an OME-Zarr image's level 0
  voxcodec convert raw.n5/volume em.ome.zarr --levels 4       # N5 dataset, with a 4-level pyramid
  voxcodec convert stack.h5:/raw em.ome.zarr --workers 8      # HDF5 dataset
  voxcodec convert tomo.mrc em.ome.zarr                       # MRC (voxel size from the header, Å -> nm)
  voxcodec convert stack.tif em.ome.zarr --voxel-size 30,4,4 --unit nm
  voxcodec convert s3://bucket/raw.zarr s3://bucket/em.ome.zarr --scheduler tcp://head:8786
  voxcodec convert raw.zarr em.ome.zarr --resume              # finish an interrupted conversion

\b
DEST is a zarr v3 group: level "0" (and "1", "2"... with --levels) coded with voxcodec, OME-NGFF 0.5
multiscales metadata with the voxel size. Every chunk is read back from DEST, decoded and compared with
the source (exit 1 if one differs). An interrupted run (Ctrl-C, kill -9) is finished by the same command
with --resume: the chunks already in DEST are checked against the source and kept. See docs/convert.md.
"""


class NumbersType(click.ParamType):
    """Three numbers, Z,Y,X (or one, for all three axes)."""

    def __init__(self, cast, positive=True):
        self.cast, self.positive = cast, positive
        self.name = "Z,Y,X"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            parts = [self.cast(p) for p in str(value).lower().replace("x", ",").split(",")]
        except ValueError:
            self.fail(f"wants Z,Y,X, for example 32,512,512, got {value!r}", param, ctx)
        if len(parts) == 1:
            parts *= 3
        if len(parts) != 3 or (self.positive and min(parts) <= 0):
            self.fail(f"wants three positive numbers Z,Y,X, got {value!r}", param, ctx)
        return tuple(parts)


class StorageOption(click.ParamType):
    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, eq, val = str(value).partition("=")
        if not eq or not key:
            self.fail(f"wants KEY=VALUE, for example anon=true, got {value!r}", param, ctx)
        low = val.lower()
        if low in ("true", "false"):
            return key, low == "true"
        for cast in (int, float):
            try:
                return key, cast(val)
            except ValueError:
                pass
        return key, os.path.expanduser(val) if val.startswith("~") else val


@command(epilog=EPILOG)
@click.argument("src")
@click.argument("dest")
@click.option("--chunks", type=NumbersType(int), metavar="Z,Y,X",
              help="chunk shape of DEST (default 32,512,512, cut to the volume)")
@click.option("--levels", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="pyramid levels: N-1 downsampled levels (2x in y, x; in z too for near-isotropic voxels)")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="default", show_default=True,
              help="how hard each chunk's model works: fast, default, max")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="local worker processes, one compute thread each (default: every core, %d here)"
                   % parallel.cores())
@click.option("--scheduler", metavar="ADDRESS",
              help="run on this dask.distributed cluster (tcp://host:8786) instead of local processes")
@click.option("--voxel-size", type=NumbersType(float), metavar="Z,Y,X",
              help="voxel size to record (default: the source's, where it has one)")
@click.option("--unit", help="unit of the voxel size: nanometer (nm), micrometer (um), angstrom (Å), ...")
@click.option("--storage-option", "storage_option", type=StorageOption(), multiple=True, metavar="KEY=VALUE",
              help="fsspec option for a SRC URL, repeatable (anon=true, endpoint_url=..., client_keys=...)")
@click.option("--dest-storage-option", "dest_storage_option", type=StorageOption(), multiple=True,
              metavar="KEY=VALUE", help="fsspec option for a DEST URL, repeatable")
@click.option("--resume", is_flag=True, help="finish an interrupted conversion: keep DEST's chunks that verify")
@click.option("--overwrite", is_flag=True, help="replace DEST if it exists")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar, notes or summary")
def convert(src, dest, chunks, levels, preset, workers, scheduler, voxel_size, unit, storage_option,
            dest_storage_option, resume, overwrite, quiet):
    """Convert a uint8/uint16/int8/int16 volume (zarr v2/v3 or OME-Zarr, N5, HDF5 FILE.h5:/DATASET, MRC, TIFF,
    .npy or a folder of slices; local or an fsspec URL) into a voxcodec-coded OME-Zarr image at DEST."""
    from voxcodec.storage.convert import convert as run_convert

    if workers is not None and scheduler:
        raise click.BadParameter("--workers sets local processes; a --scheduler cluster has its own workers",
                                 param_hint="'--workers'")
    state = {"bar": None}

    def on_start(result, total, n):
        if quiet:
            return
        for note in result.notes:
            click.echo(f"voxcodec: {note}", err=True)
        vs = (f"voxel {'x'.join(f'{s:g}' for s in result.voxel_size)} {result.unit or '(no unit)'}"
              if result.voxel_size else "voxel size unknown")
        click.echo(f"{result.source}: {'x'.join(map(str, result.shape))} {result.dtype}, {vs}; {n} chunks in "
                   f"{len(result.levels)} level(s) of chunks {'x'.join(map(str, result.levels[0].chunks))}"
                   + (", checking the chunks already in DEST" if resume else ""), err=True)
        state["bar"] = _progress(total, "convert", quiet=quiet)
        state["kept"] = 0

    def on_chunk(info):
        bar = state["bar"]
        if bar is None:
            return
        state["kept"] += info["status"] == "kept"
        if state["kept"]:
            bar.set_postfix_str(f"{state['kept']} kept", refresh=False)
        bar.update(info["bytes"])

    try:
        res = run_convert(src, dest, chunks=chunks, levels=levels, preset=preset,
                          workers=workers, scheduler=scheduler, resume=resume, overwrite=overwrite,
                          voxel_size=voxel_size, unit=unit, storage_options=dict(storage_option) or None,
                          dest_storage_options=dict(dest_storage_option) or None, on_start=on_start,
                          on_chunk=on_chunk)
    except BaseException:
        if state["bar"] is not None:
            state["bar"].close()
            if not quiet:
                warn(f"the conversion stopped; the chunks written so far are kept in {dest}: run the same command "
                     "with --resume to finish it")
        raise
    if state["bar"] is not None:
        state["bar"].close()
    if not quiet:
        nvox = res.bytes_in / max(1, _itemsize(res.dtype))
        click.echo(f"{res.source} -> {res.dest}: {len(res.levels)} level(s), {res.written} chunks written, "
                   f"{res.kept} chunks kept (verified from an earlier run), {res.empty} chunks of zeros not stored; "
                   f"{_fmt_mb(res.bytes_in)} -> {_fmt_mb(res.bytes_stored)} (ratio "
                   f"{res.bytes_in / max(res.bytes_stored, 1):.2f}, "
                   f"{8 * res.bytes_stored / max(nvox, 1):.3f} bits/voxel), "
                   f"{res.seconds:.1f} s, {res.bytes_in / 1e6 / max(res.seconds, 1e-9):.2f} MB/s; every chunk verified")
    return 0


def _itemsize(dtype: str) -> int:
    import numpy as np

    return np.dtype(dtype).itemsize
