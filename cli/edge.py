"""``voxcodec-edge``: compress slices as the microscope writes them and ship them to a zarr array."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

from voxcodec.errors import VoxcodecError
from voxcodec.core.presets import PRESETS

DESCRIPTION = """\
Watch ACQ_DIR while a microscope writes one image per slice into it, compress every block of
slices as soon as it is complete (a small network trained at the edge, lossless) and ship it into a
zarr v3 array at DEST that grows in z. DEST is a local or mounted path, sftp://user@host/path or
s3://bucket/path (any fsspec URL). The data centre reads it with plain zarr:

    zarr.open_array("DEST")[:]      (pip install voxcodec[zarr] registers the codec)

Slice files are taken in natural name order once complete: renamed into place, closed by their
writer, or (network shares, --poll) unchanged for --settle seconds. Partial files are never read.
The run ends when ACQ_DIR holds a file named by --finish-marker, or after --exit-when-idle seconds
without a new slice; the last, partial block is then shipped too.

A journal in --state makes every step restartable: after kill -9, a reboot or a network outage,
run the same command again and it resumes; no slice is lost or written twice. While DEST cannot be
reached, uploads retry with backoff and compressed blocks wait in a local spool (--spool-budget).
"""

EPILOG = """\
examples:
  voxcodec-edge /acq/run42 /mnt/store/run42.zarr --exit-when-idle 600
  voxcodec-edge /acq/run42 sftp://em@dc.example.org/data/run42.zarr --storage-option client_keys=~/.ssh/id_ed25519
  voxcodec-edge /acq/run42 s3://em-bucket/run42.zarr --storage-option endpoint_url=https://s3.example.org
  voxcodec-edge status                      # every run on this machine
  voxcodec-edge status --state DIR          # one run, from another terminal

Exit status: 0 the acquisition is shipped, 1 a verification failed, 2 bad usage or input,
130 stopped (Ctrl-C or SIGTERM; run the same command again to resume).
"""


def default_state_root() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "voxcodec-edge"


def default_state_dir(acq_dir: str, dest: str) -> Path:
    acq = os.path.abspath(acq_dir)
    tag = hashlib.sha1(f"{acq}\n{dest}".encode()).hexdigest()[:8]
    return default_state_root() / f"{Path(acq).name or 'acq'}-{tag}"


def _size(s: str) -> int:
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", s)
    if not m:
        raise argparse.ArgumentTypeError(f"a size like 500MB, 8GB or 2GiB, got {s!r}")
    scale = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[m.group(2).lower()]
    return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** scale)


def _option(s: str):
    key, sep, value = s.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--storage-option wants KEY=VALUE, got {s!r}")
    if key in ("key_filename", "client_keys"):
        value = os.path.expanduser(value)
    if key == "client_keys":  # asyncssh (sshfs) wants a list of key files
        return key, [os.path.expanduser(v) for v in value.split(",")]
    for conv in (int, float):
        try:
            return key, conv(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False, "none": None}.get(value.lower(), value)


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voxcodec-edge", description=DESCRIPTION, epilog=EPILOG,
                                usage="%(prog)s ACQ_DIR DEST [options]\n       %(prog)s status [--state DIR] [--json]",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("acq_dir", metavar="ACQ_DIR", help="the folder the microscope writes slice images into")
    p.add_argument("dest", metavar="DEST", help="the zarr array to write: a path, sftp://..., s3://... (fsspec URL)")
    p.add_argument("--pattern", default="*.tif", help='slice files to take, a shell pattern on the name (default "*.tif")')
    p.add_argument("--block-depth", type=int, metavar="N",
                   help="slices per block = the chunk depth of the zarr array (default: about 16 Mi voxels per block)")
    p.add_argument("--preset", choices=list(PRESETS), default="default",
                   help="speed / size trade-off of the codec (default: default)")
    p.add_argument("--state", metavar="DIR", help="journal, spool and status of this run "
                   f"(default: {default_state_root()}/<ACQ_DIR name>-<hash>)")
    p.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                   help="end the acquisition after this long without a new slice (default: wait for the marker)")
    p.add_argument("--finish-marker", default="finish", metavar="NAME",
                   help="a file of this name in ACQ_DIR ends the acquisition (default: finish)")
    p.add_argument("--delete-source-after-verify", action="store_true",
                   help="delete each slice file once its block was read back from DEST and decoded to the same voxels")
    p.add_argument("--spool-budget", type=_size, default=_size("8GB"), metavar="SIZE",
                   help="most compressed data kept locally while DEST is unreachable (default 8GB); "
                        "compression pauses when it is full and slices wait in ACQ_DIR")
    p.add_argument("--poll", action="store_true",
                   help="poll ACQ_DIR instead of inotify events (network shares, where events do not arrive)")
    p.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                   help="a file with no close/rename event counts as complete once unchanged this long (default 2)")
    p.add_argument("--voxel-size", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="voxel size, stored in the array's attributes")
    p.add_argument("--voxel-unit", default="nanometer", help="unit of --voxel-size (default nanometer)")
    p.add_argument("--storage-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec option for DEST, repeatable: client_keys=~/.ssh/id_ed25519 (sftp), endpoint_url=... (s3)")
    p.add_argument("--device", default="auto", help="training device: auto (GPU when present), cpu, cuda")
    p.add_argument("--tile", type=int, default=2048, metavar="N",
                   help="largest in-plane chunk side; larger slices are split into chunks (default 2048)")
    p.add_argument("-q", "--quiet", action="store_true", help="no status line, warnings only")
    p.add_argument("-v", "--verbose", action="store_true", help="log every block")
    return p


def status_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voxcodec-edge status",
                                description="Show the state of voxcodec-edge runs (from another terminal).")
    p.add_argument("--state", metavar="DIR", help=f"one run's --state (default: every run in {default_state_root()})")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    return p


def status_line(st: dict) -> str:
    ratio = f"{st['ratio']:.2f}x" if st.get("ratio") else "-"
    parts = [f"slices {st['slices_taken']}" + (f" (+{st['pending_files']} writing)" if st.get("pending_files") else ""),
             f"blocks {st['blocks_shipped']}/{st['blocks_coded']} shipped",
             f"spool {st['spool_bytes'] / 1e6:.1f} MB",
             f"ratio {ratio}",
             f"in {st['in_MBps']:.2f} MB/s out {st['out_MBps']:.2f} MB/s",
             "link ok" if st["link"] == "ok" else "link DOWN"]
    return " | ".join(parts)


def describe(st: dict) -> str:
    state = "finished" if st.get("finished") else ("running" if st.get("running") else "stopped (resume with the same command)")
    lines = [f"{st['state_dir']}: {state}" + (f" (pid {st['pid']})" if st.get("running") else ""),
             f"  {st['acq_dir']} -> {st['dest']}  (preset {st['preset']})",
             f"  slices:  {st['slices_taken']} taken, {st['slices_shipped']} shipped, "
             f"{st.get('pending_files', 0)} still being written",
             f"  blocks:  {st['blocks_shipped']} shipped of {st['blocks_coded']} coded; spool "
             f"{st['spool_bytes'] / 1e6:.1f} MB of {st['spool_budget'] / 1e6:.0f} MB",
             "  ratio:   " + (f"{st['ratio']:.2f}x ({st['raw_bytes'] / 1e6:.1f} MB -> {st['coded_bytes'] / 1e6:.1f} MB)"
                               if st.get("ratio") else "-"),
             f"  rate:    in {st['in_MBps']:.2f} MB/s, out {st['out_MBps']:.2f} MB/s (last 30 s)",
             f"  link:    {st['link']}",
             f"  updated: {st['updated']}"]
    if st.get("message"):
        lines.append(f"  note:    {st['message']}")
    if st.get("late_files"):
        lines.append(f"  late:    {len(st['late_files'])} file(s) arrived out of order and were not shipped")
    return "\n".join(lines)


def status_main(argv) -> int:
    from voxcodec.edge import read_status

    args = status_parser().parse_args(argv)
    dirs = [Path(args.state)] if args.state else sorted(
        p for p in default_state_root().glob("*") if (p / "status.json").exists())
    if not dirs:
        print(f"no voxcodec-edge runs in {default_state_root()}", file=sys.stderr)
        return 2 if args.state else 0
    out = []
    for d in dirs:
        try:
            out.append(read_status(d))
        except (VoxcodecError, OSError, ValueError) as exc:
            print(f"voxcodec-edge status: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(out[0] if args.state else out, indent=1))
    else:
        print("\n\n".join(describe(st) for st in out))
    return 0


class StatusLine(logging.Handler):
    """Log records above a status line that is redrawn in place on a terminal."""

    def __init__(self, stream, live: bool):
        super().__init__()
        self.stream, self.live, self.line = stream, live, ""
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record):
        msg = self.format(record)
        if self.live and self.line:
            self.stream.write("\r\033[K")
        self.stream.write(msg + "\n")
        if self.live and self.line:
            self.stream.write(self.line)
        self.stream.flush()

    def show(self, text: str):  # called from the run's status thread: same lock as emit()
        if self.live:
            with self.lock:
                self.line = text[:max(20, _columns() - 1)]
                self.stream.write("\r\033[K" + self.line)
                self.stream.flush()

    def close_line(self):
        with self.lock:
            if self.live and self.line:
                self.stream.write("\n")
                self.stream.flush()
                self.line = ""


def _columns() -> int:
    try:
        cols = os.get_terminal_size(2).columns
    except OSError:
        cols = 0
    return cols if cols >= 40 else 160  # a pseudo-terminal may report no width at all


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["status"]:
        return status_main(argv[1:])
    args = run_parser().parse_args(argv)

    missing = [m for m in ("zarr", "fsspec") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"voxcodec-edge: {', '.join(missing)} missing: pip install 'voxcodec[edge]'", file=sys.stderr)
        return 2
    from voxcodec.edge import EdgeOptions, EdgeRun

    handler = StatusLine(sys.stderr, live=sys.stderr.isatty() and not args.quiet)
    logger = logging.getLogger("voxcodec.edge")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    state = Path(args.state) if args.state else default_state_dir(args.acq_dir, args.dest)
    opts = EdgeOptions(acq_dir=args.acq_dir, dest=args.dest, state_dir=str(state), pattern=args.pattern,
                       block_depth=args.block_depth, preset=args.preset, device=device, tile=args.tile,
                       exit_when_idle=args.exit_when_idle, finish_marker=args.finish_marker,
                       delete_source=args.delete_source_after_verify, spool_budget=args.spool_budget,
                       poll=args.poll, settle=args.settle, voxel_size=args.voxel_size, voxel_unit=args.voxel_unit,
                       storage_options=dict(args.storage_option))
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    last = [0.0]

    def tick(st):
        if handler.live:
            handler.show(status_line(st))
        elif not args.quiet and time.monotonic() - last[0] >= 60:
            last[0] = time.monotonic()
            logger.info(status_line(st))

    try:
        run = EdgeRun(opts)
        st = run.run(on_tick=tick)
    except KeyboardInterrupt:
        handler.close_line()
        print(f"voxcodec-edge: stopped; run the same command again to resume (state in {state})", file=sys.stderr)
        return 130
    except VoxcodecError as exc:
        handler.close_line()
        print(f"voxcodec-edge: error: {exc}", file=sys.stderr)
        from voxcodec.edge import VerifyError

        return 1 if isinstance(exc, VerifyError) else 2
    handler.close_line()
    if not args.quiet:
        ratio = f"{st['ratio']:.2f}x" if st.get("ratio") else "-"
        print(f"voxcodec-edge: done: {st['slices_shipped']} slices in {st['blocks_shipped']} blocks shipped to "
              f"{args.dest} (ratio {ratio})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
