"""Serve voxcodec volumes over HTTP as plain, uncompressed zarr v2 (``voxcodec serve``).

What is served:

- a zarr v3 array (or a zarr format 2 one) coded with voxcodec, or a group holding such arrays (an
  OME-Zarr multiscale image written by ``voxcodec convert``), in the same hierarchy: ``.zgroup`` /
  ``.zattrs`` / ``.zmetadata`` (consolidated) for groups, ``.zarray`` / ``.zattrs`` for arrays, and
  one key per chunk with the chunk's voxels decoded, as raw C-order bytes (``"compressor": null``,
  ``"filters": null``, ``"dimension_separator": "."``).  OME-NGFF 0.5 attributes (under ``"ome"``)
  become OME-NGFF 0.4 ones (``multiscales`` etc. at the top level), which v2 clients read.  Arrays of
  the group that are not voxcodec-coded are served too, decoded by zarr; a source with no
  voxcodec-coded array at all is refused.  The served chunks are the source's chunks (the inner
  chunks of a sharded array), so each request decodes one chunk;
- a ``.vxc`` stream, as one array whose chunks are the stream's blocks (block depth x tile), so each
  request decodes exactly one block.

zarr v2 stores every chunk full-size: chunks on the far edges are padded with the fill value.  A chunk
the source does not store is answered 404, which zarr clients read as "all fill value".  Each array's
``.zattrs`` carries neuroglancer's ``dimension_units`` when the voxel size is known (a ``.vxc`` stream's
metadata, or each level's scale in an OME-Zarr group), and :meth:`ZarrV2Server.neuroglancer_url` is a
link whose viewer state shows xy sections with that voxel size (``voxcodec serve`` prints it).

Decoded chunks are kept in a least-recently-used cache bounded in bytes; concurrent requests for the
same chunk decode it once.  Each request runs in its own thread with one compute thread
(:func:`voxcodec.core.parallel.one_thread`).  Responses carry ``Access-Control-Allow-Origin: *``
(browsers: neuroglancer, zarr-js), OPTIONS preflights are answered, and HEAD and single-range GET
requests are supported.

    from voxcodec.storage.serve import make_server
    server = make_server("em.zarr", port=0)        # bound and listening; server.url
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ...
    server.shutdown(); server.server_close()
"""

from __future__ import annotations

import abc
import html
import json
import math
import os
import re
import socket
import sys
import threading
from collections import OrderedDict
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import numpy as np

from .. import __version__
from ..core import parallel
from ..errors import UnsupportedError

__all__ = ["make_server", "serve", "open_source", "ChunkCache", "ZarrV2Server", "v2_group_attrs"]

DEFAULT_CACHE_MB = 256
DEFAULT_PORT = 8000

_JSON = "application/json"
_BYTES = "application/octet-stream"


# -- the served arrays ---------------------------------------------------------------------------------------
class _Array(abc.ABC):
    """One served array: shape, little-endian dtype, chunk shape, fill value, attributes; reads regions."""

    kind = "array"
    voxcodec = True

    def __init__(self, shape, dtype, chunks, fill_value, attrs=None):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.chunks = tuple(max(1, int(c)) for c in chunks)
        self.fill_value = fill_value
        self.attrs = dict(attrs or {})
        self.grid = tuple(-(-s // c) for s, c in zip(self.shape, self.chunks))
        self.chunk_nbytes = int(np.prod(self.chunks, dtype=np.int64)) * self.dtype.itemsize

    def zarray(self) -> dict:
        return {"zarr_format": 2, "shape": list(self.shape), "chunks": list(self.chunks), "dtype": self.dtype.str,
                "compressor": None, "fill_value": _json_fill(self.fill_value, self.dtype), "order": "C",
                "filters": None, "dimension_separator": "."}

    def chunk_index(self, key: str):
        """The grid index of chunk key ``key`` ("i.j.k"), or None if it names no chunk of the array."""
        parts = key.split(".")
        if not self.shape:
            return () if key == "0" else None
        if len(parts) != len(self.shape) or not all(p.isdigit() and str(int(p)) == p for p in parts):
            return None
        idx = tuple(int(p) for p in parts)
        return idx if all(i < n for i, n in zip(idx, self.grid)) else None

    def region(self, idx):
        return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, self.chunks, self.shape))

    def chunk_bytes(self, idx) -> bytes:
        """Chunk ``idx`` decoded, padded to the full chunk shape with the fill value, as C-order bytes."""
        region = self.region(idx)
        data = np.asarray(self.read(region))
        want = tuple(r.stop - r.start for r in region)
        if data.shape != want:
            raise UnsupportedError(f"the source gave a region of shape {data.shape} for chunk {idx}, expected {want}")
        if want != self.chunks:
            full = np.full(self.chunks, self.fill_value, dtype=self.dtype)
            full[tuple(slice(0, n) for n in want)] = data
            data = full
        return np.ascontiguousarray(data, dtype=self.dtype).tobytes()

    @abc.abstractmethod
    def exists(self, idx) -> bool:
        """Whether chunk ``idx`` is stored (a missing one is answered 404: the fill value)."""

    @abc.abstractmethod
    def read(self, region):
        """The voxels of ``region`` (one slice per axis), decoded."""

    def describe(self) -> str:
        return f"{'x'.join(map(str, self.shape))} {self.dtype.name}, chunks {'x'.join(map(str, self.chunks))}"


class VxcArray(_Array):
    """A ``.vxc`` stream served as one zarr array whose chunks are its blocks (block depth x tile)."""

    def __init__(self, dec):
        self.dec = dec
        depth = min(int(dec.meta["block_depth"]), max(1, dec.shape[0]))
        tile = [min(int(t), max(1, s)) for t, s in zip(dec.meta["tile"], dec.shape[1:])]
        attrs = {"_ARRAY_DIMENSIONS": ["z", "y", "x"]}
        try:
            from .voxel_size import from_metadata

            units = _dimension_units(*from_metadata(dec.meta.get("metadata")))
        except ValueError:  # a malformed voxel size: served without one
            units = None
        if units:
            attrs["dimension_units"] = units
        super().__init__(dec.shape, dec.dtype, (depth, *tile), 0, attrs)

    def exists(self, idx) -> bool:
        return True  # every block of a complete stream is present

    def read(self, region):
        return self.dec[region]


class ZarrArray(_Array):
    """A zarr array (v3 or format 2) served through zarr: one served chunk per chunk of the source (the
    inner chunks of a sharded array); a chunk (or shard) the store does not hold is answered 404."""

    def __init__(self, arr):
        dtype = np.dtype(arr.dtype)
        if dtype.kind not in "biuf":
            raise UnsupportedError(f"dtype {dtype} cannot be served as raw zarr v2 chunks")
        self.arr = arr
        attrs = dict(arr.attrs.asdict())
        names = getattr(arr.metadata, "dimension_names", None)
        if names and all(isinstance(n, str) for n in names):
            attrs.setdefault("_ARRAY_DIMENSIONS", list(names))
        fill = arr.fill_value if arr.fill_value is not None else 0
        super().__init__(arr.shape, dtype, arr.chunks, fill, attrs)
        self.shards = getattr(arr, "shards", None)
        self.voxcodec = _is_voxcodec(arr)

    def exists(self, idx) -> bool:
        from zarr.core.sync import sync

        if self.shards:
            idx = tuple(i * c // s for i, c, s in zip(idx, self.chunks, self.shards))
        key = self.arr.metadata.encode_chunk_key(idx)
        path = self.arr.store_path.path
        return bool(sync(self.arr.store_path.store.exists(f"{path}/{key}" if path else key)))

    def read(self, region):
        return self.arr[region]


def _is_voxcodec(arr) -> bool:
    """Whether a zarr array is coded with one of voxcodec's codecs (v3 serializer, or a format 2 compressor)."""
    meta = arr.metadata

    def names(codecs):
        for c in codecs or ():
            try:
                d = c.to_dict() if hasattr(c, "to_dict") else c.get_config()
            except Exception:
                d = {}
            yield str(d.get("name") or d.get("id") or getattr(c, "codec_id", "") or "")
            inner = getattr(c, "codecs", None)
            if inner:
                yield from names(inner)

    codecs = list(getattr(meta, "codecs", None) or ())
    codecs += [c for c in (getattr(meta, "compressor", None),) if c is not None]
    codecs += list(getattr(meta, "filters", None) or ())
    return any(n.startswith("voxcodec") for n in names(codecs))


def _json_fill(value, dtype):
    if value is None:
        return None
    if dtype.kind == "b":
        return bool(value)
    if dtype.kind in "iu":
        return int(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def v2_group_attrs(attrs: dict) -> dict:
    """A group's attributes for zarr v2 clients: OME-NGFF 0.5 metadata (under ``"ome"``) becomes OME-NGFF
    0.4 metadata at the top level (``multiscales`` with ``"version": "0.4"``, ``omero``, ``labels``...);
    the other attributes are kept."""
    out = {k: v for k, v in attrs.items() if k != "ome"}
    ome = attrs.get("ome")
    if not isinstance(ome, dict):
        return out
    for key, value in ome.items():
        if key == "version":
            continue
        if key == "multiscales" and isinstance(value, list):
            value = [{"version": "0.4", **{k: v for k, v in ms.items() if k != "version"}} if isinstance(ms, dict)
                     else ms for ms in value]
        elif key in ("plate", "well", "image-label") and isinstance(value, dict):
            value = {"version": "0.4", **{k: v for k, v in value.items() if k != "version"}}
        out.setdefault(key, value)
    return out


class _Group:
    kind = "group"

    def __init__(self, attrs):
        self.attrs = v2_group_attrs(dict(attrs or {}))


# -- opening a source ----------------------------------------------------------------------------------------
def open_source(source):
    """The nodes to serve, ``{path: array-or-group}`` (``""`` is the root), and a list of warnings.

    ``source``: a path or URL of a zarr array or group (v3, or format 2), or of a ``.vxc`` stream; or an
    open ``voxcodec.Decoder``, ``zarr.Array`` or ``zarr.Group``.  Raises UnsupportedError (a bad source:
    missing, neither zarr nor ``.vxc``, or nothing voxcodec-coded in it)."""
    from ..core.decoder import Decoder

    if isinstance(source, Decoder):
        return {"": VxcArray(source)}, []
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if "://" not in path:
            if not os.path.exists(path):
                raise UnsupportedError(f"{path} does not exist")
            if os.path.isfile(path):
                return {"": VxcArray(_open_vxc(path))}, []
            if not is_zarr_folder(path):
                raise UnsupportedError(f"{path} is a folder but not a zarr array or group (it holds no zarr.json, "
                                       ".zarray or .zgroup)")
        node = _open_zarr(path)
        where = path
    else:
        node, where = source, repr(source)
    return _zarr_nodes(node, where)


#: the files that mark a folder as a zarr array or group (v3, or format 2)
ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def is_zarr_folder(path) -> bool:
    """Whether ``path`` is a folder holding a zarr array or group (it has one of :data:`ZARR_MARKERS`)."""
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in ZARR_MARKERS)


def display_name(path: str) -> str:
    """A layer or volume name for ``path``: its last component without ``.vxc``, ``.ome.zarr`` or ``.zarr``."""
    base = os.path.basename(os.fspath(path).rstrip("/")) or os.fspath(path)
    for suffix in (".vxc", ".ome.zarr", ".zarr"):
        if base.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def _open_vxc(path):
    from ..core.container import MAGIC
    from ..core.decoder import Decoder

    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
    if head != MAGIC:
        raise UnsupportedError(f"{path} is neither a .vxc stream nor a zarr array or group")
    return Decoder(path, workers=1)


def _open_zarr(path):
    try:
        import zarr
    except ImportError as exc:
        raise UnsupportedError("serving zarr needs zarr-python: pip install 'voxcodec[zarr]'") from exc
    try:
        return zarr.open(path, mode="r")
    except Exception as exc:  # zarr raises several types for "not here" and "not valid"
        raise UnsupportedError(f"{path} cannot be opened as a zarr array or group ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


def _natural(path: str) -> list:
    """A sort key for member paths: ``"2"`` before ``"10"``, ``"s0/1"`` before ``"s1/0"``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", path)]


def _first_level(attrs: dict) -> str | None:
    """The path of an OME-Zarr multiscale group's first (full-resolution) dataset, or None."""
    from .ome import find_multiscales

    ms = find_multiscales(attrs)
    try:
        return str(ms[0]["datasets"][0]["path"])
    except (TypeError, KeyError, IndexError):
        return None


#: the public neuroglancer client that the printed link opens (any client takes the same state)
NEUROGLANCER_CLIENT = "https://neuroglancer-demo.appspot.com/"
_ABBR_METERS = {"pm": 1e-12, "nm": 1e-9, "um": 1e-6, "mm": 1e-3, "cm": 1e-2, "m": 1.0}


def _ng_dimension(unit) -> list:
    """A neuroglancer coordinate-space entry ``[size in meters, "m"]`` from a ``dimension_units`` entry
    (``"30 nm"``); ``[1, ""]`` (unitless) when it is unknown."""
    try:
        value, abbr = str(unit).split()
        return [float(f"{float(value) * _ABBR_METERS[abbr]:.12g}"), "m"]
    except (ValueError, KeyError):
        return [1, ""]


#: unit names (OME-NGFF / UDUNITS-2) as neuroglancer writes them, and their size in meters
_NG_UNITS = {"picometer": ("pm", 1e-12), "angstrom": ("pm", 1e-10), "nanometer": ("nm", 1e-9),
             "micrometer": ("um", 1e-6), "millimeter": ("mm", 1e-3), "centimeter": ("cm", 1e-2), "meter": ("m", 1.0)}


def _dimension_units(voxel_size, unit) -> list | None:
    """neuroglancer's ``dimension_units`` attribute of a zarr v2 array (``["30 nm", "6 nm", "6 nm"]``; null
    for an axis of unknown size), from a voxel size and its unit; None when nothing is known."""
    if voxel_size is None or unit not in _NG_UNITS or all(v is None for v in voxel_size):
        return None
    abbr, meters = _NG_UNITS[unit]
    per = meters / _ABBR_METERS[abbr]
    return [None if v is None else f"{float(v) * per:.10g} {abbr}" for v in voxel_size]


def _level_units(nodes):
    """Each level of a served OME-Zarr multiscale group gets its ``dimension_units`` (the level's scale and
    the axes' units), so that a level opened alone (``zarr2://.../0/``) keeps its voxel size."""
    from .ome import _scale_of, find_multiscales

    for path, group in list(nodes.items()):
        if group.kind != "group":
            continue
        ms = find_multiscales(group.attrs)
        if not ms or not isinstance(ms[0], dict):
            continue
        axes = [a if isinstance(a, dict) else {"name": str(a)} for a in ms[0].get("axes") or []]
        glob = _scale_of(ms[0].get("coordinateTransformations"))
        for d in ms[0].get("datasets") or []:
            if not isinstance(d, dict) or "path" not in d:
                continue
            arr = nodes.get(f"{path}/{d['path']}" if path else str(d["path"]))
            scale = _scale_of(d.get("coordinateTransformations"))
            if arr is None or arr.kind != "array" or not axes or scale is None or len(scale) != len(axes) \
                    or "dimension_units" in arr.attrs:
                continue
            if glob is not None and len(glob) == len(scale):
                scale = [a * b for a, b in zip(scale, glob)]
            units = [(_dimension_units([v], ax.get("unit")) or [None])[0] for v, ax in zip(scale, axes)]
            if any(units):
                arr.attrs["dimension_units"] = units


def _zarr_nodes(node, where):
    import zarr

    nodes, warnings = {}, []

    def add(path, n):
        if isinstance(n, zarr.Group):
            nodes[path] = _Group(n.attrs.asdict())
            return
        try:
            nodes[path] = ZarrArray(n)
        except UnsupportedError as exc:
            warnings.append(f"{path or 'the array'} is not served: {exc}")

    if isinstance(node, zarr.Group):
        add("", node)
        # in path order, numbers as numbers (0, 1, 2, 10): the store lists them in any order
        for name, member in sorted(node.members(max_depth=None), key=lambda nm: _natural(nm[0])):
            add(name, member)
    elif isinstance(node, zarr.Array):
        add("", node)
    else:
        raise UnsupportedError(f"{where} is not a zarr array or group")
    arrays = [a for a in nodes.values() if a.kind == "array"]
    if not any(a.voxcodec for a in arrays):
        raise UnsupportedError(f"{where} holds no voxcodec-coded array" + (
            f" ({len(arrays)} arrays with other codecs)" if arrays else " (no array at all)")
            + ": encode it first (voxcodec convert, or zarr with serializer=voxcodec.zarr.VoxCodec())")
    _level_units(nodes)
    return nodes, warnings


# -- the cache of decoded chunks ------------------------------------------------------------------------------
class ChunkCache:
    """An LRU of chunk bytes bounded by ``max_bytes`` (0: no caching).  :meth:`get` computes a missing
    entry once, even when several threads ask for it at the same time (the others wait for it)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items = OrderedDict()
        self._pending = {}
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0       # answered from the cache
        self.shared = 0     # answered by waiting for another thread's decode
        self.decodes = 0    # computed (decoded from the source)

    def get(self, key, compute):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            fut = self._pending.get(key)
            owner = fut is None
            if owner:
                fut = self._pending[key] = Future()
            else:
                self.shared += 1
        if not owner:
            return fut.result()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            fut.set_exception(exc)
            raise
        with self._lock:
            del self._pending[key]
            self.decodes += 1
            if len(value) <= self.max_bytes:
                self._items[key] = value
                self.nbytes += len(value)
                while self.nbytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self.nbytes -= len(old)
        fut.set_result(value)
        return value

    def __len__(self):
        return len(self._items)


# -- HTTP ------------------------------------------------------------------------------------------------
class _Resource:
    __slots__ = ("ctype", "length", "fetch")

    def __init__(self, ctype, length, fetch):
        self.ctype, self.length, self.fetch = ctype, length, fetch


def _static(ctype, data: bytes):
    return _Resource(ctype, len(data), lambda: data)


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, indent=1, allow_nan=False).encode()


class ZarrV2Server(ThreadingHTTPServer):
    """A threaded HTTP server of the nodes of :func:`open_source` as zarr v2 (see the module docstring).

    ``url``: where it serves; ``cache``: its :class:`ChunkCache` (``cache.decodes``: chunks decoded).
    ``port=0`` binds a free port."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, nodes, host="127.0.0.1", port=DEFAULT_PORT, cache_mb=DEFAULT_CACHE_MB, verbose=False,
                 name="", warnings=()):
        self.nodes = nodes
        self.name = name
        self.warnings = list(warnings)
        self.verbose = verbose
        self.cache = ChunkCache(int(cache_mb * 1e6))
        self._meta = {}  # static metadata documents, built once
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    # -- resources --
    def resource(self, path: str):
        """The resource at URL path ``path`` (without the leading slash), or None (404)."""
        if path == "" or path.endswith("/") or path in self.nodes:
            node = path.rstrip("/")
            return self._listing(node) if node in self.nodes else None
        node, _, key = path.rpartition("/")
        n = self.nodes.get(node)
        if n is None:
            return None
        if key in (".zattrs", ".zgroup", ".zarray", ".zmetadata"):
            doc = self._metadata(node, key)
            return None if doc is None else _static(_JSON, doc)
        if n.kind != "array":
            return None
        idx = n.chunk_index(key)
        if idx is None or not n.exists(idx):
            return None
        return _Resource(_BYTES, n.chunk_nbytes, lambda: self.cache.get((node, idx), lambda: n.chunk_bytes(idx)))

    def _metadata(self, node, key):
        if (node, key) not in self._meta:
            self._meta[node, key] = self._build_metadata(node, key)
        return self._meta[node, key]

    def _build_metadata(self, node, key):
        n = self.nodes[node]
        if key == ".zattrs":
            return _json_bytes(n.attrs)
        if key == ".zarray":
            return _json_bytes(n.zarray()) if n.kind == "array" else None
        if key == ".zgroup":
            return _json_bytes({"zarr_format": 2}) if n.kind == "group" else None
        if n.kind != "group":  # .zmetadata: consolidated metadata of the group and everything below it
            return None
        prefix = f"{node}/" if node else ""
        meta = {}
        for p, m in self.nodes.items():
            if p != node and not p.startswith(prefix):
                continue
            rel = p[len(prefix):] if p != node else ""
            at = f"{rel}/" if rel else ""
            meta[f"{at}.zgroup" if m.kind == "group" else f"{at}.zarray"] = (
                {"zarr_format": 2} if m.kind == "group" else m.zarray())
            meta[f"{at}.zattrs"] = m.attrs
        return _json_bytes({"zarr_consolidated_format": 1, "metadata": meta})

    def _listing(self, node):
        """An HTML index of a node (its metadata keys and children), as web servers list a folder."""
        n = self.nodes[node]
        base = f"/{node}/" if node else "/"
        keys = [".zattrs"] + ([".zarray"] if n.kind == "array" else [".zgroup", ".zmetadata"])
        prefix = f"{node}/" if node else ""
        children = sorted(p[len(prefix):] for p in self.nodes
                          if p != node and p.startswith(prefix) and "/" not in p[len(prefix):])
        rows = [f'<a href="{html.escape(base + k)}">{html.escape(k)}</a>' for k in keys]
        for c in children:
            m = self.nodes[prefix + c]
            what = m.describe() if m.kind == "array" else "group"
            rows.append(f'<a href="{html.escape(base + c)}/">{html.escape(c)}/</a> ({html.escape(what)})')
        title = f"{self.name or 'voxcodec'}: {base} ({n.describe() if n.kind == 'array' else 'group'})"
        body = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
                f"<body><h1>{html.escape(title)}</h1><p>zarr v2, uncompressed, served by voxcodec {__version__}"
                "</p><ul>" + "".join(f"<li>{r}</li>" for r in rows) + "</ul></body></html>\n")
        return _static("text/html; charset=utf-8", body.encode())

    def describe(self) -> str:
        """One line: what is served."""
        root = self.nodes[""]
        if root.kind == "array":
            return f"array {root.describe()}"
        arrays = [(p, a) for p, a in self.nodes.items() if a.kind == "array"]
        multi = "OME-Zarr multiscale group" if "multiscales" in root.attrs else "group"
        shown = "; ".join(f"{p}: {a.describe()}" for p, a in arrays[:4]) + ("; ..." if len(arrays) > 4 else "")
        return f"{multi} of {len(arrays)} arrays ({shown})"

    def neuroglancer_state(self) -> dict:
        """A neuroglancer viewer state that shows what is served the right way up: the layer's source, the
        x, y, z display dimensions with the voxel size and unit of level 0 (without them neuroglancer's xy
        panel shows a z-y strip of a (z, y, x) array), and the xy panel alone."""
        root = self.nodes[""]
        level = root
        if root.kind != "array":
            first = self.nodes.get(_first_level(root.attrs) or "")
            level = first if first is not None and first.kind == "array" else \
                next(a for a in self.nodes.values() if a.kind == "array")
        names = level.attrs.get("_ARRAY_DIMENSIONS")
        if not (isinstance(names, list) and len(names) == len(level.shape)):
            from .ome import find_multiscales

            ms = find_multiscales(root.attrs) if root.kind == "group" else None
            axes = (ms[0].get("axes") if ms and isinstance(ms[0], dict) else None) or []
            names = [a.get("name") if isinstance(a, dict) else str(a) for a in axes]
            if len(names) != len(level.shape):
                names = ["z", "y", "x"][-len(level.shape):] if len(level.shape) <= 3 else None
        units = level.attrs.get("dimension_units")
        units = units if isinstance(units, list) and len(units) == len(level.shape) else [None] * len(level.shape)
        dims = {}
        for axis in ("x", "y", "z"):  # display order: x across, y down, z through the panel
            if names and axis in names:
                dims[axis] = _ng_dimension(units[names.index(axis)])
        for n, u in zip(names or [], units):
            if n not in dims:
                dims[n] = _ng_dimension(u)
        label = display_name(self.name) if self.name else "voxcodec"
        return {"dimensions": dims,
                "layers": [{"type": "image", "source": f"zarr2://{self.url}", "name": label or "voxcodec"}],
                "layout": "xy", "showScaleBar": True}

    def neuroglancer_url(self, client: str = NEUROGLANCER_CLIENT) -> str:
        """:meth:`neuroglancer_state` as a link to the neuroglancer client at ``client``."""
        from urllib.parse import quote

        state = json.dumps(self.neuroglancer_state(), separators=(",", ":"))
        return f"{client.rstrip('/')}/#!{quote(state, safe='')}"

    def example(self) -> str:
        root = self.nodes[""]
        if root.kind == "array":
            return f"zarr.open_array({self.url!r})"
        first = _first_level(root.attrs)  # level 0 of a multiscale group, else the first array in path order
        if first not in self.nodes or self.nodes[first].kind != "array":
            first = next(p for p, a in self.nodes.items() if a.kind == "array")
        return f"zarr.open_group({self.url!r}) or zarr.open_array({self.url + first!r})"


class _Handler(BaseHTTPRequestHandler):
    server_version = f"voxcodec/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive: a viewer asks for many chunks
    timeout = 120  # an idle keep-alive connection releases its thread

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _cors(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Length, Content-Range, Accept-Ranges")

    def do_OPTIONS(self):
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", self.headers.get("Access-Control-Request-Headers") or "Range")
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self._answer(body=True)

    def do_HEAD(self):
        self._answer(body=False)

    def _plain(self, status, text, body=True):
        data = (text + "\n").encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _answer(self, body):
        path = unquote(urlsplit(self.path).path).lstrip("/")
        try:
            res = self.server.resource(path)
            if res is None:
                return self._plain(404, f"not found: /{path}", body)
            data = res.fetch() if body else None  # HEAD answers without decoding
        except Exception as exc:  # a damaged chunk, a source that went away: this request fails, the server goes on
            sys.stderr.write(f"voxcodec serve: error: /{path}: {type(exc).__name__}: {exc}\n")
            return self._plain(500, f"error decoding /{path}: {type(exc).__name__}: {exc}", body)
        length = res.length if data is None else len(data)
        rng = _byte_range(self.headers.get("Range"), length)
        if rng == "unsatisfiable":
            self.send_response(416)
            self._cors()
            self.send_header("Content-Range", f"bytes */{length}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, stop = rng if rng else (0, length)
        self.send_response(206 if rng else 200)
        self._cors()
        self.send_header("Content-Type", res.ctype)
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Accept-Ranges", "bytes")
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{length}")
        self.end_headers()
        if body:
            self.wfile.write(data[start:stop] if rng else data)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):  # the client went away
            self.close_connection = True


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header, length):
    """``(start, stop)`` of a single-range ``Range`` header; None: the whole resource (no header, or one
    this server ignores: several ranges); "unsatisfiable" for a range outside it."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    a, b = m.group(1), m.group(2)
    if not a:  # the last b bytes
        n = int(b)
        return (max(0, length - n), length) if n > 0 and length > 0 else "unsatisfiable"
    start = int(a)
    stop = length if not b else min(length, int(b) + 1)
    if start >= length or stop <= start:
        return "unsatisfiable"
    return start, stop


# -- entry points ------------------------------------------------------------------------------------------
def make_server(source, host: str = "127.0.0.1", port: int = 0, cache_mb: float = DEFAULT_CACHE_MB,
                verbose: bool = False) -> ZarrV2Server:
    """A :class:`ZarrV2Server` of ``source`` (a path or URL of a voxcodec-coded zarr array or group or of a
    ``.vxc`` stream, or an open Decoder / zarr array / zarr group), bound and listening on ``host:port``
    (``port=0``: a free port; ``server.url`` says which).  Call ``serve_forever()`` (in a thread, for
    tests), then ``shutdown()`` and ``server_close()``.  Limits this process to one compute thread per
    decoding thread."""
    parallel.one_thread()
    nodes, warnings = open_source(source)
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
    return ZarrV2Server(nodes, host, port, cache_mb, verbose=verbose, name=name, warnings=warnings)


def serve(source, host: str = "127.0.0.1", port: int = DEFAULT_PORT, cache_mb: float = DEFAULT_CACHE_MB,
          verbose: bool = False, on_ready=None):
    """Serve ``source`` (see :func:`make_server`) until interrupted (KeyboardInterrupt propagates).
    ``on_ready(server)`` is called once it listens (default: print where it serves)."""
    server = make_server(source, host, port, cache_mb, verbose)
    try:
        if on_ready is None:
            print(f"serving {server.name} as zarr v2 at {server.url}; open with {server.example()}", flush=True)
        else:
            on_ready(server)
        server.serve_forever()
    finally:
        server.server_close()
