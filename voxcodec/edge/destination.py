"""Where the edge tool ships blocks: a zarr v3 array at a local path or an fsspec URL
(``sftp://user@host/path``, ``s3://bucket/path``, ...).

Chunks and metadata are written as whole objects: on filesystems that can rename (local paths,
SFTP) through a temporary name and an atomic rename, so a reader never sees half an object; on
object stores a PUT is atomic by itself. After any error the connection is dropped and the next
call reconnects, so a link that went down and came back is picked up again.
"""

from __future__ import annotations

import json

from ..errors import VoxcodecError
from ..storage.atomic import put_atomic


class DestinationError(VoxcodecError):
    """DEST cannot be used (not a link failure: retrying will not help)."""


class Destination:
    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = str(url)
        self.options = dict(storage_options or {})
        self._fs = None
        self._root = None

    def _connect(self):
        if self._fs is None:
            import fsspec

            fs, root = fsspec.core.url_to_fs(self.url, skip_instance_cache=True, **self.options)
            self._fs, self._root = fs, root.rstrip("/")
        return self._fs

    @property
    def protocol(self) -> str:
        p = self._connect().protocol
        return p[0] if isinstance(p, (tuple, list)) else p

    def reset(self):
        """Forget the connection (after a failure); the next call opens a new one."""
        fs, self._fs = self._fs, None
        client = getattr(fs, "client", None)
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def path(self, key: str) -> str:
        self._connect()
        return f"{self._root}/{key}" if key else self._root

    def _call(self, fn):
        try:
            return fn(self._connect())
        except FileNotFoundError:
            raise
        except Exception:
            self.reset()
            raise

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        def get(fs):
            try:
                return fs.cat_file(self.path(key))
            except FileNotFoundError:
                return None
        return self._call(get)

    def put(self, key: str, data: bytes):
        self._call(lambda fs: put_atomic(fs, self.protocol, self.path(key), data))

    # -- the zarr array ------------------------------------------------------------------------------
    def read_metadata(self) -> dict | None:
        raw = self.get("zarr.json")
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise DestinationError(f"{self.url}/zarr.json is not valid JSON: DEST holds something else") from None


class ArrayLayout:
    """The zarr v3 array the edge tool writes: metadata and chunk keys, made by zarr itself."""

    def __init__(self, slice_shape, dtype: str, chunks, preset: str):
        import zarr

        from ..storage.zarr import VoxCodec

        self.slice_shape = tuple(int(s) for s in slice_shape)
        self.chunks = tuple(int(c) for c in chunks)
        self.dtype = dtype
        template = zarr.create_array(zarr.storage.MemoryStore(), shape=(0, *self.slice_shape), chunks=self.chunks,
                                     dtype=dtype, serializer=VoxCodec(preset=preset), compressors=None, fill_value=0,
                                     dimension_names=("z", "y", "x"))
        self._meta = template.metadata
        self._template = self._meta.to_dict()

    def chunk_key(self, coords) -> str:
        return self._meta.encode_chunk_key(tuple(coords))

    def grid(self):
        """``(iy, ix, y0, x0)`` of every chunk position in a slice."""
        (h, w), (_, th, tw) = self.slice_shape, self.chunks
        return [(iy, ix, y0, x0) for iy, y0 in enumerate(range(0, h, th)) for ix, x0 in enumerate(range(0, w, tw))]

    def metadata(self, depth: int, attributes: dict) -> bytes:
        meta = dict(self._template, shape=[int(depth), *self.slice_shape], attributes=attributes)
        return json.dumps(meta, indent=2).encode()
