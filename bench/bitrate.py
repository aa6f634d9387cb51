#!/usr/bin/env python
"""Bits per voxel and speed of voxcodec against PNG and the best classic lossless codecs.

    python bench/bitrate.py [VOLUME.tif ...] [--shared] --out DIR [--codecs ...] [--presets ...]
                            [--paq8px PATH]

Every (volume, codec) pair runs in its own process (so peak memory is its own), encodes, decodes
and compares the decoded array with the original: `lossless` is true only if that comparison
passed in this run.  Writes DIR/results.json, DIR/results.md, DIR/bitrate.png and DIR/slices.png.
Without volumes it runs on the sample volume shipped with voxcodec.  ``--paq8px PATH`` adds paq8px
(run from PATH, each slice alone as a PGM; uint8 only) as an anchor: it codes about 14 KB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SHARED = HERE.parent.parent / "shared" / "data"

from codecs_registry import DEFAULT_CODECS, all_codecs  # noqa: E402


def load_volume(path) -> np.ndarray:
    import tifffile

    a = tifffile.imread(path)
    return a[None] if a.ndim == 2 else a


def _peak_rss_MB() -> float:
    """Peak resident memory of this process, or of the largest program it ran and waited for (paq8px
    runs as one), whichever is larger."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def _mbps(x: float) -> str:
    """MB/s with two decimals, or three significant digits below 1 (paq8px codes about 0.014 MB/s)."""
    return f"{x:.2f}" if x >= 1 else f"{x:.3g}"


def run_one(volume_path, codec, vol=None) -> dict:
    """Encode, decode and compare one volume with one codec (an instance of codecs_registry.Codec)."""
    vol = load_volume(volume_path) if vol is None else vol
    t0 = time.perf_counter()
    payload, slice_bits = codec.encode(vol)
    t1 = time.perf_counter()
    out = codec.decode(payload, vol.shape, vol.dtype)
    t2 = time.perf_counter()
    nbytes = sum(len(p) for p in payload)
    raw = vol.nbytes
    lossless = bool(out.shape == vol.shape and out.dtype == vol.dtype and np.array_equal(out, vol))
    return {
        "volume": Path(volume_path).stem, "codec": codec.name, "params": codec.params,
        "shape": list(vol.shape), "dtype": str(vol.dtype), "bytes": nbytes,
        "bits_per_voxel": 8 * nbytes / vol.size, "ratio": raw / max(nbytes, 1),
        "encode_seconds": t1 - t0, "decode_seconds": t2 - t1,
        "encode_MBps": raw / 1e6 / (t1 - t0), "decode_MBps": raw / 1e6 / (t2 - t1),
        "peak_rss_MB": _peak_rss_MB(),
        "lossless": lossless,
        "slice_bits_per_voxel": [b / (vol.shape[1] * vol.shape[2]) for b in slice_bits] if slice_bits else None,
    }


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for mod in ("voxcodec", "numpy", "imagecodecs", "tifffile"):
        try:
            m = __import__(mod)
            versions[mod] = getattr(m, "__version__", "?")
        except ImportError:
            versions[mod] = None
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        mem = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_GiB": mem, "platform": platform.platform(),
            "versions": versions}


def _worker(volume, codec_name, out_json, paq8px=None):
    rec = run_one(volume, all_codecs(paq8px=paq8px)[codec_name]())
    Path(out_json).write_text(json.dumps(rec))


def run_all(volumes, codec_names, out: Path, progress=True, in_process=False, paq8px=None) -> list[dict]:
    """Every (volume, codec) pair, each in its own process unless ``in_process``; ``paq8px``: the
    path of the paq8px program (needed only when "paq8px" is among the codecs)."""
    from tqdm.auto import tqdm

    jobs = [(v, c) for v in volumes for c in codec_names]
    records = []
    bar = tqdm(jobs, disable=not progress, unit="run", dynamic_ncols=True)
    for v, c in bar:
        bar.set_description(f"{c} on {Path(v).stem}")
        if in_process:
            records.append(run_one(v, all_codecs(paq8px=paq8px)[c]()))
            continue
        tmp = out / f".{Path(v).stem}.{c}.json"
        res = subprocess.run([sys.executable, __file__, "--worker", str(v), c, str(tmp)]
                             + ([str(paq8px)] if paq8px else []), capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{c} on {v} failed:\n{res.stderr[-3000:]}")
        records.append(json.loads(tmp.read_text()))
        tmp.unlink()
    return records


def write_markdown(results: dict, path: Path):
    recs = results["records"]
    vols = list(dict.fromkeys(r["volume"] for r in recs))
    codecs = list(dict.fromkeys(r["codec"] for r in recs))
    by = {(r["volume"], r["codec"]): r for r in recs}
    m = results["machine"]
    ver = m["versions"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_GiB']} GiB; voxcodec {ver.get('voxcodec')}, "
             f"numpy {ver.get('numpy')}, imagecodecs {ver.get('imagecodecs')}, tifffile {ver.get('tifffile')}.", "",
             f"Command: `{results['command']}`", "",
             "Bits per voxel (lower is better; every entry decoded and compared voxel for voxel in this run, "
             "✗ = not lossless):", ""]
    lines.append("| codec | " + " | ".join(vols) + " | mean |")
    lines.append("|---|" + "---:|" * (len(vols) + 1))
    for c in codecs:
        row = []
        for v in vols:
            r = by.get((v, c))
            row.append("" if r is None else f"{r['bits_per_voxel']:.3f}" + ("" if r["lossless"] else " ✗"))
        vals = [by[(v, c)]["bits_per_voxel"] for v in vols if (v, c) in by]
        best = {v: min(by[(v, cc)]["bits_per_voxel"] for cc in codecs if (v, cc) in by) for v in vols}
        row = [f"**{x}**" if x and (v, c) in by and by[(v, c)]["bits_per_voxel"] == best[v] else x
               for x, v in zip(row, vols)]
        lines.append(f"| {c} | " + " | ".join(row) + f" | {np.mean(vals):.3f} |")
    lines += ["", "Speed, MB/s of raw voxels (encode / decode), and peak memory of the process or of a program it "
              "ran (MB):", ""]
    lines.append("| codec | " + " | ".join(vols) + " | peak RSS |")
    lines.append("|---|" + "---:|" * (len(vols) + 1))
    for c in codecs:
        row = [f"{_mbps(by[(v, c)]['encode_MBps'])} / {_mbps(by[(v, c)]['decode_MBps'])}" if (v, c) in by else ""
               for v in vols]
        rss = max(by[(v, c)]["peak_rss_MB"] for v in vols if (v, c) in by)
        lines.append(f"| {c} | " + " | ".join(row) + f" | {rss:.0f} |")
    lines += ["", "Parameters:", ""]
    for c in codecs:
        r = next(r for r in recs if r["codec"] == c)
        lines.append(f"- `{c}`: " + ", ".join(f"{k}={v}" for k, v in r["params"].items()))
    path.write_text("\n".join(lines) + "\n")


COLORS = {"voxcodec-fast": "#f2a0a0", "voxcodec-default": "crimson", "voxcodec-max": "#6b0016",
          "png": "#8c8c8c", "jpegxl-e7": "#1f77b4", "jpegxl-e9": "#0b3d6b", "jpegls": "#2ca02c",
          "webp-ll": "#9467bd", "jpeg2k-ll": "#8c564b", "zstd-19": "#bcbd22", "xz-9": "#17becf",
          "paq8px": "#ff7f0e"}


def _color(codec, i):
    import matplotlib.pyplot as plt

    return COLORS.get(codec, plt.get_cmap("tab20")(i % 20))


def plot_bitrate(results: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = results["records"]
    vols = list(dict.fromkeys(r["volume"] for r in recs))
    codecs = list(dict.fromkeys(r["codec"] for r in recs))
    by = {(r["volume"], r["codec"]): r for r in recs}
    fig, ax = plt.subplots(figsize=(max(7, 1.9 * len(vols) + 2), 4.6))
    width = 0.8 / len(codecs)
    for i, c in enumerate(codecs):
        xs = [j + (i - (len(codecs) - 1) / 2) * width for j in range(len(vols))]
        ys = [by[(v, c)]["bits_per_voxel"] if (v, c) in by else np.nan for v in vols]
        ax.bar(xs, ys, width, label=c, color=_color(c, i), edgecolor="black" if c.startswith("voxcodec") else "none",
               linewidth=0.8)
    bits = 16 if any(r["dtype"] == "uint16" for r in recs) else 8
    ax.axhline(bits, color="black", linestyle="--", linewidth=1)
    ax.text(len(vols) - 0.5, bits, f"uncompressed ({bits} bits)", ha="right", va="bottom", fontsize=8)
    ax.set_xticks(range(len(vols)))
    ax.set_xticklabels(vols, rotation=12, fontsize=8)
    ax.set_ylabel("bits per voxel (lossless)")
    ax.set_ylim(0, bits * 1.08)
    ax.set_title("Lossless bitrate on EM volumes (lower is better)")
    ax.legend(fontsize=7, ncol=min(len(codecs), 5), loc="lower center", bbox_to_anchor=(0.5, -0.38))
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_slices(results: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in results["records"] if r["slice_bits_per_voxel"]]
    vols = list(dict.fromkeys(r["volume"] for r in recs))
    if not vols:
        return
    fig, axes = plt.subplots(len(vols), 1, figsize=(8, 2.1 * len(vols) + 0.6), squeeze=False)
    for ax, v in zip(axes[:, 0], vols):
        for i, r in enumerate(recs):
            if r["volume"] == v and (r["codec"].startswith("voxcodec") or r["codec"] in ("png", "jpegxl-e7", "paq8px")):
                ax.plot(r["slice_bits_per_voxel"], label=r["codec"], linewidth=1.2, color=_color(r["codec"], i))
        ax.set_title(v, fontsize=9)
        ax.set_ylabel("bits/voxel", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("slice (z)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, 0.985))
    fig.suptitle("Bits per slice (voxcodec spreads each block's header and model over its slices)", fontsize=9,
                 y=0.999)
    fig.tight_layout(rect=(0, 0, 1, 0.965))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(*sys.argv[2:6])  # volume, codec, output json[, paq8px path]
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("volumes", nargs="*", help="TIFF volumes (default: the sample volume shipped with voxcodec)")
    p.add_argument("--shared", action="store_true", help=f"every volume in {SHARED}")
    p.add_argument("--out", default="bench/out", help="output folder (default bench/out)")
    p.add_argument("--codecs", nargs="+", default=None, help=f"codecs (default: {' '.join(DEFAULT_CODECS)}); "
                   f"known: {' '.join(all_codecs())}")
    p.add_argument("--presets", nargs="+", default=None, choices=["fast", "default", "max"],
                   help="voxcodec presets to run (default: default)")
    p.add_argument("--paq8px", metavar="PATH", help="also run paq8px, the program at PATH, on each slice alone "
                   "(an anchor: slow, about 14 KB/s, uint8 only; never run by default)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--in-process", action="store_true", help="run codecs in this process (peak RSS then mixes)")
    a = p.parse_args(argv)
    from voxcodec.storage.volume_io import sample_path

    vols = list(a.volumes)
    if a.shared:
        vols += sorted(str(f) for f in SHARED.glob("*.tif"))
    if not vols:
        vols = [sample_path()]
    codecs = list(a.codecs or DEFAULT_CODECS)
    if a.presets:
        codecs = [c for c in codecs if not c.startswith("voxcodec-")]
        codecs = [f"voxcodec-{x}" for x in a.presets] + codecs
    paq8px = None
    if a.paq8px:
        paq8px = os.path.abspath(os.path.expanduser(a.paq8px))
        if not (os.path.isfile(paq8px) and os.access(paq8px, os.X_OK)):
            p.error(f"--paq8px: no executable at {a.paq8px}")
        if "paq8px" not in codecs:
            codecs.append("paq8px")
        import tifffile

        wide = []
        for v in vols:
            with tifffile.TiffFile(v) as tf:
                if tf.series[0].dtype != np.uint8:
                    wide.append(f"{v} ({tf.series[0].dtype})")
        if wide:  # refused before hours of other codecs, not after
            p.error("--paq8px codes uint8 volumes only (8-bit PGM slices): " + ", ".join(wide))
    known = all_codecs(paq8px=paq8px)
    unknown = [c for c in codecs if c not in known]
    if unknown:
        p.error(f"unknown codecs: {unknown}; known: {list(known)}"
                + ("" if paq8px else " (paq8px needs --paq8px PATH)"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    records = run_all(vols, codecs, out, in_process=a.in_process, paq8px=paq8px)
    results = {"command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
               "machine": machine_info(), "seconds": round(time.time() - t0, 1),
               "date": time.strftime("%Y-%m-%d"), "records": records}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    write_markdown(results, out / "results.md")
    if not a.no_plots:
        plot_bitrate(results, out / "bitrate.png")
        plot_slices(results, out / "slices.png")
    print((out / "results.md").read_text())
    bad = [f"{r['codec']} on {r['volume']}" for r in records if not r["lossless"]]
    if bad:
        print("NOT LOSSLESS: " + ", ".join(bad))
        return 1
    print(f"all {len(records)} runs lossless; {results['seconds']} s; results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
