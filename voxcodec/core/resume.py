"""Continuing an interrupted encode from the complete blocks of its partial stream.

A stream is written front to back: file header, block records, and the block index only at the
end. An encode that was killed (``kill -9``, Ctrl-C, power loss) leaves a stream with no index whose
complete z-layers of blocks are still good: each record carries its position and CRC-32s. Resuming
keeps those layers, cuts the file after the last one and codes on from there.  Format 6 blocks
depend on nothing before them, so the resumed stream is byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..errors import CorruptStreamError, UnsupportedError
from .container import FORMAT_VERSION, BlockHeader, IndexEntry, pack_file_header


@dataclass
class PartialStream:
    """What an interrupted stream holds: the complete layers of blocks, to keep."""

    end: int  # byte offset just past the last kept block: the file is cut there
    z: int  # slices held by the kept layers
    index: list[IndexEntry] = field(default_factory=list)
    headers: list[BlockHeader] = field(default_factory=list)


def _differences(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if k != "encoder" and a.get(k) != b.get(k))


def load_partial(path, meta: dict) -> PartialStream | None:
    """The complete layers of the partial stream at ``path``, written with the header ``meta``.

    Returns None when there is nothing to keep (no file, or not even a whole file header). Raises
    :class:`UnsupportedError` when the stream was written with other settings (the new blocks
    could not join the old ones) or is not a voxcodec stream.
    """
    from .decoder import Decoder

    if not os.path.exists(path):
        return None
    head = pack_file_header(meta)
    if os.path.getsize(path) <= len(head):
        with open(path, "rb") as f:
            if head.startswith(f.read()):  # killed while the file header was being written
                return None
    try:
        dec = Decoder(path, salvage=True)
    except CorruptStreamError as exc:
        raise UnsupportedError(f"cannot resume from {path}: {exc}; remove it to start over") from None
    with dec:
        if dec.format_version != FORMAT_VERSION:
            raise UnsupportedError(f"cannot resume from {path}: it is a format {dec.format_version} stream of an "
                                   f"older voxcodec (this one writes format {FORMAT_VERSION}); remove it to start over")
        old = json.loads(json.dumps(dec.meta))
        new = json.loads(json.dumps(meta))
        diff = _differences(old, new)
        if diff:
            raise UnsupportedError(
                f"cannot resume from {path}: it was written with other settings ({', '.join(diff)} differ); "
                "run the same command as before, or remove it to start over")
        headers = [dec.block_header(i) for i in range(len(dec.index))]
        index = list(dec.index)
        end = index[-1].offset + index[-1].length if index else dec._header_size
        z = dec.shape[0]
    return PartialStream(end=end, z=z, index=index, headers=headers)
