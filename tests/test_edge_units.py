"""The edge tool's parts: z order, completeness of slice files, the journal, the spool budget and
the errors a user meets."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import tifffile

from voxcodec.edge.acquisition import SliceWatcher
from voxcodec.storage.volume_io import natural_key
from voxcodec.edge import EdgeError, EdgeOptions, EdgeRun, chunk_grid
from voxcodec.errors import VoxcodecError
from voxcodec.edge.journal import Journal


def test_natural_order():
    names = ["s_10.tif", "s_9.tif", "s_100.tif", "S_11.tif", "s_1.tif"]
    assert sorted(names, key=natural_key) == ["s_1.tif", "s_9.tif", "s_10.tif", "S_11.tif", "s_100.tif"]


def test_chunk_grid():
    assert chunk_grid((250, 250), 2048) == (250, 250)
    assert chunk_grid((4096, 3000), 2048) == (2048, 1500)
    assert chunk_grid((4097, 10), 2048) == (1366, 10)


def test_watcher_takes_complete_files_in_z_order_without_gaps(tmp_path):
    w = SliceWatcher(tmp_path, "*.tif", settle=0.3, poll=True)
    try:
        for z in (1, 2, 3):
            (tmp_path / f"s_{z}.tif").write_bytes(b"x" * 10)
        (tmp_path / ".s_4.tif.part").write_bytes(b"x")  # hidden temporary names are never taken
        (tmp_path / "notes.txt").write_text("not a slice")
        ready, late, pending = w.ready(set())
        assert ready == [] and pending == 3  # just seen: not settled yet
        time.sleep(0.4)
        with open(tmp_path / "s_2.tif", "ab") as f:  # still growing: holds back s_3 as well
            f.write(b"more")
        ready, late, pending = w.ready(set())
        assert [p.name for p in ready] == ["s_1.tif"] and pending == 2
        time.sleep(0.4)
        ready, _, pending = w.ready(set())
        assert [p.name for p in ready] == ["s_1.tif", "s_2.tif", "s_3.tif"] and pending == 0
        # a file sorting before the last one taken arrived too late to be placed
        (tmp_path / "s_0.tif").write_bytes(b"x")
        ready, late, _ = w.ready({"s_1.tif", "s_2.tif", "s_3.tif"}, natural_key("s_3.tif"))
        assert ready == [] and late == ["s_0.tif"]
    finally:
        w.stop()


def test_watcher_sees_renames_at_once(tmp_path):
    w = SliceWatcher(tmp_path, "*.tif", settle=60, poll=False)
    try:
        if w.mode != "inotify":
            pytest.skip("no inotify here")
        (tmp_path / ".a.tmp").write_bytes(b"data")
        os.replace(tmp_path / ".a.tmp", tmp_path / "a_1.tif")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not w.ready(set())[0]:
            time.sleep(0.05)
        assert [p.name for p in w.ready(set())[0]] == ["a_1.tif"]  # complete without waiting 60 s to settle
    finally:
        w.stop()


def test_journal_drops_a_torn_tail_and_refuses_damage(tmp_path):
    j = Journal(tmp_path)
    j.append({"event": "run", "x": 1})
    j.append({"event": "block", "k": 0})
    j.close()
    with open(tmp_path / "journal.jsonl", "ab") as f:
        f.write(b'{"event": "shipped", "k"')  # killed mid-write
    j = Journal(tmp_path)
    assert [r["event"] for r in j.records] == ["run", "block"] and j.dropped_tail > 0
    j.append({"event": "shipped", "k": 0})
    j.close()
    assert [r["event"] for r in Journal(tmp_path).records] == ["run", "block", "shipped"]
    lines = (tmp_path / "journal.jsonl").read_bytes().split(b"\n")
    lines[1] = b"garbage"
    (tmp_path / "journal.jsonl").write_bytes(b"\n".join(lines))
    with pytest.raises(VoxcodecError, match="damaged at line 2"):
        Journal(tmp_path)


def _slices(folder, vol, start=0):
    folder.mkdir(exist_ok=True)
    for z, s in enumerate(vol, start):
        tifffile.imwrite(folder / f"slice_{z:05d}.tif", s)


def _opts(tmp_path, **kw):
    base = dict(acq_dir=str(tmp_path / "acq"), dest=str(tmp_path / "dest.zarr"), state_dir=str(tmp_path / "state"),
                block_depth=4, preset="fast", settle=0.0, scan_interval=0.1, exit_when_idle=0.5)
    base.update(kw)
    return EdgeOptions(**base)


def test_slice_of_another_shape_is_a_clear_error(tmp_path, sample):
    _slices(tmp_path / "acq", sample[:3, :64, :64])
    tifffile.imwrite(tmp_path / "acq" / "slice_00003.tif", sample[3, :32, :64])
    with pytest.raises(EdgeError, match="slice_00003.tif is 32x64 uint8; this acquisition's slices are 64x64"):
        EdgeRun(_opts(tmp_path)).run()


def test_state_of_another_run_and_foreign_dest_are_refused(tmp_path, sample):
    import zarr

    _slices(tmp_path / "acq", sample[:4, :32, :32])
    EdgeRun(_opts(tmp_path)).run()
    with pytest.raises(EdgeError, match="belongs to the run"):
        EdgeRun(_opts(tmp_path, dest=str(tmp_path / "other.zarr")))
    zarr.create_array(str(tmp_path / "foreign.zarr"), shape=(1, 1), dtype="uint8")
    run = EdgeRun(_opts(tmp_path, dest=str(tmp_path / "foreign.zarr"), state_dir=str(tmp_path / "s2")))
    with pytest.raises(VoxcodecError, match="already holds a zarr array"):
        run.run()


def test_two_runs_on_one_state_are_refused(tmp_path):
    (tmp_path / "acq").mkdir()
    first = EdgeRun(_opts(tmp_path))
    with pytest.raises(EdgeError, match="another voxcodec-edge is running"):
        EdgeRun(_opts(tmp_path))
    del first


def test_spool_budget_pauses_compression_while_dest_is_unreachable(tmp_path, sample):
    """DEST refuses connections: blocks pile up in the spool up to the budget, then compression
    pauses with a message and the remaining slices wait in ACQ_DIR."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    _slices(tmp_path / "acq", sample[:24, :64, :64])
    run = EdgeRun(_opts(tmp_path, dest=f"sftp://nobody@127.0.0.1:{port}/x.zarr", spool_budget=9000,
                        exit_when_idle=None, storage_options={"known_hosts": None}))
    t = threading.Thread(target=run.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not run.progress.stats["message"].startswith("spool budget"):
        time.sleep(0.1)
    st = run.status()
    run.stop()
    t.join(30)
    assert st["message"].startswith("spool budget reached") and st["link"].startswith("down")
    assert 1 <= st["blocks_coded"] < 6 and st["blocks_shipped"] == 0
    assert st["spool_bytes"] <= 9000 + max(sum(c["bytes"] for c in r["chunks"]) for r in run.progress.blocks.values())
    # every block coded is in the spool, and nothing else: blocks in hand at stop() were finished
    assert len(list((tmp_path / "state" / "spool").iterdir())) == run.status()["blocks_coded"]


def test_idle_timeout_ships_the_partial_last_block(tmp_path, sample):
    import zarr

    vol = np.ascontiguousarray(sample[:6, :40, :56])
    _slices(tmp_path / "acq", vol)
    st = EdgeRun(_opts(tmp_path)).run()
    assert st["finished"] and st["blocks_shipped"] == 2
    arr = zarr.open_array(str(tmp_path / "dest.zarr"), mode="r")
    assert arr.shape == (6, 40, 56) and arr.chunks == (4, 40, 56)
    assert np.array_equal(arr[:], vol)


def test_cli_help_and_sizes():
    from click.testing import CliRunner

    from voxcodec_cli.edge import _size, cli

    assert _size("8GB") == 8 * 10**9 and _size("2GiB") == 2 * 2**30 and _size("500") == 500
    with pytest.raises(ValueError, match="a size like"):
        _size("8XB")
    res = CliRunner().invoke(cli, ["--help"], prog_name="voxcodec-edge")
    assert res.exit_code == 0
    text = res.output
    for opt in ("--pattern", "--block-depth", "--preset", "--state", "--exit-when-idle",
                "--delete-source-after-verify", "--spool-budget", "--poll", "--debug", "ACQ_DIR", "DEST"):
        assert opt in text
    # both forms of the command, and the install route that exists (a checkout, not a published package)
    assert "voxcodec-edge ACQ_DIR DEST [options]" in text and "voxcodec-edge status [--state DIR] [--json]" in text
    assert "voxcodec[" not in text and 'pip install -e ".[zarr]"' in text
    res = CliRunner().invoke(cli, ["status", "--help"], prog_name="voxcodec-edge")
    assert res.exit_code == 0 and "voxcodec-edge status [--state DIR] [--json]" in res.output and "--json" in res.output


def _edge(capsys, *argv):
    """voxcodec-edge in this process: (exit status, stdout, stderr)."""
    from voxcodec_cli.edge import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_errors_are_one_line_with_the_exit_codes_of_the_argparse_version(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    acq = tmp_path / "acq"
    acq.mkdir()
    for argv in ([], [acq], [acq, "d.zarr", "--bogus"], [acq, "d.zarr", "--preset", "nope"],
                 [acq, "d.zarr", "--spool-budget", "8XB"], [acq, "d.zarr", "--storage-option", "novalue"],
                 [acq, "d.zarr", "--voxel-size", "1", "2"], [acq, "d.zarr", "--s", "1"], ["status", "--bogus"]):
        rc, out, err = _edge(capsys, *argv)
        assert rc == 2 and err.count("\n") == 1 and "error:" in err and "Traceback" not in err, (argv, err)
    # bad input: 2, one line; --debug adds the traceback
    rc, _, err = _edge(capsys, tmp_path / "missing", "d.zarr", "--state", tmp_path / "s")
    assert rc == 2 and err == f"voxcodec-edge: error: ACQ_DIR {tmp_path / 'missing'} is not a folder\n"
    assert not (tmp_path / "s").exists()
    rc, _, err = _edge(capsys, tmp_path / "missing", "d.zarr", "--state", tmp_path / "s", "--debug")
    assert rc == 2 and "Traceback" in err and err.endswith("is not a folder\n")
    # an error nobody planned for: exit 1 as an uncaught exception was, but one line
    (tmp_path / "file").write_text("")
    rc, _, err = _edge(capsys, acq, "d.zarr", "--state", tmp_path / "file" / "sub")
    assert rc == 1 and err.count("\n") == 1 and "NotADirectoryError" in err and "--debug" in err
    # the status command
    rc, out, err = _edge(capsys, "status")
    assert rc == 0 and out == "" and "no voxcodec-edge runs in" in err
    rc, out, err = _edge(capsys, "status", "--state", tmp_path / "nothing", "--json")
    assert rc == 2 and err == f"voxcodec-edge status: no voxcodec-edge status in {tmp_path / 'nothing'}\n"
    rc, out, _ = _edge(capsys, "-h")
    assert rc == 0 and "Usage: voxcodec-edge ACQ_DIR DEST [options]" in out


def test_cli_run_and_status_in_process(tmp_path, sample, capsys, monkeypatch):
    """A whole run through main(): options (one given as a prefix, as argparse allowed), exit 0, the
    status command on its state, and a second start of the finished run."""
    import json

    import zarr

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    vol = np.ascontiguousarray(sample[:5, :32, :32])
    _slices(tmp_path / "acq", vol)
    dest = tmp_path / "dest.zarr"
    argv = [tmp_path / "acq", dest, "--block-depth", "4", "--preset", "fast", "--settle", "0",
            "--exit-when-idle", "0.5", "--delete-source", "--voxel-size", "4", "4", "8"]
    rc, _, err = _edge(capsys, *argv)
    assert rc == 0, err
    assert "done: 5 slices in 2 blocks shipped" in err
    arr = zarr.open_array(str(dest), mode="r")
    assert np.array_equal(arr[:], vol) and arr.attrs["voxcodec_edge"]["voxel_size"] == [4, 4, 8]
    assert not list((tmp_path / "acq").glob("*.tif"))  # --delete-source-after-verify, abbreviated
    rc, out, _ = _edge(capsys, "status", "--json")
    (st,) = json.loads(out)
    assert rc == 0 and st["finished"] and st["slices_shipped"] == 5 and st["running"] is False
    assert st["state_dir"].startswith(str(tmp_path / "xdg" / "voxcodec-edge"))
    rc, out, _ = _edge(capsys, "status", "--state", st["state_dir"])
    assert rc == 0 and "finished" in out and "5 shipped" in out
    rc, _, err = _edge(capsys, *argv)
    assert rc == 0 and "already finished" in err


def test_sources_are_kept_when_dest_changed_after_shipping(tmp_path, sample):
    from voxcodec.edge import VerifyError

    _slices(tmp_path / "acq", sample[:4, :32, :32])
    EdgeRun(_opts(tmp_path)).run()
    chunk = tmp_path / "dest.zarr" / "c" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 1
    chunk.write_bytes(bytes(data))
    run = EdgeRun(_opts(tmp_path, delete_source=True))
    with pytest.raises(VerifyError, match="changed after it was shipped; sources are kept"):
        run.shipper.delete_sources(0)
    assert len(list((tmp_path / "acq").glob("*.tif"))) == 4


def test_status_is_refreshed_while_a_block_codes(tmp_path, sample, monkeypatch):
    """Training a block can take minutes: status.json (and on_tick) must not wait for it. The chunk
    coder is held until status.json's ``updated`` field has changed twice meanwhile; status() is
    read in a tight loop all along, while the encoder and shipper threads change what it reports."""
    import json

    import voxcodec.edge.run as edge_run

    real = edge_run.encode_chunk
    coding, release = threading.Event(), threading.Event()

    def held_coder(*args, **kwargs):
        coding.set()
        assert release.wait(300), "the test never released the coder"
        return real(*args, **kwargs)

    monkeypatch.setattr(edge_run, "encode_chunk", held_coder)
    _slices(tmp_path / "acq", sample[:8, :32, :32])
    run = EdgeRun(_opts(tmp_path))
    ticks = []
    result, errors = {}, []

    def target():
        try:
            result["st"] = run.run(on_tick=lambda st: ticks.append(st["updated"]))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
            release.set()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    try:
        assert coding.wait(120), "no block started coding"
        status_file = tmp_path / "state" / "status.json"
        seen, ticks_before = [], len(ticks)
        deadline = time.monotonic() + 120
        while len(seen) < 3 and time.monotonic() < deadline:
            try:
                updated = json.loads(status_file.read_text())["updated"]
            except (OSError, ValueError, KeyError):
                updated = None  # not written yet
            if updated is not None and updated not in seen:
                seen.append(updated)
            run.status()  # from a third thread, while the others work
            time.sleep(0.05)
        assert len(seen) == 3, f"status.json's updated field went {seen} while a block was coding"
        assert not release.is_set() and len(ticks) > ticks_before  # on_tick too, all while the coder was held
    finally:
        release.set()
        t.join(300)
    assert not errors, errors
    assert not t.is_alive() and result["st"]["finished"] and result["st"]["blocks_shipped"] == 2
    assert not [th for th in threading.enumerate() if th.name == "voxcodec-edge-status"]  # stopped and joined


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_signed_slices_are_shipped_exactly(tmp_path, sample, capsys, monkeypatch, dtype):
    """int8 and int16 slices (coded since format 4) go through the edge tool as they are; the unit of
    --voxel-size is normalized to its OME-NGFF name."""
    import zarr

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    base = sample[:5, :32, :32].astype(np.int16)
    vol = (base - 128 if dtype == "int8" else base * 131 - 16000).astype(dtype)
    _slices(tmp_path / "acq", vol)
    dest = tmp_path / "dest.zarr"
    rc, _, err = _edge(capsys, tmp_path / "acq", dest, "--block-depth", "4", "--preset", "fast", "--settle", "0",
                       "--exit-when-idle", "0.5", "--voxel-size", "30", "4", "4", "--voxel-unit", "\u00b5m")
    assert rc == 0, err
    arr = zarr.open_array(str(dest), mode="r")
    assert arr.dtype == np.dtype(dtype) and np.array_equal(arr[:], vol)
    attrs = arr.attrs["voxcodec_edge"]
    assert attrs["voxel_size"] == [30, 4, 4] and attrs["voxel_unit"] == "micrometer"


@pytest.mark.parametrize("args, msg", [(["--voxel-unit", "pixel"], "unknown unit 'pixel'"),
                                       (["--voxel-size", "0", "4", "4"], "positive"),
                                       (["--voxel-size", "8", "-4", "4"], "positive")])
def test_bad_voxel_size_or_unit_exit_2(tmp_path, capsys, monkeypatch, args, msg):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "acq").mkdir()
    rc, _, err = _edge(capsys, tmp_path / "acq", tmp_path / "d.zarr", *args)
    assert rc == 2 and msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "d.zarr").exists()


@pytest.mark.parametrize("preset", ["fast", "default"])
def test_two_workers_write_the_same_chunks_in_order(tmp_path, sample, preset):
    """Two blocks coded at once (threads; `default` fine-tunes, each block from the block two above
    it): the array's chunks are byte for byte those of one worker, and blocks are journaled in z order."""
    import hashlib

    import zarr

    vol = np.ascontiguousarray(sample[:8] if preset == "default" else sample[:10, :48, :64])  # 2 x 128 x 128 trains
    _slices(tmp_path / "acq", vol)
    n = vol.shape[0] // 2
    chunks = {}
    for w in (1, 2):
        st = EdgeRun(_opts(tmp_path, dest=str(tmp_path / f"d{w}.zarr"), state_dir=str(tmp_path / f"s{w}"),
                           block_depth=2, preset=preset, workers=w)).run()
        assert st["finished"] and st["blocks_shipped"] == n
        assert np.array_equal(zarr.open_array(str(tmp_path / f"d{w}.zarr"), mode="r")[:], vol)
        blocks = [r["k"] for r in Journal(tmp_path / f"s{w}").of("block")]
        assert blocks == list(range(n))
        dest = tmp_path / f"d{w}.zarr"
        chunks[w] = {p.relative_to(dest).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                     for p in dest.rglob("*") if p.is_file() and p.name != "zarr.json"}
    assert len(chunks[1]) == n and chunks[1] == chunks[2]
