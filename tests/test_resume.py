"""Resuming an interrupted encode (Encoder(resume=True)): the complete blocks of the partial stream are
kept and not coded again, the rest is coded on, and the result is byte-identical to an uninterrupted
encode (format 6 blocks depend on nothing before them)."""

import numpy as np
import pytest

import voxcodec
from voxcodec import Encoder, InputError, UnsupportedError

KW = dict(dtype="uint8", block_depth=3)


def _encode(path, vol, **kw):
    with Encoder(path, slice_shape=vol.shape[1:], **{**KW, **kw}) as enc:
        enc.write(vol)
    return enc


def _crash_after(path, vol, slices, **kw):
    """An encode killed after ``slices`` slices were written to it (no index, buffered slices lost)."""
    enc = Encoder(path, slice_shape=vol.shape[1:], **{**KW, **kw})
    enc.write(vol[:slices])
    enc._f.close()  # the process dies here: nothing more reaches the file
    return enc


def test_resume_is_byte_identical_and_skips_complete_blocks(tmp_path, em_u8):
    vol = em_u8[:11, :64, :64]
    full = tmp_path / "full.vxc"
    _encode(full, vol, tile=(64, 32))
    part = tmp_path / "out.vxc.part"
    _crash_after(part, vol, 7, tile=(64, 32))  # two layers (6 slices) complete, one slice buffered
    with open(part, "ab") as f:  # and a block record cut short by the kill
        f.write(b"VXBK" + bytes(40))
    seen = []
    enc = Encoder(part, slice_shape=vol.shape[1:], resume=True, tile=(64, 32), on_block=seen.append, **KW)
    assert enc.resumed_slices == 6
    enc.write(vol)
    enc.close()
    assert [b.resumed for b in seen] == [True] * 4 + [False] * 4  # 2 tiles per layer: 2 layers kept, 2 coded
    assert part.read_bytes() == full.read_bytes()
    np.testing.assert_array_equal(voxcodec.decode(str(part)), vol)


def test_a_stream_of_an_older_format_is_not_resumed(tmp_path):
    from pathlib import Path

    part = tmp_path / "old.vxc.part"
    part.write_bytes((Path(__file__).parent / "data" / "golden_v5_own.vxc").read_bytes())
    with pytest.raises(UnsupportedError, match="format 5 stream"):
        Encoder(part, slice_shape=(64, 72), resume=True, block_depth=8)


def test_resume_refuses_changed_input_and_other_settings(tmp_path, em_u8):
    vol = em_u8[:9, :32, :32]
    part = tmp_path / "out.vxc.part"
    _crash_after(part, vol, 6)
    before = part.read_bytes()
    with pytest.raises(UnsupportedError, match="block_depth"):
        Encoder(part, slice_shape=vol.shape[1:], resume=True, **{**KW, "block_depth": 4})
    with pytest.raises(UnsupportedError, match="preset"):
        Encoder(part, slice_shape=vol.shape[1:], resume=True, preset="fast", **KW)
    assert part.read_bytes() == before  # a refused resume leaves the partial stream alone
    other = vol.copy()
    other[4, 3, 3] ^= 1
    enc = Encoder(part, slice_shape=vol.shape[1:], resume=True, **KW)
    with pytest.raises(InputError, match="the input changed"):
        enc.write(other)
    enc = Encoder(part, slice_shape=vol.shape[1:], resume=True, **KW)
    enc.write(vol[:3])
    with pytest.raises(InputError, match="ended after 3 slices"):
        enc.close()


def test_resume_of_nothing_starts_fresh(tmp_path, em_u8):
    vol = em_u8[:4, :32, :32]
    for content in (None, b"", b"\x89VXC\r\n"):  # no file, an empty one, a header cut short
        part = tmp_path / "out.vxc.part"
        if content is not None:
            part.write_bytes(content)
        enc = _encode(part, vol, resume=True)
        assert enc.resumed_slices == 0
        np.testing.assert_array_equal(voxcodec.decode(str(part)), vol)
        part.unlink()


def test_progress_moves_block_by_block(em_u8):
    """Progress is reported after every block, and never steps back."""
    seen = []
    enc = Encoder(None, slice_shape=em_u8.shape[1:], on_progress=seen.append, **{**KW, "block_depth": 2})
    enc.write(em_u8)
    enc.close()
    assert len(seen) == 6 and seen == sorted(seen) and seen[-1] == em_u8.size
