"""Regression tests for the decoder-hardening findings (16,000 mutated streams): every one of them gave
wrong voxels, an undocumented exception, a huge allocation or a hang before the decoder checked each
field against its limits.  Edits are CRC-consistent (bench/fuzz.py parses a stream, changes it and
recomputes every checksum), so only the field checks can catch them."""

import struct
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

import voxcodec
from voxcodec import CorruptStreamError, Decoder, TruncatedStreamError, VoxcodecError
from voxcodec.core.learn import value_range
from voxcodec.core.container import HEADER_SIZE
from voxcodec.core.legacy.network import EXACT_LIMIT, IntNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from fuzz import build, parse  # noqa: E402


@pytest.fixture(scope="module")
def vol(sample):
    return np.ascontiguousarray(sample[:12, :24, :24])


@pytest.fixture(scope="module")
def stream(vol):
    """2 layers of 6 slices x 2 tiles of 24 x 12: 4 blocks of format 6."""
    return voxcodec.encode(vol, block_depth=6, tile=(24, 12))


@pytest.fixture(scope="module")
def legacy_stream():
    """A format 5 stream of voxcodec 0.5 (its blocks carry their own networks): the legacy reader's checks."""
    return (Path(__file__).parent / "data" / "golden_v5_own.vxc").read_bytes()


def centre_shift(lo, hi):
    """Centre and shift as the encoder derives them from a value range."""
    return value_range(np.array([lo, hi], np.int64))[2:]


def _decode(data, **kw):
    with Decoder(data, **{"workers": 1, **kw}) as dec:
        return dec.read()


def _edited(stream, edit):
    p = parse(stream)
    edit(p)
    return build(p)[0]


def _raises(data, match, **kw):
    """The stream raises a CorruptStreamError matching ``match`` (never wrong voxels or another error)."""
    with pytest.raises(CorruptStreamError, match=match):
        _decode(data, **kw)


# -- silent wrong voxels: the block index was never checked against the blocks -----------------------

def test_index_shape_larger_than_the_blocks(stream):
    """Refused when the stream is opened, before a region is allocated (a read found it already)."""
    for axis, more in ((0, 1), (0, 6), (1, 1), (2, 5)):
        def edit(p, axis=axis, more=more):
            p.shape[axis] += more
        with pytest.raises(CorruptStreamError, match="block index"):
            Decoder(_edited(stream, edit))


def test_empty_block_list(stream):
    def edit(p):
        p.records = []
    _raises(_edited(stream, edit), "lists 0 blocks")
    _raises(_edited(stream, lambda p: setattr(p, "index_edit", lambda ix: ix.__setitem__("blocks", []))),
            "lists 0 blocks")


def test_block_of_depth_zero(stream):
    def edit(p):
        r = p.records[3]
        r.fields[3] = r.entry[1] = 0  # depth 0 in the block header and its index entry
    _raises(_edited(stream, edit), "block 3: block index entry places the block")


@pytest.mark.parametrize("field,delta", [(2, 1), (2, 6), (4, 1), (5, 12), (5, -12)])
def test_shifted_block(stream, field, delta):
    """z0 (2), y0 (4) or x0 (5) moved, in the block header and its index entry alike."""
    def edit(p):
        r = p.records[1]
        r.fields[field] = r.entry[field - 2] = max(0, r.fields[field] + delta)
    _raises(_edited(stream, edit), "block 1: block index entry places the block")


def test_block_header_must_agree_with_its_place(stream):
    """A header that is moved but whose index entry is not, or whose index field is another block's."""
    def moved(p):
        p.records[2].fields[5] = 12
    _raises(_edited(stream, moved), "block 2: block header places the block")

    def renumbered(p):
        p.records[2].fields[1] = 3
    _raises(_edited(stream, renumbered), "block 2: block header field index is 3")


def test_record_copied_over_another(stream):
    """Record 2 replaced by a copy of record 0 (same tile, other layer), the index pointing at it."""
    def edit(p):
        import copy
        p.records[2] = copy.deepcopy(p.records[0])
        p.records[2].entry = list(p.records[2].entry)
    _raises(_edited(stream, edit), "block 2")


def test_records_must_lie_back_to_back(stream):
    def edit(p):
        p.index_edit = lambda ix: ix["blocks"][1].__setitem__(0, ix["blocks"][1][0] + 1)
    _raises(_edited(stream, edit), "block 1: block index field offset")


# -- salvage -----------------------------------------------------------------------------------------

def _interrupted(data):
    """The stream without its block index (an interrupted write)."""
    p = parse(data)
    full, at = build(p)
    assert full == data
    return data[:at]


def test_salvage_of_a_record_replaced_by_a_copy(vol, stream):
    import copy

    for src, dst in ((0, 2), (1, 3), (0, 1), (2, 3)):
        p = parse(stream)
        p.records[dst] = copy.deepcopy(p.records[src])
        cut = _interrupted_from(p)
        _raises(cut, f"block {dst}", salvage=True)
    np.testing.assert_array_equal(_decode(_interrupted(stream), salvage=True), vol)  # the untouched stream


def _interrupted_from(p):
    data, at = build(p)
    return data[:at]


def test_salvage_of_duplicate_and_swapped_records(stream):
    import copy

    p = parse(stream)
    p.records.insert(2, copy.deepcopy(p.records[1]))  # tile 1 of layer 0 twice
    _raises(_interrupted_from(p), "block 2", salvage=True)
    p = parse(stream)
    p.records[0], p.records[1] = p.records[1], p.records[0]
    _raises(_interrupted_from(p), "block 0", salvage=True)


def test_salvage_keeps_whole_layers_only(vol, stream):
    cut = _interrupted(stream)
    dec = Decoder(cut[:len(cut) - 10], salvage=True)  # the last record is incomplete: layer 1 lacks a tile
    assert dec.salvaged and dec.shape == (6, 24, 24) and len(dec) == 2
    np.testing.assert_array_equal(dec.read(), vol[:6])


# -- undocumented failures -----------------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [("model.levels", 7), ("model.neighbours", 2 ** 31), ("model.bins", 10 ** 6),
                                       ("model.hidden", [1040, 8]), ("model.hidden", [8]), ("model", -1),
                                       ("model.bins", "20"), ("dtype", "<i4"), ("dtype", [["a", "<u2"]]),
                                       ("slice_shape", [24]), ("slice_shape", [24, 2 ** 21]), ("tile", [0, 12]),
                                       ("block_depth", 2 ** 40), ("block_depth", 6.0), ("tile", [2 ** 20, 2 ** 20]),
                                       ("shared_model", "abc"), ("priors", [{"id": "em-fib-v2", "sha256": "0" * 64}])])
def test_file_header_fields_are_checked(stream, legacy_stream, key, value):
    if key.startswith("model."):  # the networks' configuration: formats 1 to 5 (format 6 blocks carry their own)
        stream = legacy_stream
    def edit(p):
        d = p.meta
        *path, last = key.split(".")
        for k in path:
            d = d[k]
        d[last] = value
    t0 = time.perf_counter()
    _raises(_edited(stream, edit), "file header")
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("raw", [b"{", b"[" * 100000 + b"]" * 100000, b'{"dtype": 1' + b"0" * 5000 + b"}", b"[]",
                                 b"\xff\xfe"])
def test_malformed_file_header_json(stream, raw):
    _raises(_edited(stream, lambda p: setattr(p, "meta_raw", raw)), "file header")


@pytest.mark.parametrize("raw", [b"{", b"[" * 100000, b'{"shape":[1' + b"0" * 5000 + b',1,1],"blocks":[]}',
                                 b'{"shape":[12,24,24]}', b'{"shape":[12,24],"blocks":[]}', b"null"])
def test_malformed_block_index(stream, raw):
    _raises(_edited(stream, lambda p: setattr(p, "index_raw", raw)), "block index")


@pytest.mark.parametrize("value", [[1, 2], "x", None, 2 ** 40, -1, True])
def test_block_index_entry_fields_are_checked(stream, value):
    def edit(p):
        p.index_edit = lambda ix: ix["blocks"][2].__setitem__(3, value)
    _raises(_edited(stream, edit), "block 2: block index")


def test_index_entry_of_the_wrong_length(stream):
    _raises(_edited(stream, lambda p: setattr(p, "index_edit", lambda ix: ix["blocks"][0].append(0))),
            "block 0: block index entry")


def test_huge_sizes_are_refused_before_allocating(stream):
    """Sizes that asked numpy for 640 MiB to 42 TiB: index shape, block extents."""
    edits = [lambda p: p.shape.__setitem__(1, 2 ** 20),  # (12, 2^20, 24) volume
             lambda p: p.meta.__setitem__("slice_shape", [2 ** 20, 2 ** 20])]

    def tall(p):  # block 0 of height 2^20, in its header and in the index
        r = p.records[0]
        r.fields[6] = r.entry[4] = 2 ** 20

    def deep(p):
        r = p.records[3]
        r.fields[3] = r.entry[1] = 2 ** 31
    for edit in edits + [tall, deep]:
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            _raises(_edited(stream, edit), ".")
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 20 << 20 and time.perf_counter() - t0 < 2


def test_value_range_the_encoder_never_writes(stream):
    """A coded block with lo == hi made constriction panic (pyo3 PanicException, a BaseException)."""
    def edit(p, lo, hi, fix):
        r = p.records[0]
        r.fields[9], r.fields[10] = lo, hi
        if fix:
            r.fields[11], r.fields[12] = centre_shift(lo, hi)
    p0 = parse(stream)
    lo, hi = p0.records[0].fields[9:11]
    for new, fix in [((lo, lo), True), ((hi, hi), True), ((hi + 1, hi), False), ((lo, 300), True), ((-1, hi), False),
                     ((lo, 2 ** 40), True), ((lo, hi), False)]:
        if new == (lo, hi):
            def edit2(p):
                p.records[0].fields[11] += 1  # centre no longer follows the range
            _raises(_edited(stream, edit2), "block 0: block header fields centre, shift")
            continue
        _raises(_edited(stream, lambda p: edit(p, *new, fix)), "block 0: block header field")


def test_range_coder_panics_are_wrapped(monkeypatch):
    """constriction panics (pyo3_runtime.PanicException, a BaseException that escapes ``except
    Exception``) on what the checks now refuse (a coded block with lo == hi: Uniform over 1 value).
    Should one still happen (formats 1 and 2 decode with it) it becomes CorruptStreamError;
    KeyboardInterrupt and SystemExit pass."""
    import constriction

    stream = (Path(__file__).parent / "data" / "golden_v2_listed_u16.vxc").read_bytes()
    vol = _decode(stream)

    from voxcodec.core.legacy import block

    with Decoder(stream) as d:
        model = d.block_model(0)
    dec = constriction.stream.queue.RangeDecoder(np.zeros(1, np.uint32))
    with pytest.raises(BaseException) as info:
        dec.decode(constriction.stream.model.Uniform(), np.array([1], np.int32))
    panic = type(info.value)
    assert panic.__name__ == "PanicException" and not issubclass(panic, Exception)
    with pytest.raises(CorruptStreamError, match="block 0: value range 7..7"):  # refused before constriction
        block.decode_block(b"\0\0\0\0", model, (1, 4, 4), 7, 7, 7, 0, np.uint8, block_index=0)
    for exc, want in ((panic("assertion failed: range > 1"), CorruptStreamError), (KeyboardInterrupt(), KeyboardInterrupt),
                      (SystemExit(3), SystemExit)):
        def boom(*a, exc=exc, **k):
            raise exc
        monkeypatch.setattr(block.rc_palette, "decode", boom)
        with pytest.raises(want) as info:
            _decode(stream)
        if want is CorruptStreamError:
            assert "block 0: entropy decoding failed (the range coder panicked" in str(info.value)
    monkeypatch.undo()
    np.testing.assert_array_equal(_decode(stream), vol)


def test_constant_block_fields(stream, vol):
    """A constant block carries no model or payload; its flags and range must say so."""
    data = voxcodec.encode(np.full((4, 8, 8), 9, np.uint8))
    assert np.array_equal(voxcodec.decode(data), np.full((4, 8, 8), 9, np.uint8))

    def flags(p):
        p.records[0].fields[13] = 9
    _raises(_edited(data, flags), "block 0: constant block")

    def payload(p):
        p.records[0].payload = b"\0\0\0\0"
    _raises(_edited(data, payload), "block 0: constant block")

    def not_constant(p):
        p.records[1].fields[13] |= 1
    _raises(_edited(stream, not_constant), "block 1: block header field flags")


def test_unknown_flags_and_reserved_fields(stream, legacy_stream):
    for k, v, what in ((13, 16, "unknown flag"), (13, 8, "a stored block"), (8, 1, "reserved"),
                       (13, 2, "unknown flag"), (13, 4, "unknown flag"),  # format 6: no inter-slice or shared networks
                       (14, 1, "reserved field is 1")):  # nor zoo priors
        def edit(p, k=k, v=v):
            p.records[1].fields[k] |= v
        _raises(_edited(stream, edit), f"block 1: block header.*{what}")
    for k, v, what in ((13, 16, "unknown flag"), (14, 1, "field prior is 1, but the file header names 0 priors")):
        def edit(p, k=k, v=v):
            p.records[0].fields[k] |= v
        _raises(_edited(legacy_stream, edit), f"block 0: block header.*{what}")
    _raises(_edited(stream, lambda p: setattr(p, "reserved", 1)), "file header reserved field")


def test_format6_model_section_holds_valid_parameters(stream):
    def length(p):
        p.records[0].model += b"\0"
    _raises(_edited(stream, length), "block 0: block header field model_len is 17")

    for i, v in ((0, 9), (1, 7), (2, 41), (15, 1)):
        def edit(p, i=i, v=v):
            raw = bytearray(p.records[0].model)
            raw[i] = v
            p.records[0].model = bytes(raw)
        _raises(_edited(stream, edit), "block 0: the model section .* is not a valid set of format 6 parameters")

    def empty(p):
        p.records[0].model = b""
    _raises(_edited(stream, empty), "block 0: block header field model_len is 0")


def test_zlib_bomb_in_a_model_section(legacy_stream):
    stream = legacy_stream
    def edit(p):
        p.records[0].model = zlib.compress(bytes(256 << 20), 9)  # 256 MiB of zeros in 250 kB
    data = _edited(stream, edit)
    tracemalloc.start()
    try:
        _raises(data, "block 0: model section")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 20 << 20


def test_payload_too_short_for_its_slices(sample):
    """One zero word decodes as zeros forever (constriction reads zeros past the end): a payload must
    hold log2(3) bits per slice (each slice's kind is uniform over 3), so a deep block cannot decode
    for long from a few bytes."""
    a = np.ascontiguousarray(np.concatenate([sample[:, :4, :4]] * 4)[:200])
    data = voxcodec.encode(a, block_depth=200)

    def edit(p):
        p.records[0].payload = b"\0\0\0\0"
    _raises(_edited(data, edit), "block 0: block header field payload_len is 4: too short for 200 slices")


def test_the_hang_of_the_findings_is_gone():
    """A 2 x 32 x 32 stream with model.bins = 10^6 and a block of height 2^20 ran > 120 s at 2 GB
    (voxcodec 0.3; the networks' configuration is checked for the formats that have one)."""
    data = (Path(__file__).parent / "data" / "golden_v3_u16.vxc").read_bytes()

    def edit(p):
        p.meta["model"]["bins"] = 10 ** 6
        r = p.records[0]
        r.fields[6] = r.entry[4] = 2 ** 20
        p.shape[1] = 2 ** 20
    t0 = time.perf_counter()
    _raises(_edited(data, edit), "file header field model: bins")
    assert time.perf_counter() - t0 < 1


def test_a_format6_block_with_a_tiny_payload_stops_early(vol):
    """A tall block whose payload is a few hundred bytes: the decoder stops once it has read past the
    end, in well under a second."""
    def tall(p):
        r = p.records[0]
        r.fields[6] = r.entry[4] = 2 ** 16
        p.shape[1] = 2 ** 16
        p.meta["slice_shape"] = [2 ** 16, 24]
        p.meta["tile"] = [2 ** 16, 24]
    t0 = time.perf_counter()
    with pytest.raises(CorruptStreamError, match="block 0: the payload is damaged"):
        _decode(_edited(voxcodec.encode(vol[:6], block_depth=6), tall))
    assert time.perf_counter() - t0 < 1


def test_decoder_validates_the_model_configuration(legacy_stream):
    stream = legacy_stream
    """hidden = [1040, 8] passed: layer-2 sums then exceed 2^24, where float32 GEMM is not exact."""
    def edit(p):
        p.meta["model"]["hidden"] = [1040, 8]
    _raises(_edited(stream, edit), "file header field model: hidden")


def _net(f, h1, h2, rng=np.random.default_rng(0)):
    def w(*shape):
        return rng.integers(-128, 128, shape).astype(np.int8)
    return IntNet(w(h1, f), np.zeros(h1, np.int32), w(h2, h1), np.zeros(h2, np.int32), w(h2), w(f), 0, w(h2), 0,
                  (1, 1, 1, 1, 1))


@pytest.mark.parametrize("f,h1,h2", [(1024, 8, 8), (1025, 4, 4), (8, 1035, 8), (1, 1033, 1)])
def test_intnet_bound_uses_the_true_worst_case(f, h1, h2):
    """A feature product is at most 128 * 128 (weight -128 times feature -128), an activation product
    128 * 127: 1024 inputs or 1033 hidden units can sum to 2^24.  The old bounds (127 * 128 with the
    skip inputs added to h2, 127 * 127 for layer 2) let 1024 inputs and 1035 hidden units through."""
    with pytest.raises(ValueError, match="too wide"):
        _net(f, h1, h2).validate()
    assert 1024 * 128 * 128 >= EXACT_LIMIT and 1033 * 128 * 127 >= EXACT_LIMIT


def test_intnet_layer_two_at_its_bound_is_exact():
    """1032 hidden units of activations 127 and weights -128 (and odd products): below 2^24, exact."""
    net = _net(1, 1032, 1)
    net.validate()
    w = np.full((1, 1032), -128, np.float32)
    w[0, ::3] = -127
    a = np.full((1032, 1), 127, np.float32)
    assert int((w @ a)[0, 0]) == int((w.astype(np.int64) @ a.astype(np.int64))[0, 0])


def test_intnet_widest_allowed_is_exact():
    """At the bound (1023 inputs / units) every sum is below 2^24: float32 inference equals int64."""
    net = _net(1023, 64, 64)
    net.validate()
    net.w1[:] = -128
    x = np.full((1023, 3), -128, np.float32)
    x[:, 1] = 127
    z = (net.w1.astype(np.float32) @ x).astype(np.int64)
    assert np.array_equal(z, net.w1.astype(np.int64) @ x.astype(np.int64))
    assert np.abs(z).max() < EXACT_LIMIT


def test_output_bias_bound():
    net = _net(8, 8, 8)
    net.bmu = 2 ** 53 + 1
    with pytest.raises(ValueError, match="bias"):
        net.validate()


def test_model_section_fields(legacy_stream):
    stream = legacy_stream
    """Exponents, the reserved byte, biases: checked when the model section is read."""
    for how in range(4):
        def edit(p, how=how):
            raw = bytearray(zlib.decompress(p.records[0].model))
            if how == 0:
                raw[1] = 21  # e1
            elif how == 1:
                raw[6] = 1  # the reserved byte after the exponents
            elif how == 2:
                struct.pack_into("<q", raw, 7, 2 ** 62)  # bmu
            else:
                raw += b"\0"
            p.records[0].model = zlib.compress(bytes(raw))
        _raises(_edited(stream, edit), "block 0: model section")


# -- messages ---------------------------------------------------------------------------------------

def test_empty_file():
    _raises(b"", "^the file is empty$")


def test_foreign_file():
    for data in (b"GIF89a" + bytes(100), b"PK\x03\x04" + bytes(50), b"x"):
        _raises(data, "not a voxcodec stream")


def test_random_bytes_after_the_magic_do_not_ask_for_an_upgrade(stream):
    rng = np.random.default_rng(0)
    for _ in range(50):
        data = stream[:8] + rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
        with pytest.raises(CorruptStreamError) as info:
            _decode(data)
        version = struct.unpack_from("<H", data, 8)[0]
        assert ("upgrade" in str(info.value)) == (1 < version < 256)


def test_future_version_asks_for_an_upgrade(stream):
    _raises(_edited(stream, lambda p: setattr(p, "version", 7)), "format version 7 is not supported.*upgrade voxcodec")
    _raises(_edited(stream, lambda p: setattr(p, "version", 40000)), "^file header is damaged: its format version")


def test_twelve_bit_skips_need_format_5(legacy_stream):
    stream = legacy_stream
    """A format 4 reader would take the int16 skip weights for int8: a format 4 stream may not have them."""
    with voxcodec.Decoder(stream) as dec:
        assert dec.config.skip_bits == 12
    _raises(_edited(stream, lambda p: setattr(p, "version", 4)), "12-bit skip weights in a format 4 stream")


@pytest.mark.parametrize("extra", [b"\0", b"garbage", bytes(1000)])
def test_bytes_appended_after_the_end(stream, extra):
    _raises(stream + extra, f"^{len(extra)} bytes after the end of the stream")


def test_cut_short_still_says_so(stream):
    with pytest.raises(TruncatedStreamError, match="cut short.*salvage"):
        _decode(stream[:-1])
    with pytest.raises(TruncatedStreamError, match="cut short"):
        _decode(stream[:5])  # part of the magic


def test_every_error_is_a_voxcodec_error(stream):
    """The messages above come as VoxcodecError subclasses; nothing else escapes from decoding."""
    for data in (b"", stream + b"x", stream[:8] + bytes(20), stream[:100]):
        with pytest.raises(VoxcodecError):
            _decode(data)


def test_valid_streams_still_decode(stream, vol):
    """What the encoder writes is unchanged by the checks (uint16, constant blocks, tiles, short layers)."""
    np.testing.assert_array_equal(_decode(stream), vol)
    u16 = vol[:9, :20, :20].astype(np.uint16) * 200 + 7
    u16[4:8] = 3
    for kw in (dict(block_depth=4), dict(block_depth=4, tile=(7, 9)), dict(block_depth=9)):
        data = voxcodec.encode(u16, **kw)
        np.testing.assert_array_equal(_decode(data), u16)
    empty = voxcodec.Encoder(None, slice_shape=(8, 8))
    assert _decode(empty.getvalue()).shape == (0, 8, 8)


def test_payload_bound_holds_for_slices_that_cost_almost_nothing():
    """Slices that each cost little more than their kind (log2 3 bits): the payload bound is never hit."""
    a = np.zeros((300, 1, 2), np.uint8)
    a[:, 0, 1] = 1  # each slice holds 0 and 1: a normal slice whose tokens are nearly free
    data = voxcodec.encode(a, block_depth=300)
    hd = Decoder(data).block_header(0)
    assert hd.payload_len * 8 >= 300 * np.log2(3) - 32
    np.testing.assert_array_equal(voxcodec.decode(data), a)
    b = np.zeros((300, 1, 1), np.uint8)
    b[::2] = 1
    np.testing.assert_array_equal(voxcodec.decode(voxcodec.encode(b, block_depth=300)), b)


def test_header_index_check_does_not_read_blocks(stream):
    """Opening checks the index against the layout without decoding (random access stays cheap)."""
    dec = Decoder(stream)
    assert [e.geometry for e in dec.index] == [(0, 6, 0, 0, 24, 12), (0, 6, 0, 12, 24, 12), (6, 6, 0, 0, 24, 12),
                                              (6, 6, 0, 12, 24, 12)]
    assert dec.index[0].offset == dec._header_size and HEADER_SIZE == 84
