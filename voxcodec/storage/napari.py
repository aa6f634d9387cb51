"""The napari reader: ``.vxc`` streams and voxcodec-coded zarr arrays and OME-Zarr groups, local or
``http(s)://``, opened as lazy image layers that carry their voxel size and unit.

    napari volume.vxc              napari em.ome.zarr              napari http://host:8000/

(and File > Open in napari; a URL is what ``voxcodec serve`` prints, or any zarr over HTTP).  napari
finds this reader through the ``napari.manifest`` entry point of the package (``voxcodec/napari.yaml``,
an npe2 manifest); it is used when voxcodec is installed in napari's environment, with the ``zarr``
extra for zarr sources (and ``aiohttp`` for URLs).

The contract (npe2's reader contribution): :func:`get_reader` takes a path (or a list with one path)
and returns a function, or ``None`` when the path is not for this reader (napari then asks the
next reader).  The function returns a list of napari *layer data* tuples ``(data, kwargs, "image")``:

- ``data``: a dask array, decoded block by block (or chunk by chunk) as napari shows them; for an
  OME-Zarr multiscale group a list of them, full resolution first, with ``multiscale=True``;
- ``kwargs``: ``name``; ``axis_labels`` (z, y, x); ``scale`` (the voxel size along z, y, x, when the
  source knows it) and ``units`` (its unit, e.g. ``"nanometer"``, one per axis); ``contrast_limits``
  (the dtype's range for 8-bit data, so that napari need not read the whole volume to guess them);
  ``metadata``.

napari itself is never imported here: the layer data are plain dask arrays and dicts, so they are
tested without napari or a display.
"""

from __future__ import annotations

import os

import numpy as np

def get_reader(path):
    """The reader for ``path`` (a ``str`` or a one-element list), or ``None`` if it is not a ``.vxc`` stream
    nor a zarr array or group holding a voxcodec-coded array."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    path = os.fspath(path)
    if _is_vxc(path):
        return read_vxc
    if _zarr_node(path) is not None:
        return read_zarr
    return None


# -- .vxc streams -------------------------------------------------------------------------------------------
def _is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def _is_vxc(path: str) -> bool:
    from ..core.container import MAGIC

    if _is_url(path):
        return path.rstrip("/").endswith(".vxc")
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:  # a folder, a missing file
        return False


def _open_stream(path: str):
    import voxcodec

    if _is_url(path):
        import urllib.request

        # the whole stream, fetched once (a Decoder reads a buffer); zarr over HTTP fetches chunk by chunk
        with urllib.request.urlopen(path, timeout=60) as r:
            return voxcodec.Decoder(r.read(), workers=1)
    return voxcodec.Decoder(path, workers=1)


def read_vxc(path):
    """A ``.vxc`` stream as one lazy image layer, in chunks of the stream's blocks."""
    import dask.array as da

    from .serve import display_name
    from .voxel_size import from_metadata

    path = os.fspath(path[0] if isinstance(path, (list, tuple)) else path)
    dec = _open_stream(path)
    depth = int(dec.meta.get("block_depth") or dec.shape[0] or 1)
    tile = dec.meta.get("tile") or list(dec.shape[1:])
    chunks = (max(1, min(depth, dec.shape[0])), max(1, min(int(tile[0]), dec.shape[1])),
              max(1, min(int(tile[1]), dec.shape[2])))
    # a Decoder is array-like and may be read from several threads: dask decodes a block per chunk
    data = da.from_array(dec, chunks=chunks, fancy=False, name=f"vxc-{path}")
    try:
        voxel_size, unit = from_metadata(dec.meta.get("metadata"))
    except ValueError:  # a malformed entry: shown without a scale, never refused
        voxel_size, unit = None, None
    kwargs = {"name": display_name(path), "metadata": {"source": path, "format_version": dec.format_version},
              **_scale(voxel_size, unit), **_contrast(dec.dtype)}
    return [(data, kwargs, "image")]


# -- zarr arrays and OME-Zarr groups --------------------------------------------------------------------------
def _zarr_node(path: str):
    """The zarr array or group at ``path`` if it holds a voxcodec-coded array, else None.  At an
    ``http(s)://`` URL any zarr is taken: ``voxcodec serve`` serves its arrays decoded, as plain zarr v2."""
    from .serve import _is_voxcodec, is_zarr_folder

    if not _is_url(path) and not is_zarr_folder(path):
        return None
    try:
        import zarr

        node = zarr.open(path, mode="r")
    except Exception:  # noqa: BLE001 - not zarr, zarr missing, unreachable: not for this reader
        return None
    arrays = [node] if isinstance(node, zarr.Array) else [a for _, a in node.arrays()]
    if isinstance(node, zarr.Group) and not arrays:
        arrays = [a for _, a in node.members(max_depth=None) if isinstance(a, zarr.Array)]
    return node if _is_url(path) or any(_is_voxcodec(a) for a in arrays) else None


def read_zarr(path):
    """A zarr array as one lazy image layer; an OME-Zarr multiscale group as one multiscale layer (full
    resolution first) with the voxel size of its level 0; another group as one layer per array."""
    import dask.array as da
    import zarr

    from .ome import find_multiscales, level0
    from .serve import _natural, display_name

    path = os.fspath(path[0] if isinstance(path, (list, tuple)) else path)
    node = _zarr_node(path)
    if node is None:
        raise ValueError(f"{path} is not a zarr array or group with a voxcodec-coded array")
    name = display_name(path)
    if isinstance(node, zarr.Array):
        kwargs = {"name": name, "metadata": {"source": path}, **_contrast(node.dtype, node.ndim)}
        return [(da.from_zarr(node), kwargs, "image")]
    ms = find_multiscales(node.attrs.asdict())
    if ms:
        lv = level0(ms, path)
        levels = [node[str(d["path"])] for d in ms[0]["datasets"]]
        data = [da.from_zarr(a) for a in levels]
        voxel_size = lv["voxel_size"] if len(lv["space"]) == 3 and levels[0].ndim == 3 else None
        kwargs = {"name": ms[0].get("name") or name, "multiscale": len(data) > 1,
                  "metadata": {"source": path, "levels": [str(d["path"]) for d in ms[0]["datasets"]]},
                  **_scale(voxel_size, lv["unit"]), **_contrast(levels[0].dtype, levels[0].ndim)}
        return [(data if len(data) > 1 else data[0], kwargs, "image")]
    arrays = sorted(((p, a) for p, a in node.members(max_depth=None) if isinstance(a, zarr.Array)),
                    key=lambda pa: _natural(pa[0]))
    return [(da.from_zarr(a), {"name": f"{name}/{p}", "metadata": {"source": path}, **_contrast(a.dtype, a.ndim)},
             "image") for p, a in arrays]


# -- layer keyword arguments -----------------------------------------------------------------------------------
def _scale(voxel_size, unit) -> dict:
    """napari's ``scale`` and ``units`` for a (z, y, x) voxel size; an unknown axis counts as 1."""
    if voxel_size is None or all(v is None for v in voxel_size):
        return {}
    out = {"scale": tuple(1.0 if v is None else float(v) for v in voxel_size)}
    if unit:
        out["units"] = (unit,) * len(voxel_size)
    return out


def _contrast(dtype, ndim: int = 3) -> dict:
    """Axis labels for a (z, y, x) volume, and the dtype's range as contrast limits for 8-bit data."""
    dtype = np.dtype(dtype)
    out = {"axis_labels": ("z", "y", "x")} if ndim == 3 else {}
    if dtype.itemsize == 1 and dtype.kind in "iu":
        info = np.iinfo(dtype)
        out["contrast_limits"] = (int(info.min), int(info.max))
    return out
