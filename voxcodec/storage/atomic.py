"""Writing a file so that a crash never leaves half of it: under a hidden temporary name, then renamed
into place (locally with fsync; on fsspec file systems whose rename replaces the target, such as SFTP),
or in one PUT on object stores, which is atomic by itself.  Used by ``voxcodec convert`` and the edge
tool for every chunk and metadata file they write."""

from __future__ import annotations

import os
import uuid

#: fsspec protocols whose rename replaces the target atomically
RENAMING = {"file", "local", "sftp", "ssh"}


def temporary_name(path: str) -> str:
    """A hidden name beside ``path`` (zarr ignores it) to write to before the rename."""
    parent, name = os.path.split(path)
    return f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.part"


def write_atomic(path, data: bytes):
    """Write a local file durably (fsync) under a temporary name, then rename it into place:
    after a crash ``path`` holds either its old content or all of ``data``."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def put_atomic(fs, protocol: str, path: str, data: bytes):
    """Write ``data`` to ``path`` on the fsspec file system ``fs`` (of ``protocol``) atomically."""
    if protocol in ("file", "local"):
        write_atomic(path, data)
    elif protocol in RENAMING:
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = temporary_name(path)
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    else:
        fs.pipe_file(path, data)
