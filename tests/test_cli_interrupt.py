"""An encode of a real EM volume killed with SIGKILL, then interrupted with Ctrl-C (SIGINT) and SIGTERM,
then resumed with --resume: the stream decodes exactly, equals the uninterrupted one byte for byte,
and the blocks finished before each stop are not coded again."""

import re
import signal
import subprocess
import time

import numpy as np
import pytest
import tifffile

from conftest import SHARED_DATA, console_script

VOLUME = SHARED_DATA / "flyem_fib_ts1.tif"
# `max` on whole slices of the volume: slow enough (about a tenth of a second a layer) for the signals to land
# mid-encode
ARGS = ["--preset", "max", "--block-depth", "4", "--workers", "1"]


def _cmd(*args):
    return console_script("voxcodec", "voxcodec_cli.main") + list(args)


def _layers_done(part) -> int:
    """Slices coded into ``part`` so far (0 before its file header is complete)."""
    import voxcodec

    try:
        return _kept(part)
    except (FileNotFoundError, voxcodec.VoxcodecError):
        return 0


def _kept(part) -> int:
    """Slices held by the complete blocks of the partial stream."""
    import voxcodec

    with voxcodec.Decoder(str(part), salvage=True) as dec:
        return dec.shape[0]


def _as_in_a_terminal():
    """Ctrl-C reaches a command run from a terminal; a job started in the background of a script (as
    a test runner may be) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_after(args, part, slices, sig, timeout=600):
    """Start an encode, wait until ``slices`` slices are coded, send ``sig``; returns the finished process."""
    proc = subprocess.Popen(_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_in_a_terminal)
    deadline = time.monotonic() + timeout
    while _layers_done(part) < slices:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the encode made no progress"
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.mark.skipif(not VOLUME.exists(), reason=f"{VOLUME} is missing")
def test_kill_interrupt_and_resume_a_real_volume(tmp_path):
    vol = tifffile.imread(VOLUME)[:48]  # 12 layers of 4 slices
    src = tmp_path / "fib.tif"
    tifffile.imwrite(src, vol)
    ref, out = tmp_path / "ref.vxc", tmp_path / "out.vxc"
    part = tmp_path / "out.vxc.part"
    assert subprocess.run(_cmd("encode", str(src), "-o", str(ref), "-q", *ARGS)).returncode == 0

    # killed once 8 slices are on disk
    rc, _, _ = _stop_after(["encode", str(src), "-o", str(out), *ARGS], part, 8, signal.SIGKILL)
    assert rc == -signal.SIGKILL and part.exists() and not out.exists()
    kept_at_kill = _kept(part)
    assert kept_at_kill >= 8

    # without --resume an interrupted encode is not thrown away
    res = subprocess.run(_cmd("encode", str(src), "-o", str(out), *ARGS), capture_output=True, text=True)
    assert res.returncode == 2 and "--resume" in res.stderr and part.exists()

    rc, _, err = _stop_after(["encode", str(src), "-o", str(out), "--resume", *ARGS], part, kept_at_kill + 8,
                             signal.SIGINT)
    assert rc == 130, err
    assert f"resuming {part}: {kept_at_kill // 4} complete blocks ({kept_at_kill} of 48 slices) kept" in err
    done_at_int = int(re.search(r"(\d+) of 48 slices are coded and kept", err)[1])
    assert "--resume to continue" in err and part.exists() and not out.exists()
    assert done_at_int == _kept(part) >= kept_at_kill + 4

    # SIGTERM behaves as Ctrl-C
    rc, _, err = _stop_after(["encode", str(src), "-o", str(out), "--resume", *ARGS], part, done_at_int + 8,
                             signal.SIGTERM)
    assert rc == 130 and "--resume to continue" in err and part.exists()
    done_at_term = int(re.search(r"(\d+) of 48 slices are coded and kept", err)[1])
    assert done_at_term == _kept(part) >= done_at_int + 4

    res = subprocess.run(_cmd("encode", str(src), "-o", str(out), "--resume", *ARGS), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"({done_at_term} of 48 slices) kept" in res.stderr
    assert f"({done_at_term // 4} kept from the interrupted run)" in res.stdout  # one tile per layer
    assert not part.exists()
    assert out.read_bytes() == ref.read_bytes()
    back = tmp_path / "back.npy"
    assert subprocess.run(_cmd("decode", str(out), "-o", str(back), "-q")).returncode == 0
    np.testing.assert_array_equal(np.load(back), vol)


def test_interrupt_before_any_block_leaves_nothing(tmp_path, em_u8):
    src = tmp_path / "v.npy"
    np.save(src, np.repeat(em_u8, 4, axis=0))
    out = tmp_path / "v.vxc"
    proc = subprocess.Popen(_cmd("encode", str(src), "-o", str(out), "--block-depth", "48", "--preset", "max"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = tmp_path / "v.vxc.part"
    deadline = time.monotonic() + 120
    while not part.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert not part.exists() and not out.exists()
