import contextlib
import os
import sys
from pathlib import Path

# One compute thread per test process (and per process a test starts): N processes on N cores never
# oversubscribe, so the suite behaves the same on a busy machine. Set before numpy loads.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from voxcodec.storage.volume_io import sample_volume  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample():
    return sample_volume()


@pytest.fixture(scope="session")
def em_u8(sample):
    """A real FIB-SEM crop (12 x 96 x 96)."""
    return np.ascontiguousarray(sample[:12, :96, :96])


@pytest.fixture(scope="session")
def em_stream(em_u8):
    """A two-block stream of em_u8 (format 6, preset default) and the encoder's block infos."""
    import voxcodec

    enc = voxcodec.Encoder(None, slice_shape=em_u8.shape[1:], block_depth=6)
    enc.write(em_u8)
    return enc.getvalue(), enc.blocks


def console_script(name: str, module: str) -> list[str]:
    """The installed console script ``name`` (or ``python -m module`` when it is not installed)."""
    exe = os.path.join(os.path.dirname(sys.executable), name)
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", module]


@contextlib.contextmanager
def running(source, **kw):
    """A ``voxcodec serve`` server of ``source`` on a free port, serving in a thread; shut down on exit."""
    import threading

    from voxcodec.storage.serve import make_server

    server = make_server(source, port=0, **kw)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def run_python(code: str, env_extra=None) -> str:
    """Run code in a fresh interpreter; return its stdout."""
    import subprocess

    env = dict(os.environ)
    env.update(env_extra or {})
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    return res.stdout


def moto_s3(bucket: str):
    """moto's S3 server (an in-memory mock of the S3 API, spoken over HTTP on 127.0.0.1) with ``bucket``
    made: a generator for a fixture, yielding ``(s3fs file system, storage options)``."""
    import socket
    import subprocess
    import time

    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    import s3fs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
    deadline = time.monotonic() + 30
    while True:
        try:
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **opts)
            fs.mkdir(bucket)
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.2)
    try:
        yield fs, opts
    finally:
        proc.kill()
        proc.wait()
