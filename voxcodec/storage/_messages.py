"""Pieces of the one-line messages with which the readers refuse an input."""

from __future__ import annotations

import re

#: the usual cause of a file that ends too soon
RECOPY = " (was the copy interrupted?)"


def why(exc: BaseException) -> str:
    """An exception as a short one-line reason."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"^(<[^>]*>\s*)+", "", text)
    return text if len(text) <= 160 else text[:157] + "..."


def dims(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def index_expr(axis: int, ndim: int) -> str:
    """Indexing that keeps element 0 of ``axis``: ``[..., 0]``, ``[:, 0]``, ``[0]``."""
    if axis == ndim - 1 and ndim > 1:
        return "[..., 0]"
    return "[" + ", ".join([":"] * axis + ["0"]) + "]"


def slices(n: int) -> str:
    return f"{n} slice" if n == 1 else f"{n} slices"
