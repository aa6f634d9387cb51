"""``voxcodec``: encode, decode, inspect and verify ``.vxc`` volumes from the command line."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import sys
import time

import click
import numpy as np

import voxcodec
from voxcodec.core import parallel
from voxcodec.core.presets import PRESETS
from voxcodec.errors import CorruptStreamError, VoxcodecError
from voxcodec.storage import voxel_size as vsize
from voxcodec.storage.volume_io import TiffStackWriter, VolumeReader, sample_path

EPILOG = """\b
examples:
  voxcodec sample sample.tif                        # write the bundled FIB-SEM sample volume
  voxcodec preview sample.tif                       # each preset on a sample, beside JPEG-XL
  voxcodec encode sample.tif -o sample.vxc          # compress (the model learns while it codes)
  voxcodec info sample.vxc                          # bits per voxel, blocks, models, checksums
  voxcodec decode sample.vxc -o back.tif            # decompress, bit-exact
  voxcodec verify sample.vxc --against sample.tif   # decode everything and compare
  voxcodec encode big.tif -o big.vxc --resume       # continue an encode that was interrupted

\b
Inputs: a TIFF stack (z, y, x), a .npy array or a folder of slice images (TIFF/PNG, in natural name
order: s2.png before s10.png); uint8, uint16, int8 or int16, one channel.
\b
Exit status: 0 ok; 1 a damaged stream or a failed verification; 2 bad usage or input (nothing
was written); 3 an internal error (a bug: rerun with --debug and report the traceback);
130 interrupted (Ctrl-C or SIGTERM).
"""

EXIT_DAMAGED, EXIT_INPUT, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 3, 130

STREAM_SUFFIXES = (".vxc",)
VOLUME_SUFFIXES = (".tif", ".tiff", ".npy")


class PipeClosed(Exception):
    """Whoever read our output went away (``voxcodec info --json | head``)."""


#: the stream or volume the running command reads, to name it in an error message
_current = {"input": None}


def command(**kwargs):
    """``cli.command`` plus what every command shares: a --debug flag (also accepted before the command
    name), the input remembered for error messages, and a closed stdout pipe that is not an error."""
    def wrap(f):
        @click.option("--debug", is_flag=True, expose_value=False, hidden=True)
        @functools.wraps(f)
        def run(*args, **kw):
            _current["input"] = kw.get("input")
            try:
                return f(*args, **kw)
            except BrokenPipeError:
                raise PipeClosed() from None
        return cli.command(**kwargs)(run)
    return wrap


# -- option types -----------------------------------------------------------------------------------------
class TileType(click.ParamType):
    name = "HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            parts = [int(p) for p in str(value).lower().replace(",", "x").split("x")]
        except ValueError:
            self.fail(f"wants HxW, for example 2048x2048, got {value!r}", param, ctx)
        if len(parts) == 1:
            parts *= 2
        if len(parts) != 2 or min(parts) < 1:
            self.fail(f"wants HxW with positive sizes, got {value!r}", param, ctx)
        return tuple(parts)


class ZRangeType(click.ParamType):
    name = "START:STOP"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            a, b = str(value).split(":")
            z0, z1 = (int(a) if a else 0), (int(b) if b else None)
        except ValueError:
            self.fail(f"wants START:STOP, for example 10:20, got {value!r}", param, ctx)
        if z0 < 0 or (z1 is not None and z1 <= z0):
            self.fail(f"wants 0 <= START < STOP, got {value!r}", param, ctx)
        return z0, z1


class VoxelSizeType(click.ParamType):
    name = "Z,Y,X"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = [p.strip() for p in str(value).replace("x", ",").split(",")]
        try:
            sizes = tuple(float(p) for p in parts)
        except ValueError:
            self.fail(f"wants three sizes Z,Y,X, for example 40,4,4; got {value!r}", param, ctx)
        if len(sizes) != 3:
            self.fail(f"wants three sizes Z,Y,X (z first), for example 40,4,4; got {len(sizes)} in {value!r}",
                      param, ctx)
        if not all(np.isfinite(v) and v > 0 for v in sizes):
            self.fail(f"wants positive sizes Z,Y,X, for example 40,4,4; got {value!r}", param, ctx)
        return sizes


class UnitType(click.ParamType):
    name = "UNIT"

    def convert(self, value, param, ctx):
        try:
            return vsize.normalize_unit(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def resolve_voxel_size(vol, voxel_size, unit):
    """The (voxel size, unit) an encode stores: the input's, overridden by --voxel-size (in --unit, else in the
    input's unit) or re-expressed in --unit alone."""
    found, found_unit = vol.voxel_size, vol.voxel_unit
    if voxel_size is not None:
        if unit is None and found_unit is None:
            raise click.UsageError(f"{vol.path.name} declares no unit for --voxel-size: give --unit too, for "
                                   "example --unit nm")
        return tuple(voxel_size), unit or found_unit
    if unit is not None:
        if found is None:
            raise click.UsageError(f"{vol.path.name} declares no voxel size to express in {unit}: give "
                                   "--voxel-size Z,Y,X with --unit")
        return tuple(None if v is None else vsize.convert(v, found_unit, unit) for v in found), unit
    return found, found_unit


def stream_voxel_size(dec, label):
    """(voxel size, unit) from a stream's metadata; a malformed entry is reported and ignored."""
    try:
        return vsize.from_metadata(dec.meta.get("metadata"))
    except ValueError as exc:
        warn(f"{label}: the voxel size in the stream's metadata is unusable ({exc}); it is ignored")
        return None, None


def check_z_range(z, depth: int) -> tuple[int, int]:
    """Slices z0:z1 of a volume of ``depth`` slices; out of range is an error, never an empty file."""
    z0, z1 = z if z else (0, None)
    z1 = depth if z1 is None else z1
    if z0 >= depth or z1 > depth:
        raise click.BadParameter(f"{z0}:{z1} is outside the volume, which has {depth} slices (0:{depth})",
                                 param_hint="'--z'")
    return z0, z1


# -- outputs ------------------------------------------------------------------------------------------------
def check_output(path: str, overwrite: bool, suffixes: tuple, what: str):
    """Refuse an output that cannot be written before any work starts; warn about an odd extension."""
    if os.path.isdir(path):
        raise click.BadParameter(f"{path} is a folder: give a file name, for example "
                                 f"{os.path.join(path, 'volume' + suffixes[0])}", param_hint="'-o'")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise click.BadParameter(f"the folder {parent} does not exist: create it first", param_hint="'-o'")
    if not os.access(parent, os.W_OK):
        raise click.BadParameter(f"the folder {parent} is not writable", param_hint="'-o'")
    if os.path.exists(path) and not overwrite:
        raise click.BadParameter(f"{path} exists; pass --overwrite to replace it", param_hint="'-o'")
    if not path.lower().endswith(suffixes):
        warn(f"{path} does not end in {' or '.join(suffixes)}; it will hold {what}")


def warn(msg: str):
    click.echo(f"voxcodec: warning: {msg}", err=True)


@contextlib.contextmanager
def partial_file(out: str, keep_on_failure=lambda: False):
    """Yield ``OUT.part`` to write to; it becomes ``out`` only when the with-block completes.

    On any failure (an error, Ctrl-C, SIGTERM) the part is removed, unless ``keep_on_failure()``
    says it holds work worth resuming."""
    tmp = out + ".part"
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        if not keep_on_failure():
            if os.path.exists(tmp):
                os.remove(tmp)
        raise


def _progress(total, desc, unit="B", quiet=False):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=1000, disable=True if quiet else None,
                dynamic_ncols=True, smoothing=0.1, mininterval=0.2)


def _fmt_mb(n):
    return f"{n / 1e6:.2f} MB"


# -- the command group -----------------------------------------------------------------------------------
@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(voxcodec.__version__, prog_name="voxcodec", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="show the full traceback of an error")
@click.pass_context
def cli(ctx, debug):
    """Lossless compression of electron-microscopy volumes: each voxel is predicted from its neighbours in
    the slice and in the slices before by a model that learns while it codes, in the encoder and the
    decoder alike, with integer-exact arithmetic; its probabilities drive a range coder. Every voxel
    comes back bit for bit, on any machine."""
    ctx.obj = {"debug": debug}


@command(epilog="An interrupted encode (Ctrl-C, SIGTERM, kill -9, a full disk) leaves OUTPUT.part; "
                    "run the same command with --resume to continue it: the complete blocks are kept, "
                    "checked against the input and not coded again.")
@click.argument("input", type=click.Path())
@click.option("-o", "--output", help="output .vxc file (default: INPUT with .vxc)")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="default", show_default=True,
              help="how hard the model works: fast (about JPEG-XL effort 3's speed), default, max (fewest bits, "
                   "slowest)")
@click.option("--block-depth", type=click.IntRange(min=1), metavar="N",
              help="slices per block (default: about 4 Mi voxels per block, at least 4 slices, at most 256, "
                   "balanced over the volume's depth)")
@click.option("--tile", type=TileType(), metavar="HxW",
              help="cut slices into tiles of this size (default: 2048x2048 for larger slices)")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="threads coding blocks at once (default: every core, %d here)" % parallel.cores())
@click.option("--voxel-size", type=VoxelSizeType(), metavar="Z,Y,X",
              help="physical size of a voxel, z first (e.g. 40,4,4), in --unit or else in the unit the input "
                   "declares; replaces the size read from the input's TIFF/OME metadata")
@click.option("--unit", type=UnitType(), metavar="UNIT",
              help="unit of the voxel size: nm, um (micron, µm), A (angstrom), mm, ... (stored as OME-NGFF "
                   "names: nanometer, micrometer, ...); alone, it re-expresses the input's voxel size in this unit")
@click.option("--resume", is_flag=True, help="continue the interrupted encode in OUTPUT.part")
@click.option("--overwrite", is_flag=True, help="replace OUTPUT (and any OUTPUT.part) if it exists")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar or summary")
def encode(input, output, preset, block_depth, tile, workers, voxel_size, unit, resume, overwrite, quiet):
    """Compress a uint8/uint16/int8/int16 volume (TIFF stack, .npy, or a folder of slices) into a .vxc stream, block by
    block, streaming from disk. The voxel size that the input's ImageJ, OME or resolution metadata declares (or
    --voxel-size) is stored in the stream and written back by decode."""
    out = output or os.path.splitext(input.rstrip("/"))[0] + ".vxc"
    check_output(out, overwrite, STREAM_SUFFIXES, "a .vxc stream")
    part = out + ".part"
    had_part = os.path.exists(part)
    if had_part and not resume and not overwrite:
        raise click.BadParameter(f"{part} holds an interrupted encode: pass --resume to continue it, or "
                                 "--overwrite to start over", param_hint="'-o'")
    if resume and not had_part and not quiet:
        warn(f"nothing to resume ({part} does not exist): starting from the first slice")
    t0 = time.perf_counter()
    with VolumeReader(input) as vol:
        total = vol.nbytes
        itemsize = vol.dtype.itemsize
        vs, vs_unit = resolve_voxel_size(vol, voxel_size, unit)
        metadata = {"source": os.path.basename(input.rstrip("/")), **vsize.to_metadata(vs, vs_unit)}
        state = {"enc": None}

        def worth_keeping():  # coded blocks, or an interrupted encode this run could not continue
            return (state["enc"] is not None and len(state["enc"].blocks) > 0) or (resume and had_part)

        with partial_file(out, keep_on_failure=worth_keeping) as tmp:
            bar = _progress(total, "encode", quiet=quiet)

            def on_progress(voxels):
                bar.update(max(0, int(voxels * itemsize) - bar.n))

            def on_block(info):
                bar.set_postfix_str(f"block {info.index + 1}" + (" (kept)" if info.resumed else
                                                                 f", {info.bits_per_voxel:.3f} bpv"), refresh=False)

            try:
                enc = voxcodec.Encoder(tmp, dtype=vol.dtype, slice_shape=vol.shape[1:], preset=preset,
                                       block_depth=block_depth, tile=tile, workers=workers, on_block=on_block,
                                       on_progress=on_progress, expected_slices=vol.shape[0], resume=resume,
                                       metadata=metadata)
                state["enc"] = enc
                if enc.resumed_slices and not quiet:
                    kept = sum(b.resumed for b in enc.blocks)
                    click.echo(f"resuming {part}: {kept} complete blocks ({enc.resumed_slices} of {vol.shape[0]} "
                               "slices) kept; checking them against the input", err=True)
                with enc:
                    for chunk in vol.iter_chunks(enc.block_depth):
                        enc.write(chunk)
            except BaseException:
                bar.close()
                enc = state["enc"]
                if enc is not None and enc.blocks:
                    done = max(b.z0 + b.depth for b in enc.blocks)
                    click.echo(f"voxcodec: {done} of {vol.shape[0]} slices are coded and kept in {part}; run the "
                               "same command with --resume to continue", err=True)
                raise
            bar.close()
    dt = time.perf_counter() - t0
    size = os.path.getsize(out)
    nvox = int(np.prod(vol.shape))
    if not quiet:
        kept = sum(b.resumed for b in enc.blocks)
        click.echo(f"{input} -> {out}: {vol.shape[0]}x{vol.shape[1]}x{vol.shape[2]} {vol.dtype}, "
                   f"{_fmt_mb(total)} -> {_fmt_mb(size)} ({8 * size / max(nvox, 1):.3f} bits/voxel, "
                   f"ratio {total / max(size, 1):.2f}), {len(enc.blocks)} blocks"
                   + (f" ({kept} kept from the interrupted run)" if kept else "")
                   + f", {total / 1e6 / dt:.2f} MB/s")
        click.echo(f"voxel size: {vsize.describe(vs, vs_unit)}"
                   + ("" if vs is not None else " (give --voxel-size Z,Y,X and --unit to store one)"))
    return 0


@command()
@click.argument("input", type=click.Path())
@click.option("-o", "--output", help="output .tif or .npy (default: INPUT with .tif)")
@click.option("--z", "z", type=ZRangeType(), metavar="START:STOP",
              help="decode only these slices (only the blocks they touch are decoded)")
@click.option("--salvage", is_flag=True,
              help="read a stream whose end is missing (interrupted write): recover its complete blocks")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="processes coding blocks at once (default: every core, %d here)" % parallel.cores())
@click.option("--overwrite", is_flag=True, help="replace OUTPUT if it exists")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar or summary")
def decode(input, output, z, salvage, workers, overwrite, quiet):
    """Decompress a .vxc stream to a TIFF stack or .npy; the checksums of every block are verified."""
    out = output or os.path.splitext(input)[0] + ".tif"
    check_output(out, overwrite, VOLUME_SUFFIXES, "a TIFF stack")
    with voxcodec.Decoder(input, salvage=salvage, workers=workers) as dec:
        z0, z1 = check_z_range(z, dec.shape[0])
        vs, vs_unit = stream_voxel_size(dec, input)
        as_npy = out.lower().endswith(".npy")
        if as_npy and vs is not None and not quiet:
            warn(f"a .npy file holds no voxel size: {out} will not carry {vsize.describe(vs, vs_unit)}")
        nbytes = (z1 - z0) * dec.shape[1] * dec.shape[2] * dec.dtype.itemsize
        bar = _progress(nbytes, "decode", quiet=quiet)
        t0 = time.perf_counter()
        try:
            with partial_file(out) as tmp:
                _decode_to(dec, tmp, as_npy, z0, z1, bar, vs, vs_unit)
        finally:
            bar.close()
        dt = time.perf_counter() - t0
    if not quiet:
        click.echo(f"{input} -> {out}: slices {z0}:{z1} of {dec.shape[0]}, {_fmt_mb(nbytes)}, "
                   f"{nbytes / 1e6 / max(dt, 1e-9):.2f} MB/s" + (" (salvaged)" if dec.salvaged else ""))
    return 0


def _decode_to(dec, path, as_npy, z0, z1, bar, voxel_size=None, unit=None):
    """Decode slices z0:z1 into a .npy or TIFF file (with the voxel size as ImageJ calibration), one z-layer
    of blocks at a time (memory stays bounded by a few block layers; the workers decode ahead)."""
    shape = (z1 - z0, *dec.shape[1:])
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dec.dtype, shape=shape) if as_npy else None
    writer = None if as_npy else TiffStackWriter(path, shape, dec.dtype, voxel_size, unit)
    for note in () if as_npy else writer.notes:
        warn(note)
    try:
        for a0, a1, chunk in dec.iter_layers(z0, z1):
            if as_npy:
                arr[a0 - z0:a1 - z0] = chunk
            else:
                writer.write(chunk)
            bar.update(chunk.nbytes)
    finally:
        if as_npy:
            arr.flush()
            del arr
        else:
            writer.close()


def _block_mode(dec, i, hd) -> str:
    """How block ``i`` is coded, without decoding it: constant, stored, or its model (format 6: the coder)."""
    if hd.flags & 1:
        return "constant"
    if hd.flags & 8:
        return "stored"
    if dec.format_version >= 6:
        return dec.block_params(i).coder
    return "networks" + (f" ({dec.meta['priors'][hd.prior - 1]['id']})" if hd.prior else "")


def _info(dec, path):
    nvox = int(np.prod(dec.shape))
    blocks = []
    for i, e in enumerate(dec.index):
        hd = dec.block_header(i)
        vox = e.depth * e.h * e.w
        blocks.append({"index": i, "z": [e.z0, e.z0 + e.depth], "y": [e.y0, e.y0 + e.h], "x": [e.x0, e.x0 + e.w],
                       "bytes": e.length, "bits_per_voxel": round(8 * e.length / max(vox, 1), 4),
                       "model_bytes": e.model_bytes, "mode": _block_mode(dec, i, hd), "value_range": [hd.lo, hd.hi],
                       "data_crc32": f"{hd.data_crc:08x}", "voxel_crc32": f"{hd.voxel_crc:08x}"})
    return {"file": str(path), "format_version": dec.format_version, "encoder": dec.meta.get("encoder"),
            "preset": dec.meta.get("preset"), "shape": list(dec.shape), "dtype": str(dec.dtype),
            "bytes": dec.nbytes, "raw_bytes": nvox * dec.dtype.itemsize,
            "bits_per_voxel": round(8 * dec.nbytes / max(nvox, 1), 4),
            "ratio": round(nvox * dec.dtype.itemsize / max(dec.nbytes, 1), 4),
            "block_depth": dec.meta.get("block_depth"), "tile": dec.meta.get("tile"),
            "model": _header_model(dec), "model_bytes": sum(b["model_bytes"] for b in blocks),
            "priors": dec.meta.get("priors", []), **_info_voxel_size(dec, path),
            "metadata": dec.meta.get("metadata", {}), "salvaged": dec.salvaged, "blocks": blocks}


def _header_model(dec):
    """The file header's model: format 6 lists the encoder's candidate parameters (hex): the first, as fields."""
    m = dec.meta.get("model")
    if dec.format_version < 6 or isinstance(m, dict):  # the first 0.6.0 builds wrote the fields themselves
        return m
    from voxcodec.core.learn import Params

    try:
        return Params.from_bytes(bytes.fromhex(m[0])).to_json()
    except (ValueError, voxcodec.CorruptStreamError):
        return None


def _describe_model(inf) -> str:
    m = inf["model"]
    if inf["format_version"] >= 6:
        if m is None:
            return "model: parameters not valid for this voxcodec"
        return (f"model: {m['coder']} coder, least squares over {m['causal']} + {m['prev']} + {m['prev2']} neighbours "
                f"(slice, slice before, the one before), re-solved every {2 ** m['interval_log']} voxels")
    return f"networks: {m['levels']} levels, hidden {m['hidden'][0]}+{m['hidden'][1]}, {m['bins']} scale bins"


def _info_voxel_size(dec, path):
    vs, unit = stream_voxel_size(dec, path)
    return {"voxel_size": None if vs is None else list(vs), "unit": unit}


@command()
@click.argument("input", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--salvage", is_flag=True, help="describe a stream whose end is missing")
def info(input, as_json, salvage):
    """Shape, dtype, blocks, bits per voxel overall and per block, model size per block and checksums, without
    decoding."""
    with voxcodec.Decoder(input, salvage=salvage) as dec:
        inf = _info(dec, input)
    if as_json:
        click.echo(json.dumps(inf, indent=2))
        return 0
    z, y, x = inf["shape"]
    lines = [f"{inf['file']}: {z} x {y} x {x} {inf['dtype']} (z, y, x), {inf['encoder']}, preset {inf['preset']}, "
             f"format {inf['format_version']}",
             f"  {_fmt_mb(inf['raw_bytes'])} -> {_fmt_mb(inf['bytes'])}: {inf['bits_per_voxel']:.3f} bits/voxel, "
             f"ratio {inf['ratio']:.2f}; models {inf['model_bytes']} bytes in all"]
    lines.append(f"  voxel size: {vsize.describe(inf['voxel_size'], inf['unit'])}")
    lines.append(f"  {len(inf['blocks'])} blocks of depth {inf['block_depth']}, tile {inf['tile'][0]}x{inf['tile'][1]}; "
                 + _describe_model(inf))
    if inf["priors"]:
        used = [b["prior"] for b in inf["blocks"]]
        lines.append("  zoo priors: " + ", ".join(f"{p['id']} (sha256 {p['sha256'][:12]}..., {used.count(p['id'])} blocks)"
                                                 for p in inf["priors"]))
    if inf["salvaged"]:
        lines.append("  (salvaged: the stream has no block index; complete blocks were recovered by scanning)")
    lines.append(f"  {'block':>5} {'z':>11} {'y':>11} {'x':>11} {'bytes':>10} {'bpv':>7} {'model':>6} "
                 f"{'data crc':>8} {'voxel crc':>9}  mode")
    for b in inf["blocks"]:
        rng = lambda r: f"{r[0]}:{r[1]}"  # noqa: E731
        lines.append(f"  {b['index']:>5} {rng(b['z']):>11} {rng(b['y']):>11} {rng(b['x']):>11} {b['bytes']:>10} "
                     f"{b['bits_per_voxel']:>7.3f} {b['model_bytes']:>6} "
                     f"{b['data_crc32']:>8} {b['voxel_crc32']:>9}  {b['mode']}")
    click.echo("\n".join(lines))
    return 0


@command()
@click.argument("input", type=click.Path())
@click.option("--against", metavar="VOLUME", help="original volume to compare with, voxel for voxel")
@click.option("--salvage", is_flag=True, help="verify the complete blocks of a stream whose end is missing")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="processes coding blocks at once (default: every core, %d here)" % parallel.cores())
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
def verify(input, against, salvage, workers, quiet):
    """Decode every block, check its checksums and, with --against, compare the voxels to the original volume.
    Exit status 1 when anything differs."""
    with voxcodec.Decoder(input, salvage=salvage, workers=workers) as dec, \
            (VolumeReader(against) if against else contextlib.nullcontext()) as ref:
        if ref is not None and (ref.shape != dec.shape or ref.dtype != dec.dtype):
            click.echo(f"MISMATCH: {input} holds {dec.shape} {dec.dtype}, {against} is {ref.shape} {ref.dtype}")
            return EXIT_DAMAGED
        if not dec.index:
            click.echo(f"FAILED {input}: no complete block" + (" could be recovered" if salvage else "")
                       + f" ({dec.shape[0]} slices)")
            return EXIT_DAMAGED
        bar = _progress(len(dec.index), "verify", unit="block", quiet=quiet)
        bad = []
        try:
            for i, blk in dec.iter_blocks(catch=True):
                e = dec.index[i]
                if isinstance(blk, VoxcodecError):
                    bad.append(str(blk))
                    bar.update(1)
                    continue
                if ref is not None:
                    want = ref.read(e.z0, e.z0 + e.depth)[:, e.y0:e.y0 + e.h, e.x0:e.x0 + e.w]
                    if not np.array_equal(want, blk):
                        bad.append(f"block {i}: decoded voxels differ from {against}")
                bar.update(1)
        finally:
            bar.close()
    for msg in bad:
        click.echo(f"FAILED {msg}")
    if bad:
        click.echo(f"{input}: {len(bad)} of {len(dec.index)} blocks failed")
        return EXIT_DAMAGED
    what = f"identical to {against}" if against else "all checksums match"
    click.echo(f"OK {input}: {len(dec.index)} blocks, {dec.shape[0]}x{dec.shape[1]}x{dec.shape[2]} {dec.dtype}, {what}"
               + (" (salvaged)" if dec.salvaged else ""))
    return 0


@command(epilog="The sample is coded on one thread by each codec in turn; every voxcodec row is decoded and compared "
               "voxel for voxel. JPEG-XL rows need imagecodecs (pip install imagecodecs).")
@click.argument("input", type=click.Path())
@click.option("--slices", type=click.IntRange(min=1), default=16, show_default=True, metavar="N",
              help="slices of the sample, from the middle of the volume")
@click.option("--side", type=click.IntRange(min=16), default=512, show_default=True, metavar="N",
              help="the sample is cropped to N x N voxels around the centre of the slices")
@click.option("--presets", default="fast,default", show_default=True,
              help="presets to try, comma-separated (max codes about 20 times slower than default)")
@click.option("--no-baselines", is_flag=True, help="leave JPEG-XL out")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def preview(input, slices, side, presets, no_baselines, as_json):
    """Try the presets on a sample of a volume before committing to one: bits per voxel and MB/s (one thread) of
    each, beside JPEG-XL lossless efforts 3 and 7 on the same sample."""
    from voxcodec.core.preview import preview as run_preview, sample_of

    names = [p.strip() for p in presets.split(",") if p.strip()]
    for n in names:
        if n not in PRESETS:
            raise click.BadParameter(f"unknown preset {n!r}; choose from {', '.join(PRESETS)}", param_hint="'--presets'")
    with VolumeReader(input) as vol:
        sample = sample_of(vol, slices, side)
    if not as_json:
        click.echo(f"{input}: sample of {sample.shape[0]} x {sample.shape[1]} x {sample.shape[2]} {sample.dtype} "
                   f"from the middle of {vol.shape[0]} x {vol.shape[1]} x {vol.shape[2]}; one thread per codec")
        click.echo(f"{'codec':<34} {'bits/voxel':>10} {'encode MB/s':>12} {'decode MB/s':>12}  lossless")

    def show(r):
        if not as_json:
            click.echo(f"{r.codec:<34} {r.bits_per_voxel:>10.4f} {r.encode_MBps:>12.2f} {r.decode_MBps:>12.1f}  "
                       f"{'yes' if r.lossless else 'NO'}{'  ' + r.note if r.note else ''}")

    rows = run_preview(sample, names, baselines=not no_baselines, on_row=show)
    if as_json:
        click.echo(json.dumps([vars(r) for r in rows], indent=1))
    else:
        best = min((r for r in rows if r.codec.startswith("preset") and r.lossless),
                   key=lambda r: r.bits_per_voxel)
        click.echo(f"fewest bits: {best.codec}")
    return 0


@command(name="zoo")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (with the model cards)")
def zoo_list(as_json):
    """List the pretrained network priors installed (the package's, then VOXCODEC_ZOO's folders): id, content
    hash, what each was trained on.  Streams of voxcodec 0.4 and 0.5 name them and decode with them; voxcodec 0.6
    (format 6) codes without priors: its model learns while it codes."""
    from voxcodec import zoo

    priors = zoo.available()
    if as_json:
        click.echo(json.dumps([{"id": p.id, "sha256": p.sha256, "path": p.path, "card": p.card} for p in priors],
                              indent=1))
        return 0
    if not priors:
        click.echo("no priors installed: streams of voxcodec 0.4 and 0.5 that name one will not decode")
    for p in priors:
        vols = ", ".join(v.get("volume", "?") for v in p.card.get("trained_on", []))
        cfg = p.model.config
        click.echo(f"{p.id:<20} sha256 {p.sha256[:16]}  {cfg.hidden[0]}x{cfg.hidden[1]} hidden, {cfg.neighbours} "
                   f"neighbours, trained on {vols or '?'}")
    return 0


@command()
@click.argument("output", default="sample.tif", required=False)
@click.option("--overwrite", is_flag=True, help="replace OUTPUT if it exists")
def sample(output, overwrite):
    """Write the sample volume that ships with voxcodec: 64 x 128 x 128 uint8, a crop of the FlyEM FIB-SEM
    training sample 1 (Drosophila medulla; credit Janelia FlyEM, CC-BY). OUTPUT defaults to sample.tif."""
    check_output(output, overwrite, (".tif", ".tiff"), "a TIFF stack")
    shutil.copyfile(sample_path(), output)
    click.echo(f"wrote {output}: 64 x 128 x 128 uint8 FIB-SEM crop of Drosophila medulla (Janelia FlyEM, CC-BY)")
    return 0


# -- commands defined in their own modules (each imports `cli` and `command` from here) ----------------------
# (one import line per module below)
from voxcodec_cli import convert as _convert  # noqa: E402,F401
from voxcodec_cli import serve as _serve  # noqa: E402,F401


# -- entry point ---------------------------------------------------------------------------------------
def _on_sigterm(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends a run exactly as Ctrl-C does


def _error(msg: str) -> None:
    click.echo(f"voxcodec: error: {msg}", err=True)


def main(argv=None) -> int:
    """Run the CLI; returns the exit status (see the help text)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get("VOXCODEC_DEBUG") == "1"
    old = None
    try:
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass
    try:
        rc = cli.main(args=argv, prog_name="voxcodec", standalone_mode=False)
        return rc if isinstance(rc, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:  # usage errors: exit 2, one line
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        _error(exc.format_message() + hint)
        return exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        _error("interrupted")
        return EXIT_INTERRUPTED
    except PipeClosed:  # `voxcodec info --json | head`: the reader left, nothing to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except CorruptStreamError as exc:
        if debug:
            raise
        _error(f"{_current['input']}: {exc}" if _current["input"] else str(exc))
        return EXIT_DAMAGED
    except (VoxcodecError, OSError) as exc:
        if debug:
            raise
        _error(str(exc) if not isinstance(exc, OSError) or not exc.filename else
               f"{exc.strerror or exc}: {exc.filename}")
        return EXIT_INPUT
    except Exception as exc:  # a bug: say so in one line; --debug shows where
        if debug:
            raise
        _error(f"internal error ({type(exc).__name__}: {exc}); rerun with --debug and report the traceback")
        return EXIT_BUG
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # python -m voxcodec_cli.main: run the package's copy of this module, on which
    from voxcodec_cli.main import run as _run  # the commands of their own modules (convert, serve) register

    _run()
