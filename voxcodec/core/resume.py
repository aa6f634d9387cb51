"""Continuing an interrupted encode from the complete blocks of its partial stream.

A stream is written front to back: file header, block records, and the block index only at the
end. An encode that was killed (``kill -9``, Ctrl-C, power loss) leaves a stream with no index whose
complete z-layers of blocks are still good: each record carries its position and CRC-32s. Resuming
keeps those layers, cuts the file after the last one and codes on from there.

Bytes identical to an uninterrupted encode need the training state too: each block fine-tunes from
the weights of the block above it. An encoder with ``checkpoint=True`` saves that state beside the
stream (``<stream>.state``) for the last two layers, the new one before its blocks are written: a
kill at any moment leaves a checkpoint of the last complete layer, and a resumed encode restores
it. Without a checkpoint the next block trains from scratch: the stream is still exact, its bytes
differ.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field

from ..errors import CorruptStreamError, UnsupportedError, VoxcodecError
from .container import BlockHeader, IndexEntry, pack_file_header

STATE_SUFFIX = ".state"


@dataclass
class PartialStream:
    """What an interrupted stream holds: the complete layers of blocks, to keep."""

    end: int  # byte offset just past the last kept block: the file is cut there
    z: int  # slices held by the kept layers
    index: list[IndexEntry] = field(default_factory=list)
    headers: list[BlockHeader] = field(default_factory=list)
    banks: dict | None = None  # training state after the last kept layer, when a checkpoint matched


def state_path(path) -> str:
    return os.fspath(path) + STATE_SUFFIX


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
    part = PartialStream(end=end, z=z, index=index, headers=headers)
    part.banks = _load_state(path, part)
    return part


def _load_state(path, part: PartialStream):
    """The checkpointed training state, if it was saved right after the last kept layer."""
    try:
        with open(state_path(path), "rb") as f:
            state = pickle.load(f)
    except FileNotFoundError:
        return None
    except Exception:  # a torn or foreign checkpoint only costs identical bytes, never exactness
        return None
    layer = state.get("layers", {}).get(part.z) if isinstance(state, dict) else None
    if not isinstance(layer, dict) or layer.get("end") != part.end:
        return None
    return layer.get("banks")


def save_state(path, layers: dict, z: int, end: int, banks: dict) -> dict:
    """Checkpoint the training state after the layer ending at slice ``z`` / byte ``end``, keeping the
    one before it (``layers``, as returned by the previous call): the new layer's blocks are written
    after this, so whichever of the two layers a kill leaves complete, its state is on disk.
    Returns the layers now saved."""
    layers = {k: v for k, v in layers.items() if k < z}
    layers = {**({max(layers): layers[max(layers)]} if layers else {}), z: {"end": end, "banks": dict(banks)}}
    tmp = state_path(path) + ".tmp"
    try:
        with open(tmp, "wb") as f:
            pickle.dump({"layers": layers, "z": z}, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, state_path(path))
    except OSError as exc:
        raise VoxcodecError(f"cannot write the resume checkpoint {state_path(path)}: {exc}") from exc
    return layers


def remove_state(path):
    for p in (state_path(path), state_path(path) + ".tmp"):
        try:
            os.remove(p)
        except FileNotFoundError:
            pass

