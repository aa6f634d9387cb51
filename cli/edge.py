"""``voxcodec-edge``: compress slices as the microscope writes them and ship them to a zarr array."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import signal
import sys
import time
import traceback
from pathlib import Path

import click

from voxcodec.errors import VoxcodecError
from voxcodec.core.presets import PRESETS

PROG = "voxcodec-edge"
USAGE = ("ACQ_DIR DEST [options]", "status [--state DIR] [--json]")
INSTALL_HINT = 'pip install -e ".[edge]" in a voxcodec checkout'

DESCRIPTION = """\
Watch ACQ_DIR while a microscope writes one image per slice into it, compress every block of
slices as soon as it is complete (a model that learns while it codes, lossless) and ship it into a
zarr v3 array at DEST that grows in z. DEST is a local or mounted path, sftp://user@host/path or
s3://bucket/path (any fsspec URL). The data centre reads it with plain zarr:

    zarr.open_array("DEST")[:]      (voxcodec installed there registers the codec:
                                     pip install -e ".[zarr]" in a voxcodec checkout)

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
  voxcodec-edge status --help               # the status command's options (--json)

Exit status: 0 the acquisition is shipped, 1 a verification failed (or an unexpected error),
2 bad usage or input, 130 stopped (Ctrl-C or SIGTERM; run the same command again to resume).
Errors are one line on stderr; --debug adds the traceback.
"""


def default_state_root() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "voxcodec-edge"


def default_state_dir(acq_dir: str, dest: str) -> Path:
    acq = os.path.abspath(acq_dir)
    tag = hashlib.sha1(f"{acq}\n{dest}".encode()).hexdigest()[:8]
    return default_state_root() / f"{Path(acq).name or 'acq'}-{tag}"


def _size(s: str) -> int:
    """A size like 500MB, 8GB or 2GiB in bytes (ValueError if it is not one)."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", s)
    if not m:
        raise ValueError(f"a size like 500MB, 8GB or 2GiB, got {s!r}")
    scale = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[m.group(2).lower()]
    return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** scale)


def _option(s: str):
    """A --storage-option KEY=VALUE as (key, value), the value converted (ValueError if malformed)."""
    key, sep, value = s.partition("=")
    if not sep or not key:
        raise ValueError(f"--storage-option wants KEY=VALUE, got {s!r}")
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


class _Converted(click.ParamType):
    """A click type from a function that raises ValueError on bad input."""

    def __init__(self, name: str, fn):
        self.name, self.fn = name, fn

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value  # already converted
        try:
            return self.fn(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = _Converted("size", _size)
STORAGE_OPTION = _Converted("key=value", _option)


def _expand_prefixes(args: list[str], command: click.Command) -> list[str]:
    """Long options may be shortened to any unambiguous prefix (--delete-source, --exit-when), as
    they could be when this tool parsed its arguments with argparse."""
    longs = {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)
             if o.startswith("--")}
    out = list(args)
    for i, tok in enumerate(out):
        if tok == "--":
            break
        name, eq, value = tok.partition("=")
        if name.startswith("--") and name not in longs:
            hits = sorted(o for o in longs if o.startswith(name))
            if len(hits) == 1:
                out[i] = hits[0] + eq + value
            elif len(hits) > 1:
                raise click.UsageError(f"ambiguous option: {name} could match {', '.join(hits)}")
    return out


class EdgeCommand(click.Command):
    """``voxcodec-edge ACQ_DIR DEST [options]``, or ``voxcodec-edge status ...`` when the first
    argument is ``status``. Help text is shown as written (paragraphs, examples); errors are one line
    on stderr and come back as exit codes (see EPILOG)."""

    def __init__(self, *args, usage=(), arguments=(), subcommands=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.usage_lines, self.arguments, self.subcommands = usage, arguments, dict(subcommands or {})

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = sys.argv[1:] if args is None else list(args)
        prog = prog_name or PROG
        cmd = self
        if args[:1] and args[0] in self.subcommands:
            cmd, prog, args = self.subcommands[args[0]], f"{prog} {args[0]}", args[1:]
        try:
            # the base class's main (not this override again, for a subcommand); exit codes come back as values
            rc = click.Command.main(cmd, args, prog_name=prog, complete_var=complete_var, standalone_mode=False,
                                    **extra)
        except click.ClickException as exc:  # bad usage: one line, not click's usage block
            hint = f" (see {prog} --help)" if isinstance(exc, click.UsageError) else ""
            click.echo(f"{prog}: error: {exc.format_message()}{hint}", err=True)
            rc = exc.exit_code
        except click.Abort:  # Ctrl-C before the run started
            click.echo(f"{prog}: stopped", err=True)
            rc = 130
        except BrokenPipeError:  # stdout closed early (voxcodec-edge status | head): no more output, no error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            rc = 1
        rc = 0 if rc is None else rc
        if standalone_mode:
            sys.exit(rc)
        return rc

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, _expand_prefixes(args, self))

    def format_usage(self, ctx, formatter):
        if not self.usage_lines:
            return super().format_usage(ctx, formatter)
        root = ctx.command_path
        lines = [f"{root} {u}" for u in self.usage_lines]
        formatter.write("Usage: " + "\n       ".join(lines) + "\n")

    def format_help_text(self, ctx, formatter):  # as written, like argparse's RawDescriptionHelpFormatter
        if self.help:
            formatter.write_paragraph()
            formatter.write(self.help.rstrip("\n") + "\n")

    def format_options(self, ctx, formatter):
        if self.arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(self.arguments)
        super().format_options(ctx, formatter)

    def format_epilog(self, ctx, formatter):
        if self.epilog:
            formatter.write_paragraph()
            formatter.write(self.epilog.rstrip("\n") + "\n")


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEBUG_HELP = "on an error, show the traceback too (errors are one line otherwise)"


def _fail(prog: str, exc: BaseException, debug: bool, *, with_type: bool):
    """Report an error on one line of stderr (the traceback first with --debug)."""
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    text = f"{type(exc).__name__}: {exc}" if with_type else str(exc)
    hint = "" if debug else " (--debug shows the traceback)" if with_type else ""
    print(f"{prog}: error: {text}{hint}", file=sys.stderr)


@click.command("status", cls=EdgeCommand, context_settings=CONTEXT, usage=("[--state DIR] [--json] [--debug]",),
               help="Show the state of voxcodec-edge runs (from another terminal).")
@click.option("--state", metavar="DIR", help=f"one run's --state (default: every run in {default_state_root()})")
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
@click.option("--debug", is_flag=True, help=DEBUG_HELP)
@click.pass_context
def status_command(ctx, state, as_json, debug):
    try:
        rc = _status(state, as_json)
    except BrokenPipeError:
        raise
    except Exception as exc:  # a bug, or a status.json of another version: one line, exit 1 as an uncaught error
        _fail(ctx.command_path, exc, debug, with_type=True)
        rc = 1
    ctx.exit(rc)


def _status(state, as_json) -> int:
    from voxcodec.edge import read_status

    dirs = [Path(state)] if state else sorted(
        p for p in default_state_root().glob("*") if (p / "status.json").exists())
    if not dirs:
        print(f"no voxcodec-edge runs in {default_state_root()}", file=sys.stderr)
        return 2 if state else 0
    out = []
    for d in dirs:
        try:
            out.append(read_status(d))
        except (VoxcodecError, OSError, ValueError) as exc:
            print(f"voxcodec-edge status: {exc}", file=sys.stderr)
            return 2
    if as_json:
        print(json.dumps(out[0] if state else out, indent=1))
    else:
        print("\n\n".join(describe(st) for st in out))
    return 0


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


def _positive_sizes(ctx, param, value):
    if value is not None and not all(math.isfinite(v) and v > 0 for v in value):
        raise click.BadParameter(f"wants three positive sizes Z Y X, for example 40 4 4; got "
                                 f"{' '.join(f'{v:g}' for v in value)}")
    return value


def _length_unit(ctx, param, value):
    from voxcodec.storage.voxel_size import normalize_unit

    try:
        return normalize_unit(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(PROG, cls=EdgeCommand, context_settings=CONTEXT, help=DESCRIPTION, epilog=EPILOG, usage=USAGE,
               subcommands={"status": status_command},
               arguments=[("ACQ_DIR", "the folder the microscope writes slice images into"),
                          ("DEST", "the zarr array to write: a path, sftp://..., s3://... (fsspec URL)")])
@click.argument("acq_dir", metavar="ACQ_DIR")
@click.argument("dest", metavar="DEST")
@click.option("--pattern", default="*.tif", help='slice files to take, a shell pattern on the name (default "*.tif")')
@click.option("--block-depth", type=int, metavar="N",
              help="slices per block = the chunk depth of the zarr array (default: about 16 Mi voxels per block)")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="default",
              help="speed / size trade-off of the codec (default: default)")
@click.option("--state", metavar="DIR",
              help=f"journal, spool and status of this run (default: {default_state_root()}/<ACQ_DIR name>-<hash>)")
@click.option("--exit-when-idle", type=float, metavar="SECONDS",
              help="end the acquisition after this long without a new slice (default: wait for the marker)")
@click.option("--finish-marker", default="finish", metavar="NAME",
              help="a file of this name in ACQ_DIR ends the acquisition (default: finish)")
@click.option("--delete-source-after-verify", is_flag=True,
              help="delete each slice file once its block was read back from DEST and decoded to the same voxels")
@click.option("--spool-budget", type=SIZE, default="8GB", metavar="SIZE",
              help="most compressed data kept locally while DEST is unreachable (default 8GB); "
                   "compression pauses when it is full and slices wait in ACQ_DIR")
@click.option("--poll", is_flag=True,
              help="poll ACQ_DIR instead of inotify events (network shares, where events do not arrive)")
@click.option("--settle", type=float, default=2.0, metavar="SECONDS",
              help="a file with no close/rename event counts as complete once unchanged this long (default 2)")
@click.option("--voxel-size", type=float, nargs=3, metavar="Z Y X", default=None, callback=_positive_sizes,
              help="voxel size, stored in the array's attributes")
@click.option("--voxel-unit", default="nanometer", metavar="VOXEL_UNIT", callback=_length_unit,
              help="unit of --voxel-size: nm, um (micron, µm), A (angstrom), ..., stored as nanometer, micrometer, "
                   "... (default nanometer)")
@click.option("--storage-option", type=STORAGE_OPTION, multiple=True, metavar="KEY=VALUE",
              help="fsspec option for DEST, repeatable: client_keys=~/.ssh/id_ed25519 (sftp), endpoint_url=... (s3)")
@click.option("--tile", type=int, default=2048, metavar="N",
              help="largest in-plane chunk side; larger slices are split into chunks (default 2048)")
@click.option("--workers", type=click.IntRange(min=0), default=0, metavar="N",
              help="blocks coded at once, by threads (default 0: every core)")
@click.option("-q", "--quiet", is_flag=True, help="no status line, warnings only")
@click.option("-v", "--verbose", is_flag=True, help="log every block")
@click.option("--debug", is_flag=True, help=DEBUG_HELP)
@click.pass_context
def cli(ctx, debug, **args):
    try:
        rc = _run(**args)
    except Exception as exc:  # not an error of the run (those are handled in _run): a bug or the system
        _fail(PROG, exc, debug, with_type=True)
        rc = 1  # as an uncaught exception
    else:
        if isinstance(rc, BaseException):  # an error the run reported: exit 1 if a verification failed, else 2
            from voxcodec.edge import VerifyError

            _fail(PROG, rc, debug, with_type=False)
            rc = 1 if isinstance(rc, VerifyError) else 2
    ctx.exit(rc)


def _run(acq_dir, dest, pattern, block_depth, preset, state, exit_when_idle, finish_marker,
         delete_source_after_verify, spool_budget, poll, settle, voxel_size, voxel_unit, storage_option, tile,
         quiet, verbose, workers=0):
    """Run one acquisition; returns the exit code, or the VoxcodecError that ended it."""
    missing = [m for m in ("zarr", "fsspec") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"{PROG}: {', '.join(missing)} missing: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from voxcodec.edge import EdgeOptions, EdgeRun

    handler = StatusLine(sys.stderr, live=sys.stderr.isatty() and not quiet)
    logger = logging.getLogger("voxcodec.edge")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    try:
        state = Path(state) if state else default_state_dir(acq_dir, dest)
        opts = EdgeOptions(acq_dir=acq_dir, dest=dest, state_dir=str(state), pattern=pattern,
                           block_depth=block_depth, preset=preset, tile=tile,
                           exit_when_idle=exit_when_idle, finish_marker=finish_marker,
                           delete_source=delete_source_after_verify, spool_budget=spool_budget,
                           poll=poll, settle=settle, voxel_size=list(voxel_size) if voxel_size else None,
                           voxel_unit=voxel_unit, storage_options=dict(storage_option), workers=workers or None)
        last = [time.monotonic()]  # without a live line: a status line in the log once a minute

        def tick(st):  # from the run's status thread, twice a second
            if handler.live:
                handler.show(status_line(st))
            elif not quiet and time.monotonic() - last[0] >= 60:
                last[0] = time.monotonic()
                logger.info(status_line(st))

        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        try:
            run = EdgeRun(opts)
            st = run.run(on_tick=tick)
        except KeyboardInterrupt:
            handler.close_line()
            print(f"{PROG}: stopped; run the same command again to resume (state in {state})", file=sys.stderr)
            return 130
        except VoxcodecError as exc:
            handler.close_line()
            return exc
        finally:
            signal.signal(signal.SIGTERM, previous)
        handler.close_line()
        if not quiet:
            ratio = f"{st['ratio']:.2f}x" if st.get("ratio") else "-"
            print(f"{PROG}: done: {st['slices_shipped']} slices in {st['blocks_shipped']} blocks shipped to "
                  f"{dest} (ratio {ratio})", file=sys.stderr)
        return 0
    finally:
        handler.close_line()
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv=None) -> int:
    """The ``voxcodec-edge`` console script; returns the exit status."""
    return cli.main(argv, prog_name=PROG, standalone_mode=False)


if __name__ == "__main__":
    sys.exit(main())
