"""voxcodec-edge end to end: a simulated microscope writes the slices of a real EM volume into a
folder while the tool ships them into a zarr array (a local directory, and a real OpenSSH server
on 127.0.0.1); it is killed with SIGKILL at random moments, and the SSH server goes down and comes
back mid-acquisition. Every time the array read back with plain zarr equals the source, slice for
slice, with no slice missing or written twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import sshd
from conftest import SHARED_DATA, console_script, moto_s3

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import microscope  # noqa: E402

FLYEM = SHARED_DATA / "flyem_fib_ts1.tif"
REQUIRE_SSHD = os.environ.get("VOXCODEC_REQUIRE_SSHD") == "1"


@pytest.fixture(scope="module")
def volume():
    """40 slices of the FlyEM FIB-SEM volume (the packaged crop of it where ../shared is absent)."""
    if FLYEM.exists():
        return tifffile.imread(FLYEM, key=range(40))
    from voxcodec.storage.volume_io import sample_volume

    return sample_volume()[:40]


@pytest.fixture
def ssh_server(tmp_path):
    if not sshd.available():
        if REQUIRE_SSHD:
            pytest.fail("sshd is required here (VOXCODEC_REQUIRE_SSHD=1): apt-get install openssh-server")
        pytest.skip("no OpenSSH server (apt-get install openssh-server)")
    server = sshd.SshServer(tmp_path / "sshd").start()
    yield server
    server.stop()


def edge_cmd(acq, dest, state, *extra, storage_options=None):
    cmd = console_script("voxcodec-edge", "voxcodec_cli.edge") + [str(acq), str(dest), "--state", str(state), "--block-depth", "8", "--preset", "fast", "--settle", "0.5",
            "--exit-when-idle", "60", *extra]
    for k, v in (storage_options or {}).items():
        cmd += ["--storage-option", f"{k}={','.join(v) if isinstance(v, list) else v}"]
    return cmd


def start_microscope(volume, acq, rate, mode="rename"):
    t = threading.Thread(target=microscope.write_slices, args=(volume, acq),
                         kwargs=dict(rate=rate, mode=mode, finish=True), daemon=True)
    t.start()
    return t


def status(state) -> dict:
    try:
        return json.loads((Path(state) / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def journal(state) -> list[dict]:
    return [json.loads(line) for line in (Path(state) / "journal.jsonl").read_text().splitlines()]


def check_shipped(dest_path, state, volume, acq):
    """DEST read with plain zarr equals the source; every slice file appears exactly once, in order."""
    import zarr

    arr = zarr.open_array(str(dest_path), mode="r")
    assert arr.shape == volume.shape
    assert np.array_equal(arr[:], volume)
    names = [f"slice_{z:05d}.tif" for z in range(volume.shape[0])]
    meta = arr.attrs["voxcodec_edge"]
    assert meta["slice_files"] == names and meta["complete"] is True
    recs = journal(state)
    blocks = [r for r in recs if r["event"] == "block"]
    assert [b["k"] for b in blocks] == list(range(len(blocks)))  # each block coded once
    assert [f["name"] for b in blocks for f in b["files"]] == names  # each slice in exactly one block
    shipped = [r["k"] for r in recs if r["event"] == "shipped"]
    assert sorted(set(shipped)) == list(range(len(blocks)))
    assert not list((Path(state) / "spool").iterdir())


def test_local_destination_end_to_end(volume, tmp_path):
    acq, dest, state = tmp_path / "acq", tmp_path / "dest.zarr", tmp_path / "state"
    writer = start_microscope(volume, acq, rate=20)
    res = subprocess.run(edge_cmd(acq, dest, state, "--voxel-size", "8", "8", "8"), capture_output=True, text=True,
                         timeout=300)
    writer.join()
    assert res.returncode == 0, res.stderr
    assert "acquisition ended (finish marker)" in res.stderr
    check_shipped(dest, state, volume, acq)
    import zarr

    meta = zarr.open_array(str(dest), mode="r").attrs["voxcodec_edge"]
    assert meta["voxel_size"] == [8, 8, 8] and meta["voxel_unit"] == "nanometer"
    # the status command, from another terminal
    out = subprocess.run(edge_cmd(acq, dest, state)[:1] + ["status", "--state", str(state)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "finished" in out.stdout and f"{volume.shape[0]} shipped" in out.stdout
    # a second start of a finished run does nothing and says so
    again = subprocess.run(edge_cmd(acq, dest, state), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already finished" in again.stderr


def test_delete_source_after_verify_and_partial_writes(volume, tmp_path):
    """Files written in place in several pieces (visible while partial) are never read early; sources
    are deleted only once their block decoded from DEST to the same voxels."""
    acq, dest, state = tmp_path / "acq", tmp_path / "dest.zarr", tmp_path / "state"
    vol = volume[:20]
    writer = start_microscope(vol, acq, rate=10, mode="inplace")
    res = subprocess.run(edge_cmd(acq, dest, state, "--delete-source-after-verify"), capture_output=True, text=True,
                         timeout=300)
    writer.join()
    assert res.returncode == 0, res.stderr
    check_shipped(dest, state, vol, acq)
    assert sorted(p.name for p in acq.iterdir()) == ["finish"]
    assert [r["k"] for r in journal(state) if r["event"] == "deleted"] == [0, 1, 2]


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(volume, tmp_path):
    """Killed five times while slices arrive, blocks are coded, shipped, verified and sources deleted."""
    acq, dest, state = tmp_path / "acq", tmp_path / "dest.zarr", tmp_path / "state"
    writer = start_microscope(volume, acq, rate=2)  # 20 s of acquisition: the kills land while it runs
    rng = random.Random(5)
    kills = 0
    cmd = edge_cmd(acq, dest, state, "--delete-source-after-verify")
    while kills < 5:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 4.0))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 3
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    writer.join()
    assert res.returncode == 0, res.stderr
    check_shipped(dest, state, volume, acq)
    assert sorted(p.name for p in acq.iterdir()) == ["finish"]  # every source deleted, each after verification


def test_half_written_chunk_at_dest_is_rewritten(volume, tmp_path):
    """The state a crash mid-upload leaves: block journaled as coded, not shipped, its chunk at DEST
    cut short. The next start finds the chunk's SHA-256 wrong and writes it again."""
    acq, dest, state = tmp_path / "acq", tmp_path / "dest.zarr", tmp_path / "state"
    vol = volume[:16]
    microscope.write_slices(vol, acq, finish=True)
    cmd = edge_cmd(acq, dest, state)
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    recs = journal(state)
    last = max(r["k"] for r in recs if r["event"] == "block")
    spool_copy = {}
    for r in recs:
        if r["event"] == "block" and r["k"] == last:
            for c in r["chunks"]:
                data = (dest / c["key"]).read_bytes()
                spool_copy[c["spool"]] = data
                (dest / c["key"]).write_bytes(data[:len(data) // 2])
    kept = [r for r in recs if not (r["event"] in ("shipped", "finished") and r.get("k", last) == last)]
    (state / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    for name, data in spool_copy.items():
        (state / "spool" / name).write_bytes(data)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "half-written or damaged" in res.stderr
    check_shipped(dest, state, vol, acq)


def test_sftp_destination_survives_server_outage(volume, tmp_path, ssh_server):
    acq, state = tmp_path / "acq", tmp_path / "state"
    dest_path = tmp_path / "dc" / "dest.zarr"
    writer = start_microscope(volume, acq, rate=8)
    proc = subprocess.Popen(edge_cmd(acq, ssh_server.url(dest_path), state,
                                     storage_options=ssh_server.storage_options),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while status(state).get("blocks_shipped", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status(state).get("blocks_shipped", 0) >= 1
    ssh_server.stop()
    t0 = time.monotonic()
    saw_down = False
    while time.monotonic() - t0 < 8:
        saw_down |= status(state).get("link", "ok") != "ok"
        time.sleep(0.2)
    spooled_while_down = status(state).get("blocks_coded", 0) - status(state).get("blocks_shipped", 0)
    ssh_server.start()
    _, err = proc.communicate(timeout=300)
    writer.join()
    assert proc.returncode == 0, err
    assert saw_down and "cannot write to DEST" in err and "shipping resumes" in err
    assert spooled_while_down >= 1  # compression went on into the spool while the link was down
    check_shipped(dest_path, state, volume, acq)


@pytest.fixture
def s3_server():
    """moto's S3 server, with the bucket edge-bucket: its storage options."""
    for _, opts in moto_s3("edge-bucket"):
        yield opts


def test_s3_destination(volume, tmp_path, s3_server):
    import zarr

    acq, state = tmp_path / "acq", tmp_path / "state"
    vol = volume[:16]
    writer = start_microscope(vol, acq, rate=20)
    res = subprocess.run(edge_cmd(acq, "s3://edge-bucket/run.zarr", state, storage_options=s3_server),
                         capture_output=True, text=True, timeout=300)
    writer.join()
    assert res.returncode == 0, res.stderr
    arr = zarr.open_array("s3://edge-bucket/run.zarr", mode="r", storage_options=s3_server)
    assert arr.shape == vol.shape and np.array_equal(arr[:], vol)
    assert arr.attrs["voxcodec_edge"]["complete"] is True
