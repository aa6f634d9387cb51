"""Fuzzing the decoder: damaged and crafted ``.vxc`` streams must decode to exactly the original voxels or
raise a documented :class:`voxcodec.VoxcodecError`, within a time and a memory bound.

    python bench/fuzz.py --count 20000            # counts per outcome; exit status 1 if any case failed
    python bench/fuzz.py --case 1234              # one case again, in this process, with its traceback

Streams: a few small volumes of format 6 (uint8 and uint16, each coder, tiled, a short last layer,
constant blocks and slices, palette slices, a stored block), encoded once, and the golden streams of
formats 1 to 5 (networks, a zoo prior as it is, a fine-tuned difference against a prior, a shared
model).  Case ``i`` of a seed is drawn from ``numpy.random.default_rng([seed, i])``, so a run is
reproducible case by case.  About half the cases are random damage (bit flips, overwrites, truncation,
insertions, deletions, byte-range copies, appended bytes); the other half are CRC-consistent edits: the
stream is parsed, one field of the file header (binary or JSON), the block index, the trailer or a block
header is changed -- or records are swapped, duplicated or replaced by a copy of another, or a model
section or payload is rewritten -- and every CRC is recomputed so the checksums pass.  (No edit ever
recomputes a voxel checksum for new voxels, nor rewrites a block's index field *and* its geometry to
move it elsewhere: those would forge a valid stream of another volume.)  A third of the cases decode
with ``salvage=True`` after the block index was cut off (an interrupted write), where any whole-layer
prefix of the original volume is a correct answer.

Each case runs in a worker process (``--jobs`` of them) whose address space is capped with
``RLIMIT_AS`` at its size after start-up plus ``--memory-mb``: a decoder that tries to allocate more
gets a MemoryError (reported as an undocumented exception) or dies (reported as a crash).  The parent
gives each case ``--timeout`` seconds and otherwise kills the worker (a hang) and starts a new one
at the next case.  Outcomes: ``exact``, each VoxcodecError type, ``SILENT WRONG`` (voxels returned that
are not the original ones), ``UNDOCUMENTED <type>``, ``HANG``, ``CRASH``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

BAD = ("SILENT WRONG", "UNDOCUMENTED", "OVER MEMORY", "HANG", "CRASH")


# -- the streams ------------------------------------------------------------------------------------

@dataclass
class Stream:
    name: str
    data: bytes
    volume: np.ndarray
    shared: str | None = None  # the shared model (BlockModel.to_text) the stream needs


def _golden(name: str) -> bytes:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", name + ".vxc"), "rb") as f:
        return f.read()


def shared_model_stream():
    """A stream as voxcodec 0.5 wrote it with a shared model (made from a golden format 5 stream by moving
    its model section out into the model's text): ``(stream, model text)``."""
    from voxcodec.core.legacy.network import BlockModel, ModelConfig

    p = parse(_golden("golden_v5_own"))
    model = BlockModel.from_bytes(p.records[0].model, ModelConfig.from_json(p.meta["model"]))
    p.meta["shared_model"] = model.id
    p.records[0].model = b""
    p.records[0].fields[13] |= 4  # FLAG_SHARED
    return build(p)[0], model.to_text()


def make_streams(legacy: bool = True) -> list[Stream]:
    """Small streams covering the decoder's paths; a few seconds to encode.  Format 6 (each preset's coder,
    tiles, uint16 with a shift, constant slices and blocks, bitmap and listed palettes, a stored block),
    and with ``legacy`` the golden streams of voxcodec 0.1 to 0.5: networks of format 1 and 3, a block
    coded with a zoo prior as it is, one with a fine-tuned difference against a prior, and a shared model."""
    import voxcodec

    s = voxcodec.sample_volume()
    out = []
    u8 = np.ascontiguousarray(s[:12, :24, :24])  # 2 layers x 2 tiles
    out.append(Stream("u8_tiles", voxcodec.encode(u8, block_depth=6, tile=(24, 12)), u8))
    # uint16 (shift > 0), layers of 4, 4 and 1 slices: a constant slice, a palette slice, a constant block
    u16 = s[12:21, :20, :20].astype(np.uint16) * 13 + 1000
    u16[1] = 1500
    u16[2] = (u16[2] // 208) * 208
    u16[4:8] = 777
    u16[8] = (s[21, :20, :20].astype(np.uint16) // 32) * 64 + 5000
    out.append(Stream("u16_mixed", voxcodec.encode(u16, block_depth=4), u16))
    small = np.ascontiguousarray(s[40:44, :20, :28])
    out.append(Stream("u8_fast", voxcodec.encode(small, preset="fast", block_depth=2, tile=(20, 14)), small))
    out.append(Stream("u8_max", voxcodec.encode(small, preset="max", block_depth=4), small))
    # a stored (raw) noise tile beside a coded one; a uint16 mask coded with listed palettes
    stored = np.ascontiguousarray(s[44:48, :16, :32])
    stored[:, :, 16:] = np.random.default_rng(5).integers(0, 256, (4, 16, 16), dtype=np.uint8)
    out.append(Stream("u8_stored", voxcodec.encode(stored, block_depth=4, tile=(16, 16)), stored))
    mask = ((s[48:52, :16, :16] > 120) * 65535).astype(np.uint16)
    out.append(Stream("u16_listed", voxcodec.encode(mask, block_depth=2), mask))
    if legacy:  # as voxcodec 0.1 to 0.5 wrote them (golden streams)
        for name, label in (("golden_plain_u8", "v1_untrained"), ("golden_v3_u8", "v3_trained_inter"),
                            ("golden_v4_em-general-v1", "v4_zoo_prior"), ("golden_v5_delta", "v5_fine_tuned"),
                            ("golden_v5_own", "v5_own_networks")):
            data = _golden(name)
            out.append(Stream(label, data, voxcodec.decode(data)))
        data, text = shared_model_stream()
        from voxcodec.core.legacy.network import BlockModel

        out.append(Stream("v5_shared_model", data, voxcodec.decode(data, shared_model=BlockModel.from_text(text)),
                          text))
    for st in out:  # the streams themselves decode exactly
        from voxcodec.core.legacy.network import BlockModel

        model = BlockModel.from_text(st.shared) if st.shared else None
        assert np.array_equal(voxcodec.decode(st.data, shared_model=model), st.volume), st.name
    return out


# -- parsing and rebuilding streams with every CRC recomputed --------------------------------------

def _structs():
    from voxcodec.core import container as c

    return c


@dataclass
class Record:
    fields: list  # the 19 values of the block header struct (magic, index, z0, ..., voxel_crc)
    model: bytes
    payload: bytes
    entry: list  # the index entry's z0, depth, y0, x0, h, w, model_bytes, inter
    sync: bool = True  # model_len / payload_len follow the bytes
    sync_crc: bool = True  # data_crc follows the bytes


@dataclass
class Parsed:
    version: int
    reserved: int
    meta: dict
    records: list
    shape: list
    meta_raw: bytes | None = None
    index_raw: bytes | None = None
    index_edit: object = None  # callable(index dict) applied after the entries are laid out
    trailer_offset: int | None = None
    trailer_magic: bytes | None = None


def parse(data: bytes) -> Parsed:
    c = _structs()
    _, version, reserved, n = c._FILE_HEAD.unpack_from(data, 0)
    meta = json.loads(data[16:16 + n])
    pos = 16 + n + 4
    index_at, _ = c._TRAILER.unpack_from(data, len(data) - c._TRAILER.size)
    records = []
    while pos < index_at:
        f = list(c._BLOCK.unpack_from(data, pos))
        ml, pl = f[15], f[16]
        body = data[pos + c.HEADER_SIZE:pos + c.HEADER_SIZE + ml + pl]
        records.append(Record(f, body[:ml], body[ml:], [*f[2:8], ml, bool(f[13] & c.FLAG_INTER)]))
        pos += c.HEADER_SIZE + ml + pl
    (m,) = struct.unpack_from("<I", data, index_at + 4)
    index = json.loads(data[index_at + 8:index_at + 8 + m])
    return Parsed(version, reserved, meta, records, index["shape"])


def build(p: Parsed) -> tuple[bytes, int]:
    """The stream, and the offset where its block index starts."""
    c = _structs()
    js = p.meta_raw if p.meta_raw is not None else json.dumps(p.meta, sort_keys=True, separators=(",", ":")).encode()
    head = c._FILE_HEAD.pack(c.MAGIC, p.version, p.reserved, len(js)) + js
    parts = [head + struct.pack("<I", zlib.crc32(head))]
    pos = len(parts[0])
    entries = []
    for r in p.records:
        f = list(r.fields)
        if r.sync:
            f[15], f[16] = len(r.model), len(r.payload)
        if r.sync_crc:
            f[17] = zlib.crc32(r.model + r.payload)
        body = c._BLOCK.pack(*f)
        rec = body + struct.pack("<I", zlib.crc32(body)) + r.model + r.payload
        entries.append([pos, len(rec), *r.entry[:6], 8 * len(rec), len(r.model) if r.sync else r.entry[6], r.entry[7]])
        parts.append(rec)
        pos += len(rec)
    index = {"shape": list(p.shape), "blocks": entries}
    if p.index_edit is not None:
        p.index_edit(index)
    ijs = p.index_raw if p.index_raw is not None else json.dumps(index, separators=(",", ":")).encode()
    body = c.INDEX_MAGIC + struct.pack("<I", len(ijs)) + ijs
    parts.append(body + struct.pack("<I", zlib.crc32(body)))
    parts.append(c._TRAILER.pack(pos if p.trailer_offset is None else p.trailer_offset,
                                 p.trailer_magic or c.END_MAGIC))
    return b"".join(parts), pos


# -- mutations ---------------------------------------------------------------------------------------

_U32 = (0, 1, 2, 3, 5, 7, 8, 84, 255, 256, 1 << 16, (1 << 20) + 1, 1 << 24, (1 << 31) - 1, 1 << 31, (1 << 32) - 1)
_I64 = (0, 1, -1, 254, 255, 256, 65535, 65536, 1 << 31, (1 << 62), (1 << 63) - 1, -(1 << 63))
_JSON_ODD = (None, True, False, "x", "", 1.5, -1, 0, [], {}, [1], [1, 2, 3], float("nan"), float("inf"), 1 << 20,
             (1 << 20) + 1, 1 << 31, 1 << 64, 10 ** 6, 1040, [1040, 8], [64, 64], [0, 8], "|u1", "<u2", "<i2", ">u2",
             "float32", [[["deep"]]], {"a": 1})
_META_KEYS = ("dtype", "slice_shape", "slice_shape.0", "slice_shape.1", "block_depth", "tile", "tile.0", "tile.1",
              "model", "model.0", "model.1", "model.levels", "model.hidden", "model.hidden.0", "model.hidden.1",
              "model.bins", "model.neighbours", "model.act_bits", "model.in_bits", "model.coder", "model.causal", "model.casc",
              "shared_model", "priors", "metadata", "preset", "encoder")
_BLOCK_FIELDS = {1: "index", 2: "z0", 3: "depth", 4: "y0", 5: "x0", 6: "h", 7: "w", 8: "reserved", 9: "lo",
                 10: "hi", 11: "centre", 12: "shift", 13: "flags", 14: "reserved2", 15: "model_len",
                 16: "payload_len", 17: "data_crc", 18: "voxel_crc"}
_ENTRY_FIELDS = ("offset", "length", "z0", "depth", "y0", "x0", "h", "w", "bits", "model_bytes", "inter")


def _near(rng, v):
    return int(v) + int(rng.choice([-2, -1, 1, 2, 8, -8, 64]))


def _header_value(rng, k, cur, other):
    """A new value for field k of a block header struct (within the field's struct range)."""
    if k in (12, 13):
        pool = [0, 1, 2, 3, 4, 6, 7, 8, 9, 15, 16, 128, 255, cur ^ (1 << int(rng.integers(8)))]
    elif k == 14:
        pool = [1, 0xFFFF]
    elif k in (9, 10, 11):
        pool = list(_I64) + [_near(rng, cur), other]
    else:
        pool = list(_U32) + [_near(rng, cur), other, int(rng.integers(0, 1 << 32))]
    v = pool[int(rng.integers(len(pool)))]
    if k in (9, 10, 11):
        return int(np.clip(v, -(1 << 63), (1 << 63) - 1))
    top = {12: 255, 13: 255, 14: 0xFFFF}.get(k, (1 << 32) - 1)
    return min(max(int(v), 0), top)


def _set_path(d, path, value, delete=False):
    keys = path.split(".")
    for k in keys[:-1]:
        if isinstance(d, list):  # a path into a list needs numbers (format 6's model is a list)
            d = d[int(k)] if k.isdigit() and int(k) < len(d) else None
        elif isinstance(d, dict):
            d = d.setdefault(k, {})
        else:
            return
    last = keys[-1]
    if isinstance(d, list):
        i = int(last) if last.isdigit() else len(d)
        if i < len(d):
            d[i] = value
    elif isinstance(d, dict):
        if delete:
            d.pop(last, None)
        else:
            d[last] = value


def _get_path(d, path):
    for k in path.split("."):
        try:
            d = d[int(k)] if isinstance(d, list) else d[k]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return d


def crc_edit(rng, p: Parsed, salvage: bool) -> str:
    """Change ``p`` in one of many ways; ``build`` then recomputes every CRC. Returns a description."""
    recs = p.records
    kinds = ["meta", "meta_raw", "head", "block", "block+index", "block+index", "range", "swap", "copy", "dup", "drop",
             "model", "payload"]
    if not salvage:
        kinds += ["index", "index", "index_raw", "trailer"]
    kind = kinds[int(rng.integers(len(kinds)))]
    i = int(rng.integers(len(recs)))
    j = int(rng.integers(len(recs)))
    if kind == "meta":
        key = _META_KEYS[int(rng.integers(len(_META_KEYS)))]
        cur = _get_path(p.meta, key)
        if rng.random() < 0.15:
            _set_path(p.meta, key, None, delete=True)
            return f"meta: delete {key}"
        pool = list(_JSON_ODD) + ([_near(rng, cur)] * 4 if isinstance(cur, int) and not isinstance(cur, bool) else [])
        v = pool[int(rng.integers(len(pool)))]
        _set_path(p.meta, key, v)
        return f"meta: {key} = {v!r:.40}"
    if kind == "meta_raw":
        raws = [b"", b"{", b"[]", b"null", b"\xff\xfe", b"[" * 100000 + b"]" * 100000, b'{"dtype": 1' + b"0" * 5000 + b"}",
                json.dumps(p.meta).encode()[:-1], json.dumps(p.meta).encode() + b" ", json.dumps(p.meta).encode() + b"x"]
        k = int(rng.integers(len(raws)))
        p.meta_raw = raws[k]
        return f"meta_raw #{k}"
    if kind == "head":
        if rng.random() < 0.5:
            p.version = int(rng.choice([0, 2, 9, 255, 256, 65535]))
            return f"head: version {p.version}"
        p.reserved = int(rng.choice([1, 0x8000, 0xFFFF]))
        return f"head: reserved {p.reserved}"
    if kind in ("block", "block+index"):
        k = int(rng.choice(list(_BLOCK_FIELDS)))
        r = recs[i]
        v = _header_value(rng, k, r.fields[k], recs[j].fields[k])
        r.fields[k] = v
        what = f"{kind}: block {i} {_BLOCK_FIELDS[k]} = {v}"
        if k in (15, 16):
            r.sync = False
        if k == 17:
            r.sync_crc = False
        if kind == "block+index" and 2 <= k <= 7:
            r.entry[k - 2] = v  # the index entry says the same
        elif kind == "block+index" and k in (9, 10):  # keep centre and shift consistent with the range
            lo, hi = r.fields[9], r.fields[10]
            if 0 <= lo <= hi < (1 << 40):
                shift = 0
                while (hi - lo) >> shift > 255:
                    shift += 1
                r.fields[11], r.fields[12] = lo + ((((hi - lo) >> shift) + 1) // 2 << shift), shift
        return what
    if kind == "range":  # a value range the encoder never writes, centre and shift made to follow it
        r = recs[i]
        lo, hi = r.fields[9], r.fields[10]
        lo, hi = [(lo, lo), (hi, hi), (hi + 1, hi), (lo, 65536), (lo, 1 << 40), (-1, hi), (lo, hi + 1),
                  (lo - 1, hi)][int(rng.integers(8))]
        r.fields[9], r.fields[10] = lo, hi
        if rng.random() < 0.8 and 0 <= lo <= hi:
            shift = 0
            while (hi - lo) >> shift > 255:
                shift += 1
            r.fields[11], r.fields[12] = lo + ((((hi - lo) >> shift) + 1) // 2 << shift), shift
        if rng.random() < 0.3:  # and the constant flag to match
            r.fields[13] = (r.fields[13] | 1) if lo == hi else (r.fields[13] & ~1)
        return f"range: block {i} lo, hi = {lo}, {hi}"
    if kind == "swap" and len(recs) > 1:
        j = (i + 1 + int(rng.integers(len(recs) - 1))) % len(recs)
        recs[i], recs[j] = recs[j], recs[i]
        if rng.random() < 0.5:  # the index follows the records (their own entries) or keeps the old order
            recs[i].entry, recs[j].entry = recs[j].entry, recs[i].entry
        return f"swap records {i} {j}"
    if kind == "copy":  # one tile record replaced by a copy of another
        keep_entry = recs[i].entry
        recs[i] = copy.deepcopy(recs[j])
        if rng.random() < 0.5:
            recs[i].entry = keep_entry
        return f"record {i} replaced by a copy of {j}"
    if kind == "dup":
        recs.insert(i, copy.deepcopy(recs[j]))
        return f"copy of record {j} inserted at {i}"
    if kind == "drop" and len(recs) > 1:
        del recs[i]
        return f"record {i} dropped"
    if kind == "model":
        r = recs[i]
        if not r.model:
            r.payload = r.payload[:-4] if r.payload else b"\0\0\0\0"
            return f"block {i}: payload shortened (no model)"
        if p.version >= 6:  # format 6: the block's 16 parameter bytes
            raw = bytearray(r.model)
            how = int(rng.integers(4))
            if how == 0:
                raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
            elif how == 1:
                raw[int(rng.integers(len(raw)))] = int(rng.choice([0, 1, 2, 4, 8, 10, 16, 24, 40, 48, 64, 255]))
            elif how == 2:
                raw += bytes(int(rng.integers(1, 4)))
            else:
                del raw[-int(rng.integers(1, 4)):]
            r.model = bytes(raw)
            return f"block {i}: parameter edit {how}"
        raw = bytearray(zlib.decompress(r.model))
        how = int(rng.integers(7))
        if how == 0:
            raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        elif how == 1:  # an exponent
            raw[1 + int(rng.integers(6))] = int(rng.choice([0, 1, 20, 21, 255]))
        elif how == 2:  # bmu / bsc
            struct.pack_into("<q", raw, 7 + 8 * int(rng.integers(2)), int(rng.choice([(1 << 53) + 1, -(1 << 63), 1 << 62, 5])))
        elif how == 3:
            raw[0] = int(rng.choice([0, 1, 2, 255]))
        elif how == 4:
            raw += bytes(int(rng.integers(1, 40)))
        elif how == 5:
            del raw[-int(rng.integers(1, 40)):]
        else:  # a zlib bomb: 64 MiB of zeros in a model section
            r.model = zlib.compress(bytes(64 << 20), 9)
            return f"block {i}: model section is a zlib bomb"
        r.model = zlib.compress(bytes(raw), int(rng.integers(0, 10)))
        return f"block {i}: model edit {how}"
    if kind == "payload":
        r = recs[i]
        how = int(rng.integers(5))
        pl = bytearray(r.payload)
        if how == 0 and pl:
            pl[int(rng.integers(len(pl)))] ^= 1 << int(rng.integers(8))
        elif how == 1:
            pl = pl[:4 * int(rng.integers(0, len(pl) // 4 + 1))]
        elif how == 2:
            pl = bytearray(4)  # one zero word: decodes forever as zeros past its end
        elif how == 3:
            pl += rng.integers(0, 256, 4 * int(rng.integers(1, 50)), dtype=np.uint8).tobytes()
        else:
            pl += bytes(int(rng.integers(1, 4)))
        r.payload = bytes(pl)
        return f"block {i}: payload edit {how}"
    if kind == "index":
        how = int(rng.integers(8))
        if how == 0:
            a = int(rng.integers(3))
            v = [_near(rng, p.shape[a]), 0, 1 << 31, (1 << 20) + 1, -1, "3", None][int(rng.integers(7))]
            p.shape[a] = v
            return f"index: shape[{a}] = {v!r}"
        if how == 1:
            p.shape = [[], [1, 2], p.shape + [1], p.shape[:2]][int(rng.integers(4))]
            return f"index: shape = {p.shape!r}"
        if how == 2:
            p.index_edit = lambda ix: ix.__setitem__("blocks", [])
            return "index: no blocks"
        if how == 3:
            p.index_edit = lambda ix: ix["blocks"].pop(i)
            return f"index: entry {i} removed"
        if how == 4:
            p.index_edit = lambda ix: ix["blocks"].insert(i, list(ix["blocks"][j]))
            return f"index: entry {j} duplicated at {i}"
        if how == 5:
            def swap(ix):
                b = ix["blocks"]
                b[i], b[j] = b[j], b[i]
            p.index_edit = swap
            return f"index: entries {i} {j} swapped"
        if how == 6:
            p.index_edit = lambda ix: ix["blocks"][i].append(0) if rng.random() < 0.5 else ix["blocks"][i].pop()
            return f"index: entry {i} of the wrong length"
        f = int(rng.integers(len(_ENTRY_FIELDS)))
        pool = list(_JSON_ODD) + [0, 1, 84, -84, 1 << 40]

        def edit(ix):
            e = ix["blocks"][i]
            v = pool[int(rng.integers(len(pool)))] if rng.random() < 0.4 else (
                not e[f] if f == 10 else e[f] + int(rng.choice([-1, 1, -4, 4, 84, -84, 6, -6, 12, 24])))
            e[f] = v
        p.index_edit = edit
        return f"index: entry {i} {_ENTRY_FIELDS[f]}"
    if kind == "index_raw":
        raws = [b"", b"{", b"[]", b"null", b'{"shape":[1,1,1]}', b'{"shape":[0,24,24],"blocks":[]}',
                b"[" * 100000, b'{"shape":[1' + b"0" * 5000 + b',1,1],"blocks":[]}']
        k = int(rng.integers(len(raws)))
        p.index_raw = raws[k]
        return f"index_raw #{k}"
    if kind == "trailer":
        if rng.random() < 0.3:
            p.trailer_magic = b"VXCEND02"
            return "trailer: end magic"
        delta = [-1, 1, -8, 8, -84, 84, -(1 << 20), 1 << 40]
        p.trailer_offset = -1 - int(rng.integers(len(delta)))  # resolved in make_case
        return f"trailer: offset {delta[-1 - p.trailer_offset]:+d}"
    return crc_edit(rng, p, salvage)  # a kind that did not apply: draw again


def random_damage(rng, data: bytes) -> tuple[bytes, str]:
    b = bytearray(data)
    n = len(b)
    if n == 0:  # nothing to damage: bytes where there were none
        m = int(rng.integers(1, 100))
        return rng.integers(0, 256, m, dtype=np.uint8).tobytes(), f"{m} random bytes"
    how = int(rng.integers(9))
    if how == 0:
        k = int(rng.integers(1, 9))
        for _ in range(k):
            pos = int(rng.integers(n))
            b[pos] ^= 1 << int(rng.integers(8))
        return bytes(b), f"{k} bit flips"
    if how == 1:
        a = int(rng.integers(n))
        m = int(rng.integers(1, 64))
        b[a:a + m] = rng.integers(0, 256, len(b[a:a + m]), dtype=np.uint8).tobytes()
        return bytes(b), f"overwrite {m} at {a}"
    if how == 2:
        cut = int(rng.integers(n))
        return bytes(b[:cut]), f"truncate at {cut}"
    if how == 3:
        a = int(rng.integers(n + 1))
        m = int(rng.integers(1, 64))
        b[a:a] = rng.integers(0, 256, m, dtype=np.uint8).tobytes()
        return bytes(b), f"insert {m} at {a}"
    if how == 4:
        a = int(rng.integers(n))
        m = int(rng.integers(1, 200))
        del b[a:a + m]
        return bytes(b), f"delete {m} at {a}"
    if how in (5, 6):  # copy a byte range over another place, or insert a copy
        a, t = int(rng.integers(n)), int(rng.integers(n))
        m = int(rng.integers(1, 2000))
        piece = bytes(b[a:a + m])
        if how == 5:
            b[t:t + len(piece)] = piece
        else:
            b[t:t] = piece
        return bytes(b), f"{'copy' if how == 5 else 'insert copy'} {len(piece)} from {a} to {t}"
    if how == 7:
        m = int(rng.integers(1, 100))
        return bytes(b) + rng.integers(0, 256, m, dtype=np.uint8).tobytes(), f"append {m}"
    a = int(rng.integers(n))
    m = int(rng.integers(1, 300))
    b[a:a + m] = bytes(len(b[a:a + m]))
    return bytes(b), f"zero {m} at {a}"


@dataclass
class Case:
    i: int
    stream: int
    data: bytes
    salvage: bool
    family: str
    what: str
    read: tuple = ("all",)


def _records_end(data: bytes) -> int:
    c = _structs()
    return c._TRAILER.unpack_from(data, len(data) - c._TRAILER.size)[0]


def make_case(streams: list[Stream], parsed: list[Parsed], seed: int, i: int) -> Case:
    rng = np.random.default_rng([seed, i])
    k = int(rng.integers(len(streams)))
    st = streams[k]
    salvage = rng.random() < 0.33
    family = "crc" if rng.random() < 0.5 else "random"
    if family == "crc":
        p = copy.deepcopy(parsed[k])
        what = crc_edit(rng, p, salvage)
        if p.trailer_offset is not None and p.trailer_offset < 0:
            delta = [-1, 1, -8, 8, -84, 84, -(1 << 20), 1 << 40][-1 - p.trailer_offset]
            p.trailer_offset = None
            _, at = build(p)
            p.trailer_offset = max(0, at + delta)
        data, at = build(p)
    else:
        data, at, what = st.data, _records_end(st.data), ""
    if salvage:  # an interrupted write: no block index, perhaps a record cut short
        cut = at if rng.random() < 0.4 else int(rng.integers(min(at, len(data)) + 1))
        data = data[:cut]
        what = f"{what}; cut at {cut}" if what else f"cut at {cut}"
    if family == "random":
        data, w = random_damage(rng, data)
        what = f"{what}; {w}" if what else w
    z, y, x = st.volume.shape
    r = rng.random()
    if r < 0.15:
        z0, y0, x0 = (int(rng.integers(n)) for n in (z, y, x))
        read = ("region", z0, int(rng.integers(z0 + 1, z + 1)), y0, int(rng.integers(y0 + 1, y + 1)), x0,
                int(rng.integers(x0 + 1, x + 1)))
    elif r < 0.25:
        read = ("block", int(rng.integers(8)))
    else:
        read = ("all",)
    return Case(i, k, data, salvage, family, what, read)


# -- one case ------------------------------------------------------------------------------------------

def run_case(case: Case, st: Stream, model=None) -> tuple[str, str]:
    """``(outcome, detail)`` of decoding one case."""
    import voxcodec

    try:
        with voxcodec.Decoder(case.data, salvage=case.salvage, shared_model=model) as dec:
            kind = case.read[0]
            if kind == "all":
                out = dec.read()
                want = st.volume[:out.shape[0]] if case.salvage else st.volume
                full = out.shape[1:] == st.volume.shape[1:] and (case.salvage or out.shape == st.volume.shape)
            elif kind == "region":
                z0, z1, y0, y1, x0, x1 = case.read[1:]
                if case.salvage and z1 > dec.shape[0]:
                    z1 = max(z0, dec.shape[0])
                out = dec[z0:z1, y0:y1, x0:x1]
                want = st.volume[z0:z1, y0:y1, x0:x1]
                full = dec.shape[1:] == st.volume.shape[1:] and (case.salvage and dec.shape[0] <= st.volume.shape[0]
                                                                 or dec.shape == st.volume.shape)
            else:
                b = case.read[1] % max(len(dec.index), 1)
                if not dec.index:  # nothing to read (a salvage that recovered no block)
                    out = want = st.volume[:0]
                    full = True
                else:
                    out = dec.read_block(b)
                    e = dec.index[b]
                    want = st.volume[e.z0:e.z0 + e.depth, e.y0:e.y0 + e.h, e.x0:e.x0 + e.w]
                    full = True  # a block outside the original volume gives a smaller ``want``
    except voxcodec.VoxcodecError as exc:
        if isinstance(exc.__cause__, MemoryError):  # "not enough memory": over the worker's bound
            return "OVER MEMORY", str(exc)[:200]
        return type(exc).__name__, str(exc)[:200]
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - PanicException, MemoryError, anything
        return f"UNDOCUMENTED {type(exc).__module__}.{type(exc).__name__}", f"{exc!s:.200}"
    ok = full and out.dtype == st.volume.dtype and out.shape == want.shape and np.array_equal(out, want)
    if case.salvage and out.size == 0:
        ok = True  # nothing recovered, no voxel to be wrong (dtype and slice shape are the header's: no record
        # contradicts an edited header when none is complete)
    return ("exact", "") if ok else ("SILENT WRONG", f"{kind}: got {out.shape} {out.dtype}")


# -- workers ------------------------------------------------------------------------------------------

def _vm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def worker(streams_path: str, seed: int, cases: list[int], memory_mb: int):
    """Run cases, one line each on stdout: ``i <TAB> outcome <TAB> seconds <TAB> detail``."""
    import resource

    import voxcodec  # noqa: F401  (imports before the address space is capped)
    from voxcodec.core.legacy.network import BlockModel

    with open(streams_path, "rb") as f:
        streams = [Stream(*t) for t in pickle.load(f)]
    parsed = [parse(s.data) for s in streams]
    models = [BlockModel.from_text(s.shared) if s.shared else None for s in streams]
    # warm up every code path once (lazy imports, caches) before capping the address space
    for s, m in zip(streams, models):
        voxcodec.Decoder(s.data, shared_model=m).read()
    vm = _vm_bytes()
    if vm is not None and memory_mb > 0:
        limit = vm + (memory_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    selftest = dict(item.split(":") for item in os.environ.get("VOXCODEC_FUZZ_SELFTEST", "").split(",") if item)
    for i in cases:
        t0 = time.perf_counter()
        case = make_case(streams, parsed, seed, i)
        st = streams[case.stream]
        test = selftest.get(str(i))
        if test is None:
            outcome, detail = run_case(case, st, models[case.stream])
        else:  # the harness's own check: each failure it must detect, on purpose
            case.what, case.family = f"selftest {test}", "selftest"
            if test == "hang":
                time.sleep(3600)
            elif test == "crash":
                os.abort()
            elif test == "wrong":  # the pristine stream, compared with other voxels
                case.data, case.salvage, case.read = st.data, False, ("all",)
                outcome, detail = run_case(case, Stream(st.name, st.data, st.volume ^ 1, st.shared), models[case.stream])
            else:  # "memory": twice the allowance
                try:
                    np.ones(2 * (memory_mb << 20), np.uint8)
                    outcome, detail = "exact", "allocated"
                except MemoryError as exc:
                    outcome, detail = f"UNDOCUMENTED {type(exc).__name__}", str(exc)
        dt = time.perf_counter() - t0
        mode = "salvage" if case.salvage else "normal"
        detail = f"[{st.name} {mode} {case.family}: {case.what}; read {case.read}] {detail}"
        out.write(f"{i}\t{outcome}\t{dt:.4f}\t{case.family}\t{mode}\t{json.dumps(detail)}\n")
        out.flush()


@dataclass
class Result:
    counts: Counter = field(default_factory=Counter)
    by_family: Counter = field(default_factory=Counter)  # (family, outcome): "random" damage or "crc" edits
    by_mode: Counter = field(default_factory=Counter)  # (mode, outcome): "normal" or "salvage" decoding
    failures: list = field(default_factory=list)  # (case, outcome, detail)
    max_seconds: float = 0.0
    elapsed: float = 0.0
    count: int = 0

    @property
    def bad(self) -> dict:
        return {k: v for k, v in self.counts.items() if k.startswith(BAD)}


class _Worker:
    def __init__(self, streams_path, seed, cases, memory_mb):
        self.cases = list(cases)
        self.args = (streams_path, seed, memory_mb)
        self.proc = None
        self._start()

    def _start(self):
        streams_path, seed, memory_mb = self.args
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", streams_path, "--seed", str(seed),
               "--memory-mb", str(memory_mb), "--cases", ",".join(map(str, self.cases))]
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, "1")
        env.setdefault("RUST_BACKTRACE", "0")
        self.log = open(streams_path + f".{os.getpid()}.{id(self)}.log", "wb")  # panics print there
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.buf = b""
        self.ready = False
        self.since = time.monotonic()

    def kill_and_skip(self):
        """The pending case failed (hang or crash): kill the worker, go on with the next case."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.cases = self.cases[1:]
        if self.cases:
            self._start()
        else:
            self.proc = None


def run(count: int = 2000, seed: int = 0, jobs: int = 1, timeout: float = 10.0, memory_mb: int = 256,
        start: int = 0, streams: list[Stream] | None = None, progress=None) -> Result:
    """Decode ``count`` cases (``start`` .. ``start + count - 1``) in ``jobs`` worker processes."""
    t0 = time.perf_counter()
    streams = make_streams() if streams is None else streams
    res = Result(count=count)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "streams.pkl")
        with open(path, "wb") as f:
            pickle.dump([(st.name, st.data, st.volume, st.shared) for st in streams], f)
        ids = list(range(start, start + count))
        workers = [_Worker(path, seed, ids[k::jobs], memory_mb) for k in range(jobs) if ids[k::jobs]]
        done = 0
        while any(w.proc is not None for w in workers):
            live = [w for w in workers if w.proc is not None]
            ready, _, _ = select.select([w.proc.stdout for w in live], [], [], 0.5)
            now = time.monotonic()
            for w in live:
                if w.proc.stdout in ready:
                    chunk = os.read(w.proc.stdout.fileno(), 1 << 16)
                    if chunk:
                        w.buf += chunk
                        while b"\n" in w.buf:
                            line, w.buf = w.buf.split(b"\n", 1)
                            w.since = time.monotonic()
                            if line == b"ready":
                                w.ready = True
                                continue
                            i, outcome, secs, family, mode, detail = line.decode().split("\t", 5)
                            res.counts[outcome] += 1
                            res.by_family[(family, outcome)] += 1
                            res.by_mode[(mode, outcome)] += 1
                            res.max_seconds = max(res.max_seconds, float(secs))
                            if outcome.startswith(BAD):
                                res.failures.append((int(i), outcome, json.loads(detail)))
                            w.cases = w.cases[1:]
                            done += 1
                            if progress is not None:
                                progress(done, count)
                        if not w.cases:
                            w.proc.wait()
                            w.proc.stdout.close()
                            w.proc = None
                        continue
                    # end of output: the worker died
                    rc = w.proc.wait()
                    if not w.ready:
                        with open(w.log.name, "rb") as f:
                            tail = f.read()[-3000:].decode(errors="replace")
                        raise RuntimeError(f"fuzz worker failed to start (exit status {rc}):\n{tail}")
                    res.counts["CRASH"] += 1
                    res.failures.append((w.cases[0], "CRASH", f"worker exit status {rc}"))
                    done += 1
                    w.kill_and_skip()
                elif w.ready and now - w.since > timeout or not w.ready and now - w.since > max(120, timeout):
                    if not w.ready:
                        w.proc.kill()
                        raise RuntimeError("fuzz worker did not start")
                    res.counts["HANG"] += 1
                    res.failures.append((w.cases[0], "HANG", f"no answer within {timeout} s"))
                    done += 1
                    w.kill_and_skip()
    res.elapsed = time.perf_counter() - t0
    return res


def report(res: Result) -> str:
    lines = [f"{res.count} cases in {res.elapsed:.1f} s (slowest case {res.max_seconds * 1000:.0f} ms)", "",
             "| outcome | cases | random damage | CRC-consistent edits | normal decoding | salvage decoding |",
             "|---|---|---|---|---|---|"]
    for outcome, n in sorted(res.counts.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {outcome} | {n} | {res.by_family[('random', outcome)]} | {res.by_family[('crc', outcome)]} | "
                     f"{res.by_mode[('normal', outcome)]} | {res.by_mode[('salvage', outcome)]} |")
    for bad in BAD:
        if not any(k.startswith(bad) for k in res.counts):
            lines.append(f"| {bad} | 0 | 0 | 0 | 0 | 0 |")
    lines.append("")
    lines.append("(a hang or crash kills its worker before it reports the case's family: those columns count "
                 "only reported cases)")
    if res.failures:
        lines += ["", "failures (reproduce with --case N):"]
        lines += [f"  case {i}: {o}: {d}" for i, o, d in res.failures[:50]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first case number")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds a case may take before it counts as a hang")
    ap.add_argument("--memory-mb", type=int, default=256, help="address space a worker may add while decoding")
    ap.add_argument("--case", type=int, help="run one case in this process and show its traceback")
    ap.add_argument("--worker", metavar="STREAMS", help=argparse.SUPPRESS)
    ap.add_argument("--cases", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.worker, a.seed, [int(i) for i in a.cases.split(",") if i], a.memory_mb)
        return 0
    if a.case is not None:
        import voxcodec
        from voxcodec.core.legacy.network import BlockModel

        streams = make_streams()
        case = make_case(streams, [parse(s.data) for s in streams], a.seed, a.case)
        st = streams[case.stream]
        print(f"case {a.case}: {st.name}, {'salvage' if case.salvage else 'normal'}, {case.family}: {case.what}; "
              f"read {case.read}")
        print(run_case(case, st, BlockModel.from_text(st.shared) if st.shared else None))
        try:
            voxcodec.Decoder(case.data, salvage=case.salvage,
                             shared_model=BlockModel.from_text(st.shared) if st.shared else None).read()
        except Exception:
            traceback.print_exc()
        return 0
    last = [0.0]

    def progress(done, total):
        if time.monotonic() - last[0] > 5 or done == total:
            last[0] = time.monotonic()
            print(f"  {done}/{total}", file=sys.stderr, flush=True)

    res = run(a.count, a.seed, a.jobs, a.timeout, a.memory_mb, a.start, progress=progress)
    print(f"python bench/fuzz.py --count {a.count} --seed {a.seed} --jobs {a.jobs} --timeout {a.timeout} "
          f"--memory-mb {a.memory_mb}\n")
    print(report(res))
    return 1 if res.bad else 0


if __name__ == "__main__":
    sys.exit(main())
