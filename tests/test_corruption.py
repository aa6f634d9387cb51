"""Damaged streams raise CorruptStreamError / TruncatedStreamError naming the block; they never
decode to wrong voxels."""

import numpy as np
import pytest

import voxcodec
from voxcodec import CorruptStreamError, Decoder, TruncatedStreamError
from voxcodec.core.container import HEADER_SIZE


def _decode_or_error(data):
    try:
        return voxcodec.decode(data)
    except CorruptStreamError as exc:
        return exc


def test_every_single_byte_flip_is_caught(em_u8, em_stream):
    data, _ = em_stream
    rng = np.random.default_rng(0)
    dec = Decoder(data)
    # positions in every part: file header, each block header/model/payload, index, trailer
    spots = set(range(0, 40)) | set(range(len(data) - 40, len(data)))
    for e in dec.index:
        spots |= {e.offset + i for i in range(0, HEADER_SIZE + 8)}
        spots |= set(rng.integers(e.offset, e.offset + e.length, 40).tolist())
    for pos in sorted(spots):
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        out = _decode_or_error(bytes(bad))
        if isinstance(out, np.ndarray):  # a flip in slack space (JSON whitespace) may be harmless...
            np.testing.assert_array_equal(out, em_u8)  # ...but then the voxels must be right


def test_payload_damage_names_the_block(em_stream):
    data, _ = em_stream
    e = Decoder(data).index[1]
    bad = bytearray(data)
    bad[e.offset + e.length - 5] ^= 0xFF
    with pytest.raises(CorruptStreamError, match="block 1: block data checksum mismatch") as info:
        voxcodec.decode(bytes(bad))
    assert info.value.block == 1
    # the undamaged block still decodes
    np.testing.assert_array_equal(Decoder(bytes(bad)).read_block(0), voxcodec.decode(data)[:6])


def test_checksum_recomputed_by_an_attacker_still_fails_on_voxels(em_stream):
    """Damage the payload and fix up the data CRC: the voxel checksum must still catch it."""
    import zlib

    data, _ = em_stream
    dec = Decoder(data)
    e = dec.index[0]
    hd = dec.block_header(0)
    bad = bytearray(data)
    body_start = e.offset + HEADER_SIZE
    bad[body_start + hd.model_len + 100] ^= 0x10
    hd.data_crc = zlib.crc32(bytes(bad[body_start:e.offset + e.length]))
    bad[e.offset:e.offset + HEADER_SIZE] = hd.pack()
    with pytest.raises(CorruptStreamError, match="block 0: (the payload is damaged|decoded voxels do not match)"):
        voxcodec.decode(bytes(bad))


def test_truncation_anywhere_raises(em_stream):
    data, _ = em_stream
    for cut in list(range(0, 64, 7)) + list(range(64, len(data), max(len(data) // 60, 1))) + [len(data) - 1]:
        with pytest.raises(CorruptStreamError):
            voxcodec.decode(data[:cut])


def test_truncated_stream_message_says_what_to_do(em_stream):
    data, _ = em_stream
    with pytest.raises(TruncatedStreamError, match="salvage"):
        voxcodec.decode(data[:-30])


def test_salvage_recovers_complete_blocks(em_u8, em_stream):
    data, _ = em_stream
    second = Decoder(data).index[1]
    cut = data[:second.offset + second.length // 2]  # interrupted while writing block 1
    dec = Decoder(cut, salvage=True)
    assert dec.salvaged and dec.shape == (6, 96, 96) and len(dec) == 1
    np.testing.assert_array_equal(dec.read(), em_u8[:6])
    whole = Decoder(data[:second.offset + second.length], salvage=True)  # all blocks, index lost
    np.testing.assert_array_equal(whole.read(), em_u8)


def test_not_a_vxc_stream():
    with pytest.raises(CorruptStreamError, match="not a voxcodec"):
        voxcodec.decode(b"GIF89a" + bytes(100))
    with pytest.raises(CorruptStreamError, match="the file is empty"):
        voxcodec.decode(b"")


def test_future_format_version_is_refused(em_stream):
    data, _ = em_stream
    bad = bytearray(data)
    bad[8] = 9
    with pytest.raises(CorruptStreamError, match="version 9 is not supported"):
        voxcodec.decode(bytes(bad))
