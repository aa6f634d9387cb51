"""Voxel size: the physical size of a voxel along (z, y, x) and its unit, read from TIFF metadata
(ImageJ, OME, resolution tags), carried in a stream's metadata and written back into TIFF files.

Representation
--------------
A voxel size is ``None`` when nothing is known, otherwise a ``(z, y, x)`` tuple of positive floats in
which an axis whose size is unknown is ``None`` (a plain TIFF tells y and x, never z: ``(None, 4.0, 4.0)``).
Nothing is invented: an unknown z is never set equal to x. The unit is a length unit spelled as
OME-NGFF / UDUNITS-2 spell it (``"nanometer"``, ``"micrometer"``, ``"angstrom"``, ...); see
:func:`normalize_unit`. In a stream's metadata they are ``"voxel_size": [z, y, x]`` (``null`` for an
unknown axis) and ``"unit"``.

Where the size comes from (first match wins)
--------------------------------------------
1. OME-TIFF: ``PhysicalSizeX/Y/Z`` of the first ``Pixels`` element with their ``...Unit`` attributes
   (OME's default unit is micrometer); axes given in different units are converted to the unit of x.
2. ImageJ TIFF with a ``unit=`` in its description (``micron``, ``um``, ``nm``, ``\\u00B5m``, ...): y and x
   are 1 / YResolution and 1 / XResolution (pixels per unit, whatever ResolutionUnit says, as ImageJ
   reads them), z is ``spacing=``. ImageJ leaves ``spacing`` out when it is 1.0, which is also what an
   uncalibrated z looks like: without ``spacing`` z is unknown.
3. Resolution tags alone, with ResolutionUnit inch or centimeter (or the DNG millimeter and
   micrometer): y and x converted to micrometers; z unknown. Ignored: ResolutionUnit NONE (no unit,
   e.g. the (1, 1) that tifffile writes by default) and resolutions of at most 1200 dots per inch
   (472.4 per centimeter, pixels of 21 micrometers or more): those are the defaults and print
   resolutions (1, 72, 96, 300 dpi) that image software writes, not a microscope's pixel size.

Resolution tags are rationals; ImageJ writes them with six decimals, so sizes taken from them are
rounded to 6 significant digits (1 / (10/37) reads as 3.7, not 3.6999999999999997).
"""

from __future__ import annotations

import math
import re

#: accepted unit -> meters per unit; the keys are the OME-NGFF (UDUNITS-2) names of length units
METERS = {
    "angstrom": 1e-10, "attometer": 1e-18, "centimeter": 1e-2, "decimeter": 1e-1, "exameter": 1e18,
    "femtometer": 1e-15, "foot": 0.3048, "gigameter": 1e9, "hectometer": 1e2, "inch": 0.0254, "kilometer": 1e3,
    "megameter": 1e6, "meter": 1.0, "micrometer": 1e-6, "mile": 1609.344, "millimeter": 1e-3, "nanometer": 1e-9,
    "parsec": 3.0856775814913673e16, "petameter": 1e15, "picometer": 1e-12, "terameter": 1e12, "yard": 0.9144,
    "yoctometer": 1e-24, "yottameter": 1e24, "zeptometer": 1e-21, "zettameter": 1e21,
}

# symbols, case-sensitive (Mm is a megameter, mm a millimeter)
_SYMBOLS = {
    "\u00c5": "angstrom", "\u212b": "angstrom", "A": "angstrom", "am": "attometer", "cm": "centimeter",
    "dm": "decimeter", "Em": "exameter", "fm": "femtometer", "ft": "foot", "Gm": "gigameter", "hm": "hectometer",
    "in": "inch", "km": "kilometer", "Mm": "megameter", "m": "meter", "\u00b5m": "micrometer",
    "\u03bcm": "micrometer", "um": "micrometer", "mi": "mile", "mm": "millimeter", "nm": "nanometer",
    "pc": "parsec", "Pm": "petameter", "pm": "picometer", "Tm": "terameter", "yd": "yard", "ym": "yoctometer",
    "Ym": "yottameter", "zm": "zeptometer", "Zm": "zettameter",
}
# other names, compared in lower case; plurals and -metre spellings are derived below
_NAMES = {"micron": "micrometer", "ångström": "angstrom", "ångstrom": "angstrom", "feet": "foot",
          "inches": "inch", "metre": "meter"}

#: how ImageJ spells a unit in a TIFF description (ASCII: tifffile writes descriptions as ASCII)
IMAGEJ_UNITS = {"nanometer": "nm", "micrometer": "um", "millimeter": "mm", "centimeter": "cm", "meter": "m",
                "angstrom": "A", "picometer": "pm", "kilometer": "km", "inch": "inch"}

_UNITLESS = {"", "pixel", "pixels", "px"}


def _unescape(text: str) -> str:
    """ImageJ writes non-ASCII characters of its descriptions as ``\\u00B5``."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)


def normalize_unit(unit: str) -> str:
    """The OME-NGFF / UDUNITS-2 name of a length unit: ``"nm"`` -> ``"nanometer"``, ``"um"``, ``"µm"``,
    ``"micron"``, ``"micrometres"`` -> ``"micrometer"``, ``"Å"`` or ``"A"`` -> ``"angstrom"``.

    Raises ValueError, naming the accepted spellings, for anything that is not a length unit."""
    if not isinstance(unit, str):
        raise ValueError(f"a unit is a string such as 'nanometer' or 'nm', got {unit!r}")
    text = _unescape(unit.strip())
    if text in _SYMBOLS:
        return _SYMBOLS[text]
    low = text.lower()
    for cand in (low, low[:-1] if low.endswith("s") else None):
        if cand is None:
            continue
        cand = cand.replace("metre", "meter")
        if cand in METERS:
            return cand
        if cand in _NAMES:
            return _NAMES[cand]
    raise ValueError(f"unknown unit {unit!r}: give a length unit, e.g. nanometer (nm), micrometer (um, µm, micron), "
                     f"angstrom (A, Å), millimeter (mm); accepted names: {', '.join(sorted(METERS))}")


def convert(value: float, unit: str, to: str) -> float:
    """``value`` in ``unit`` expressed in ``to`` (both names as :func:`normalize_unit` returns them)."""
    return round_sig(value * METERS[unit] / METERS[to], 12)


def round_sig(value: float, digits: int) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def check(voxel_size, unit):
    """``(voxel_size, unit)`` validated and normalized: a (z, y, x) tuple of positive finite floats or None
    entries with a normalized unit, or ``(None, None)`` when no axis is known. Raises ValueError."""
    if voxel_size is None:
        return None, None
    vs = list(voxel_size)
    if len(vs) != 3:
        raise ValueError(f"a voxel size has three entries (z, y, x), got {len(vs)}: {voxel_size!r}")
    out = []
    for v in vs:
        if v is None:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"voxel sizes are numbers, got {v!r}")
        v = float(v)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"voxel sizes are positive and finite, got {v!r}")
        out.append(v)
    if all(v is None for v in out):
        return None, None
    if unit is None:
        raise ValueError("a voxel size needs a unit, e.g. nanometer")
    return tuple(out), normalize_unit(unit)


def from_metadata(metadata) -> tuple[tuple | None, str | None]:
    """``(voxel_size, unit)`` from a stream's metadata (``Decoder(path).meta["metadata"]``), or
    ``(None, None)`` when it holds none. Raises ValueError when the entries are malformed."""
    if not isinstance(metadata, dict) or metadata.get("voxel_size") is None:
        return None, None
    return check(metadata["voxel_size"], metadata.get("unit"))


def to_metadata(voxel_size, unit) -> dict:
    """The stream metadata entries for a voxel size (empty when it is None)."""
    voxel_size, unit = check(voxel_size, unit)
    if voxel_size is None:
        return {}
    return {"voxel_size": list(voxel_size), "unit": unit}


def describe(voxel_size, unit) -> str:
    """``"40 x 4 x 4 nanometer (z, y, x)"``; an unknown axis is ``?``."""
    if voxel_size is None:
        return "unknown"
    return " x ".join("?" if v is None else f"{v:g}" for v in voxel_size) + f" {unit} (z, y, x)"


# -- reading from TIFF ---------------------------------------------------------------------------------------

def _per_unit(tag) -> float | None:
    """Pixels per unit from a RATIONAL resolution tag, or None."""
    if tag is None:
        return None
    v = tag.value
    try:
        num, den = (v[0], v[1]) if isinstance(v, tuple) else (v, 1)
        r = float(num) / float(den)
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    return r if math.isfinite(r) and r > 0 else None


def _unit_of(text):
    if text is None:
        return None
    try:
        return normalize_unit(str(text))
    except ValueError:
        return None


def _ome(xml: str):
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None, None
    sizes = {}
    for ax in "ZYX":
        raw = pixels.get(f"PhysicalSize{ax}")
        unit = _unit_of(pixels.get(f"PhysicalSize{ax}Unit", "\u00b5m"))
        try:
            v = float(raw) if raw is not None else None
        except ValueError:
            v = None
        if v is not None and unit is not None and math.isfinite(v) and v > 0:
            sizes[ax] = (v, unit)
    if not sizes:
        return None, None
    common = (sizes.get("X") or sizes.get("Y") or sizes["Z"])[1]
    vs = []
    for ax in "ZYX":
        v, u = sizes.get(ax, (None, None))
        vs.append(None if v is None else v if u == common else convert(v, u, common))
    return tuple(vs), common


def _resolution_yx(page, scale=1.0):
    """(y, x) sizes from the resolution tags (in the tag's unit times ``scale``), None entries when absent."""
    out = []
    for name in ("YResolution", "XResolution"):
        r = _per_unit(page.tags.get(name))
        out.append(None if r is None else round_sig(scale / r, 6))
    return out


# ResolutionUnit -> micrometers per unit
_RESUNIT_UM = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}


def from_tiff(tif, *, z: bool = True):
    """``(voxel_size, unit)`` of an open ``tifffile.TiffFile`` by the rules of this module's docstring;
    with ``z=False`` z is left unknown (a slice of a folder). Never raises: unreadable metadata is no
    voxel size."""
    try:
        return _from_tiff(tif, z)
    except Exception:
        return None, None


def _from_tiff(tif, want_z):
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    if tif.is_ome and tif.ome_metadata:
        vs, unit = _ome(tif.ome_metadata)
        if vs is not None:
            if not want_z:
                vs = (None, *vs[1:])
            return check(vs, unit)
    ij = tif.imagej_metadata if tif.is_imagej else None
    if ij and str(ij.get("unit", "")).strip().lower() not in _UNITLESS:
        unit = _unit_of(ij["unit"])
        if unit is not None:
            y, x = _resolution_yx(page)
            zs = None
            if want_z and ij.get("spacing") is not None:
                try:
                    zs = float(ij["spacing"])
                except (TypeError, ValueError):
                    zs = None
                if zs is not None and not (math.isfinite(zs) and zs > 0):
                    zs = None
            return check((zs, y, x), unit)
    shaped = None
    if tif.is_shaped:  # voxcodec writes int8 volumes as tifffile "shaped" files with spacing and unit
        shaped = next(iter(tif.shaped_metadata or ()), None)
    if isinstance(shaped, dict) and shaped.get("unit") is not None:
        unit = _unit_of(shaped["unit"])
        if unit is not None:
            y, x = _resolution_yx(page)
            zs = shaped.get("spacing") if want_z else None
            try:
                return check((zs, y, x), unit)
            except ValueError:
                return None, None
    resunit = page.tags.get("ResolutionUnit")
    resunit = int(resunit.value) if resunit is not None else 2  # the TIFF default is inch
    if resunit not in _RESUNIT_UM:
        return None, None
    ry, rx = (_per_unit(page.tags.get(n)) for n in ("YResolution", "XResolution"))
    um = _RESUNIT_UM[resunit]
    if ry is None or rx is None or max(ry, rx) * 25400.0 / um <= 1200.0:  # default and print resolutions
        return None, None
    y, x = _resolution_yx(page, um)
    return check((None, y, x), "micrometer")


# -- writing to TIFF -----------------------------------------------------------------------------------------

def tiff_calibration(shape, dtype, voxel_size, unit) -> tuple[dict, dict, list[str]]:
    """How :class:`~voxcodec.storage.volume_io.TiffStackWriter` writes a voxel size: keyword arguments of
    ``tifffile.TiffWriter.write`` for the first page and for every page, and notes on what could not be
    written. ImageJ hyperstack description (``spacing``, ``unit``) with XResolution/YResolution = 1 / size
    and ResolutionUnit NONE (CENTIMETER or INCH for those units, as ImageJ writes them); int8, which ImageJ
    does not know, gets a tifffile "shaped" description holding ``spacing`` and ``unit`` instead.
    Without a voxel size: the plain tifffile description of before, no resolution."""
    import numpy as np

    voxel_size, unit = check(voxel_size, unit)
    notes = []
    if voxel_size is None:
        return {"metadata": {"axes": "ZYX"}}, {}, notes
    zs, ys, xs = voxel_size
    every = {}
    if ys is not None and xs is not None:
        every = {"resolution": (1.0 / xs, 1.0 / ys),
                 "resolutionunit": {"centimeter": "CENTIMETER", "inch": "INCH"}.get(unit, "NONE")}
    else:
        notes.append(f"the voxel size {describe(voxel_size, unit)} has no y and x size, which a TIFF cannot "
                     "hold without them: only the stream keeps it")
        return {"metadata": {"axes": "ZYX"}}, {}, notes
    ij_unit = IMAGEJ_UNITS.get(unit, unit)
    extra = {"unit": ij_unit}
    if zs is not None:
        extra["spacing"] = zs
    if np.dtype(dtype) == np.int8:
        return {"metadata": {"axes": "ZYX", **extra}}, every, notes
    from tifffile.tifffile import imagej_description

    desc = imagej_description(tuple(int(s) for s in shape), axes="ZYX", **extra)
    return {"description": desc, "metadata": None}, every, notes
