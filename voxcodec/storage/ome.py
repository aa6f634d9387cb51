"""OME-NGFF (OME-Zarr) multiscales metadata: units, reading a source's axes and scales (0.4 and 0.5),
writing 0.5 metadata for a converted volume and validating it with ``ome-zarr-models``.

OME-NGFF 0.5 lives in a zarr v3 group's attributes under ``"ome"``::

    {"ome": {"version": "0.5", "multiscales": [{"axes": [{"name": "z", "type": "space", "unit": "nanometer"}, ...],
                                               "datasets": [{"path": "0", "coordinateTransformations":
                                                             [{"type": "scale", "scale": [z, y, x]}]}, ...]}]}}

Units must be names from UDUNITS-2 (``nanometer``, not ``nm``): :func:`normalize_unit` maps the
abbreviations microscopes and file formats use to them.
"""

from __future__ import annotations

from ..errors import InputError, UnsupportedError, VoxcodecError

VERSION = "0.5"
AXES = ("z", "y", "x")

#: length units OME-NGFF accepts that EM volumes use, and their size in nanometers
UNITS = {"picometer": 1e-3, "angstrom": 0.1, "nanometer": 1.0, "micrometer": 1e3, "millimeter": 1e6,
         "centimeter": 1e7, "meter": 1e9}
_ALIASES = {"pm": "picometer", "a": "angstrom", "å": "angstrom", "angstroms": "angstrom", "ang": "angstrom",
            "nm": "nanometer", "nanometers": "nanometer", "nanometre": "nanometer", "nanometres": "nanometer",
            "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer",
            "microns": "micrometer", "micrometers": "micrometer", "micrometre": "micrometer",
            "mm": "millimeter", "millimeters": "millimeter", "cm": "centimeter", "m": "meter", "meters": "meter"}


def normalize_unit(unit, what: str = "unit") -> str | None:
    """``unit`` as an OME-NGFF (UDUNITS-2) length name; None for none. Refuses what is not a length."""
    if unit is None or (isinstance(unit, str) and not unit.strip()):
        return None
    name = str(unit).strip()
    low = name.lower()
    if low in UNITS:
        return low
    if name in ("Å", "A"):
        return "angstrom"
    if low in _ALIASES:
        return _ALIASES[low]
    raise InputError(f"{what} {unit!r} is not a length unit voxcodec knows: use one of {', '.join(UNITS)} "
                     "(or nm, um, Å)")


def common_unit(sizes, units) -> tuple[tuple[float, ...] | None, str | None]:
    """Voxel sizes given per axis with possibly different units, in one unit: the shared one, or
    nanometers when they differ. Unknown units (None) on some axes only: the sizes are kept unitless."""
    if sizes is None:
        return None, None
    sizes = tuple(float(s) for s in sizes)
    units = [normalize_unit(u) for u in units]
    if len(set(units)) == 1:
        return sizes, units[0]
    if any(u is None for u in units):
        return sizes, None
    return tuple(s * UNITS[u] for s, u in zip(sizes, units)), "nanometer"


# -- reading a source's metadata --------------------------------------------------------------------------
def find_multiscales(attrs: dict) -> list | None:
    """The ``multiscales`` list of a group's attributes: OME-NGFF 0.5 (under ``ome``) or 0.4 (top level)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and isinstance(ome.get("multiscales"), list):
        return ome["multiscales"]
    ms = attrs.get("multiscales")
    return ms if isinstance(ms, list) else None


def _scale_of(transforms) -> list[float] | None:
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == "scale" and isinstance(t.get("scale"), list):
            return [float(s) for s in t["scale"]]
    return None


def level0(multiscales: list, label: str) -> dict:
    """Level 0 of the first multiscale image: its ``path``, the indices of its space axes, their voxel
    size (dataset scale times the image's global scale) and unit, and the names of all axes."""
    if not multiscales or not isinstance(multiscales[0], dict):
        raise InputError(f"{label}: the multiscales metadata is empty")
    ms = multiscales[0]
    datasets = ms.get("datasets") or []
    if not datasets or not isinstance(datasets[0], dict) or "path" not in datasets[0]:
        raise InputError(f"{label}: the multiscales metadata lists no datasets")
    axes = ms.get("axes")
    if axes is None:  # OME-NGFF 0.3 and earlier: always t, c, z, y, x
        axes = [{"name": n} for n in ("t", "c", "z", "y", "x")]
    axes = [a if isinstance(a, dict) else {"name": str(a)} for a in axes]
    names = [str(a.get("name", "")) for a in axes]
    space = [i for i, a in enumerate(axes) if a.get("type") == "space" or
             (a.get("type") is None and a.get("name") in AXES)]
    scale = _scale_of(datasets[0].get("coordinateTransformations"))
    glob = _scale_of(ms.get("coordinateTransformations"))
    if scale is not None and glob is not None and len(glob) == len(scale):
        scale = [s * g for s, g in zip(scale, glob)]
    sizes = [scale[i] for i in space] if scale is not None and len(scale) == len(axes) else None
    sizes, unit = common_unit(sizes, [axes[i].get("unit") for i in space]) if sizes else (None, None)
    return {"path": str(datasets[0]["path"]), "space": space, "names": names, "voxel_size": sizes, "unit": unit}


# -- writing ------------------------------------------------------------------------------------------------
def multiscales(scales, unit: str | None, *, name: str | None = None, kind: str | None = None,
                metadata: dict | None = None) -> dict:
    """The ``"ome"`` attribute of a group holding levels ``"0"``, ``"1"``, ... with these (z, y, x) voxel
    sizes. Without a unit the axes carry none (OME-NGFF allows it: the scale is then in voxels)."""
    unit = normalize_unit(unit)
    axes = [dict({"name": n, "type": "space"}, **({"unit": unit} if unit else {})) for n in AXES]
    datasets = [{"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [float(s) for s in sc]}]}
                for i, sc in enumerate(scales)]
    ms = {"axes": axes, "datasets": datasets}
    if name:
        ms["name"] = name
    if kind:
        ms["type"] = kind
    if metadata:
        ms["metadata"] = metadata
    return {"version": VERSION, "multiscales": [ms]}


def _models():
    """ome-zarr-models (the OME-NGFF community's validator; ``pip install "voxcodec[convert]"``)."""
    try:
        import ome_zarr_models.v05 as v05
        import ome_zarr_models.v05.image  # noqa: F401
    except ImportError:
        raise UnsupportedError("voxcodec convert validates the OME-NGFF metadata it writes with ome-zarr-models, "
                               "which is not installed: pip install \"voxcodec[convert]\" (or pip install "
                               "ome-zarr-models; it needs Python 3.11 or newer)") from None
    return v05


def validate_attrs(ome: dict):
    """Check the ``"ome"`` attribute alone against the OME-NGFF 0.5 schema (ome-zarr-models)."""
    ImageAttrs = _models().image.ImageAttrs

    try:
        ImageAttrs.model_validate(ome)
    except Exception as exc:
        raise VoxcodecError(f"the OME-NGFF metadata does not validate: {_first_line(exc)}") from exc


def validate_group(group):
    """Check a written zarr group, metadata and arrays together (axes match the arrays' dimensions), with
    ome-zarr-models; returns its :class:`ome_zarr_models.v05.Image`."""
    Image = _models().Image
    try:
        return Image.from_zarr(group)
    except Exception as exc:
        raise VoxcodecError(f"the OME-NGFF metadata of {group.store} does not validate: {_first_line(exc)}") from exc


def _first_line(exc) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
