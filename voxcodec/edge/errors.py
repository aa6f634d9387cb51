"""Errors that end an edge run (re-exported by :mod:`voxcodec.edge`)."""

from __future__ import annotations

from ..errors import VoxcodecError


class EdgeError(VoxcodecError):
    """The run cannot go on (bad input, DEST belongs to another run, the spool was tampered with)."""


class VerifyError(EdgeError):
    """What DEST holds differs from the source: nothing is deleted, the run stops."""
