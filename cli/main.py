"""``voxcodec``: encode, decode, inspect and verify ``.vxc`` volumes from the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time

import numpy as np

import voxcodec
from voxcodec.errors import VoxcodecError
from voxcodec.core.presets import PRESETS
from voxcodec.storage.volume_io import TiffStackWriter, VolumeReader, sample_path

EPILOG = """examples:
  voxcodec sample sample.tif                        # write the bundled FIB-SEM sample volume
  voxcodec encode sample.tif -o sample.vxc          # compress (trains a small network per block)
  voxcodec info sample.vxc                          # bits per voxel, blocks, models, checksums
  voxcodec decode sample.vxc -o back.tif            # decompress, bit-exact
  voxcodec verify sample.vxc --against sample.tif   # decode everything and compare

Inputs: a TIFF stack (z, y, x), a .npy array or a folder of slice images (TIFF/PNG, sorted by name);
uint8 or uint16.  Exit status: 0 ok, 1 a damaged stream or failed verification, 2 bad usage or input.
"""


def _progress(total, desc, unit="B", disable=None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=1000, disable=disable,
                dynamic_ncols=True, smoothing=0.1)


def _tile(s):
    if s is None:
        return None
    try:
        parts = [int(p) for p in s.lower().replace(",", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tile wants HxW, for example 2048x2048, got {s!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"--tile wants HxW with positive sizes, got {s!r}")
    return tuple(parts)


def _zrange(s):
    try:
        a, b = s.split(":")
        return (int(a) if a else 0, int(b) if b else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--z wants START:STOP, for example 10:20, got {s!r}") from None


def _check_output(path, overwrite):
    if os.path.exists(path) and not overwrite:
        raise VoxcodecError(f"{path} exists; pass --overwrite to replace it")


@contextlib.contextmanager
def _partial_file(out):
    """Yield ``OUT.part`` to write to; it becomes ``out`` only when the with-block completes, and is
    removed on any failure (a killed or failed run never leaves a complete-looking output)."""
    tmp = out + ".part"
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _fmt_mb(n):
    return f"{n / 1e6:.2f} MB"


def cmd_encode(a):
    out = a.output or os.path.splitext(a.input)[0] + ".vxc"
    _check_output(out, a.overwrite)
    t0 = time.perf_counter()
    with VolumeReader(a.input) as vol, _partial_file(out) as tmp:
        total = vol.nbytes
        bar = _progress(total, "encode", disable=True if a.quiet else None)
        done = {"bytes": 0}

        def on_block(info):
            n = info.voxels * vol.dtype.itemsize
            done["bytes"] += n
            bar.update(n)
            bar.set_postfix_str(f"block {info.index + 1}, {info.bits_per_voxel:.3f} bpv", refresh=False)

        try:
            enc = voxcodec.Encoder(tmp, dtype=vol.dtype, slice_shape=vol.shape[1:], preset=a.preset,
                                   block_depth=a.block_depth, tile=a.tile, device=a.device, threads=a.threads,
                                   seed=a.seed, warm_start=not a.no_warm_start, on_block=on_block,
                                   expected_slices=vol.shape[0],
                                   metadata={"source": os.path.basename(a.input)})
            with enc:
                for chunk in vol.iter_chunks(enc.block_depth):
                    enc.write(chunk)
        finally:
            bar.close()
    dt = time.perf_counter() - t0
    size = os.path.getsize(out)
    nvox = int(np.prod(vol.shape))
    if not a.quiet:
        print(f"{a.input} -> {out}: {vol.shape[0]}x{vol.shape[1]}x{vol.shape[2]} {vol.dtype}, "
              f"{_fmt_mb(total)} -> {_fmt_mb(size)} ({8 * size / max(nvox, 1):.3f} bits/voxel, "
              f"ratio {total / max(size, 1):.2f}), {len(enc.blocks)} blocks, {total / 1e6 / dt:.2f} MB/s")
    return 0


def cmd_decode(a):
    out = a.output or os.path.splitext(a.input)[0] + ".tif"
    _check_output(out, a.overwrite)
    with voxcodec.Decoder(a.input, salvage=a.salvage) as dec:
        z0, z1 = a.z if a.z else (0, None)
        z0, z1, _ = slice(z0, z1).indices(dec.shape[0])
        z1 = max(z0, z1)
        nbytes = (z1 - z0) * dec.shape[1] * dec.shape[2] * dec.dtype.itemsize
        bar = _progress(nbytes, "decode", disable=True if a.quiet else None)
        t0 = time.perf_counter()
        try:
            with _partial_file(out) as tmp:
                _decode_to(dec, tmp, out.lower().endswith(".npy"), z0, z1, bar)
        finally:
            bar.close()
        dt = time.perf_counter() - t0
    if not a.quiet:
        print(f"{a.input} -> {out}: slices {z0}:{z1} of {dec.shape[0]}, {_fmt_mb(nbytes)}, "
              f"{nbytes / 1e6 / max(dt, 1e-9):.2f} MB/s")
    return 0


def _decode_to(dec, path, as_npy, z0, z1, bar):
    """Decode slices z0:z1 into a .npy or TIFF file, one z-layer of blocks at a time (memory stays
    bounded by a block layer)."""
    shape = (z1 - z0, *dec.shape[1:])
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dec.dtype, shape=shape) if as_npy else None
    writer = None if as_npy else TiffStackWriter(path, shape, dec.dtype)
    try:
        for lz0, depth in sorted({(e.z0, e.depth) for e in dec.index}):
            a0, a1 = max(z0, lz0), min(z1, lz0 + depth)
            if a1 <= a0:
                continue
            chunk = dec.read(a0, a1)
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


def _info(dec, path):
    nvox = int(np.prod(dec.shape))
    blocks = []
    for i, e in enumerate(dec.index):
        hd = dec.block_header(i)
        vox = e.depth * e.h * e.w
        blocks.append({"index": i, "z": [e.z0, e.z0 + e.depth], "y": [e.y0, e.y0 + e.h], "x": [e.x0, e.x0 + e.w],
                       "bytes": e.length, "bits_per_voxel": round(8 * e.length / max(vox, 1), 4),
                       "model_bytes": e.model_bytes, "inter_slice_model": e.inter,
                       "constant": bool(hd.flags & 1), "value_range": [hd.lo, hd.hi],
                       "data_crc32": f"{hd.data_crc:08x}", "voxel_crc32": f"{hd.voxel_crc:08x}"})
    return {"file": str(path), "format_version": 1, "encoder": dec.meta.get("encoder"),
            "preset": dec.meta.get("preset"), "shape": list(dec.shape), "dtype": str(dec.dtype),
            "bytes": dec.nbytes, "raw_bytes": nvox * dec.dtype.itemsize,
            "bits_per_voxel": round(8 * dec.nbytes / max(nvox, 1), 4),
            "ratio": round(nvox * dec.dtype.itemsize / max(dec.nbytes, 1), 4),
            "block_depth": dec.meta.get("block_depth"), "tile": dec.meta.get("tile"),
            "model": dec.meta.get("model"), "model_bytes": sum(b["model_bytes"] for b in blocks),
            "metadata": dec.meta.get("metadata", {}), "salvaged": dec.salvaged, "blocks": blocks}


def cmd_info(a):
    with voxcodec.Decoder(a.input, salvage=a.salvage) as dec:
        info = _info(dec, a.input)
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    z, y, x = info["shape"]
    print(f"{info['file']}: {z} x {y} x {x} {info['dtype']} (z, y, x), {info['encoder']}, preset {info['preset']}")
    print(f"  {_fmt_mb(info['raw_bytes'])} -> {_fmt_mb(info['bytes'])}: {info['bits_per_voxel']:.3f} bits/voxel, "
          f"ratio {info['ratio']:.2f}; models {info['model_bytes']} bytes in all")
    m = info["model"]
    print(f"  {len(info['blocks'])} blocks of depth {info['block_depth']}, tile {info['tile'][0]}x{info['tile'][1]}; "
          f"network: {m['levels']} levels, hidden {m['hidden'][0]}+{m['hidden'][1]}, {m['bins']} scale bins")
    if info["salvaged"]:
        print("  (salvaged: the stream has no block index; complete blocks were recovered by scanning)")
    print(f"  {'block':>5} {'z':>11} {'y':>11} {'x':>11} {'bytes':>10} {'bpv':>7} {'model':>6} {'inter':>5} "
          f"{'data crc':>8} {'voxel crc':>9}")
    for b in info["blocks"]:
        rng = lambda r: f"{r[0]}:{r[1]}"  # noqa: E731
        print(f"  {b['index']:>5} {rng(b['z']):>11} {rng(b['y']):>11} {rng(b['x']):>11} {b['bytes']:>10} "
              f"{b['bits_per_voxel']:>7.3f} {b['model_bytes']:>6} {'yes' if b['inter_slice_model'] else 'no':>5} "
              f"{b['data_crc32']:>8} {b['voxel_crc32']:>9}")
    return 0


def cmd_verify(a):
    with voxcodec.Decoder(a.input, salvage=a.salvage) as dec:
        ref = VolumeReader(a.against) if a.against else None
        if ref is not None and (ref.shape != dec.shape or ref.dtype != dec.dtype):
            print(f"MISMATCH: {a.input} holds {dec.shape} {dec.dtype}, {a.against} is {ref.shape} {ref.dtype}")
            return 1
        bar = _progress(len(dec.index), "verify", unit="block", disable=True if a.quiet else None)
        bad = []
        try:
            for i, e in enumerate(dec.index):
                try:
                    blk = dec.read_block(i)
                except VoxcodecError as exc:
                    bad.append(str(exc))
                    bar.update(1)
                    continue
                if ref is not None:
                    want = ref.read(e.z0, e.z0 + e.depth)[:, e.y0:e.y0 + e.h, e.x0:e.x0 + e.w]
                    if not np.array_equal(want, blk):
                        bad.append(f"block {i}: decoded voxels differ from {a.against}")
                bar.update(1)
        finally:
            bar.close()
            if ref is not None:
                ref.close()
    for msg in bad:
        print(f"FAILED {msg}")
    if bad:
        print(f"{a.input}: {len(bad)} of {len(dec.index)} blocks failed")
        return 1
    what = f"identical to {a.against}" if a.against else "all checksums match"
    print(f"OK {a.input}: {len(dec.index)} blocks, {dec.shape[0]}x{dec.shape[1]}x{dec.shape[2]} {dec.dtype}, {what}"
          + (" (salvaged)" if dec.salvaged else ""))
    return 0


def cmd_fit(a):
    _check_output(a.output, a.overwrite)
    with VolumeReader(a.input) as vol:
        z = min(vol.shape[0], a.max_slices)
        sample = vol.read(0, z)
    t0 = time.perf_counter()
    model = voxcodec.fit_model(sample, preset=a.preset, seed=a.seed, threads=a.threads)
    with open(a.output, "w") as f:
        f.write(model.to_text())
    print(f"{a.input} (slices 0:{z}) -> {a.output}: shared model {model.id}, {len(model.to_bytes())} bytes of "
          f"weights, fitted in {time.perf_counter() - t0:.1f} s; use it with "
          f"voxcodec.zarr.VoxCodec(model=open({a.output!r}).read())")
    return 0


def cmd_sample(a):
    _check_output(a.output, a.overwrite)
    shutil.copyfile(sample_path(), a.output)
    print(f"wrote {a.output}: 64 x 128 x 128 uint8 FIB-SEM crop of Drosophila medulla "
          "(Janelia FlyEM, CC-BY)")
    return 0


def build_parser():
    p = argparse.ArgumentParser(
        prog="voxcodec", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Lossless compression of electron-microscopy volumes: a small network is trained per "
                    "block to predict each voxel from the slice before and the part of the slice already "
                    "decoded; its integer-exact probabilities drive a range coder. Every voxel comes back "
                    "bit for bit, on any machine.")
    p.add_argument("--version", action="version", version=f"voxcodec {voxcodec.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("encode", help="compress a volume into a .vxc file",
                       description="Compress a uint8/uint16 volume (TIFF stack, .npy, or a folder of slices) "
                                   "into a .vxc stream, block by block, streaming from disk.")
    e.add_argument("input", help="TIFF stack, .npy file, or folder of slice images")
    e.add_argument("-o", "--output", help="output .vxc file (default: INPUT with .vxc)")
    e.add_argument("--preset", choices=list(PRESETS), default="default",
                   help="training effort per block: fast (edge computers), default, max (best bits, slow)")
    e.add_argument("--block-depth", type=int, metavar="N",
                   help="slices per block (default: about 16 Mi voxels per block, at most 256 slices, "
                        "balanced over the volume's depth)")
    e.add_argument("--tile", type=_tile, metavar="HxW",
                   help="cut slices into tiles of this size (default: 2048x2048 for larger slices)")
    e.add_argument("--threads", type=int, metavar="N", help="torch threads for training (default: torch's)")
    e.add_argument("--device", default="cpu", help="training device, e.g. cuda (default cpu; the stream does "
                                                   "not depend on it)")
    e.add_argument("--seed", type=int, default=0, help="random seed of the training (default 0)")
    e.add_argument("--no-warm-start", action="store_true",
                   help="train every block from scratch instead of from the previous block's weights")
    e.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="decompress a .vxc file to TIFF or .npy",
                       description="Decompress a .vxc stream; checksums of every block are verified.")
    d.add_argument("input", help=".vxc file")
    d.add_argument("-o", "--output", help="output .tif or .npy (default: INPUT with .tif)")
    d.add_argument("--z", type=_zrange, metavar="START:STOP",
                   help="decode only these slices (only the blocks they touch are decoded)")
    d.add_argument("--salvage", action="store_true",
                   help="read a stream whose end is missing (interrupted write): recover its complete blocks")
    d.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    d.set_defaults(func=cmd_decode)

    i = sub.add_parser("info", help="describe a .vxc file",
                       description="Shape, dtype, blocks, bits per voxel overall and per block, model size per "
                                   "block and checksums, without decoding.")
    i.add_argument("input", help=".vxc file")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument("--salvage", action="store_true", help="describe a stream whose end is missing")
    i.set_defaults(func=cmd_info)

    v = sub.add_parser("verify", help="decode every block and check checksums (and compare to the original)",
                       description="Decode every block, check its checksums and, with --against, compare the "
                                   "voxels to the original volume. Exit status 1 when anything differs.")
    v.add_argument("input", help=".vxc file")
    v.add_argument("--against", metavar="VOLUME", help="original volume to compare with, voxel for voxel")
    v.add_argument("--salvage", action="store_true", help="verify the complete blocks of a stream whose end is missing")
    v.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=cmd_verify)

    f = sub.add_parser("fit", help="train one shared model on a sample volume (for small zarr chunks)",
                       description="Train one model on a sample volume and write it as JSON text. Chunks of a "
                                   "zarr array too small to carry their own model are coded with it: "
                                   "voxcodec.zarr.VoxCodec(model=open(MODEL).read()).")
    f.add_argument("input", help="sample volume (TIFF stack, .npy or folder of slices)")
    f.add_argument("-o", "--output", default="voxcodec-model.json", help="model file (default voxcodec-model.json)")
    f.add_argument("--preset", choices=list(PRESETS), default="default", help="network size and training effort")
    f.add_argument("--max-slices", type=int, default=64, metavar="N", help="use at most the first N slices")
    f.add_argument("--threads", type=int, metavar="N", help="torch threads for training")
    f.add_argument("--seed", type=int, default=0, help="random seed of the training (default 0)")
    f.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    f.set_defaults(func=cmd_fit)

    s = sub.add_parser("sample", help="write the sample volume that ships with voxcodec",
                       description="Write the bundled 64 x 128 x 128 uint8 FIB-SEM sample (a crop of the FlyEM "
                                   "training sample 1, Drosophila medulla; credit Janelia FlyEM, CC-BY).")
    s.add_argument("output", nargs="?", default="sample.tif", help="where to write it (default sample.tif)")
    s.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    s.set_defaults(func=cmd_sample)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FileNotFoundError as exc:
        print(f"voxcodec: error: {exc}", file=sys.stderr)
        return 2
    except voxcodec.CorruptStreamError as exc:
        print(f"voxcodec: error: {args.input}: {exc}", file=sys.stderr)
        return 1
    except VoxcodecError as exc:
        print(f"voxcodec: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"voxcodec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("voxcodec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
