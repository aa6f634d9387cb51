"""Resuming an interrupted encode (Encoder(resume=True)): the complete blocks of the partial stream are
kept and not coded again, the rest is coded on, and the result is byte-identical to an uninterrupted
encode when the training checkpoint is there (exact in any case)."""

import os

import numpy as np
import pytest

import voxcodec
from voxcodec import Encoder, InputError, UnsupportedError
from voxcodec.core.resume import state_path

KW = dict(dtype="uint8", block_depth=3, train="always", threads=1, fit_options={"steps": 30, "warm_steps": 15})


def _encode(path, vol, **kw):
    with Encoder(path, slice_shape=vol.shape[1:], **{**KW, **kw}) as enc:
        enc.write(vol)
    return enc


def _crash_after(path, vol, slices, **kw):
    """An encode killed after ``slices`` slices were written to it (no index, buffered slices lost)."""
    enc = Encoder(path, slice_shape=vol.shape[1:], checkpoint=True, **{**KW, **kw})
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
    assert os.path.exists(state_path(part))
    seen = []
    enc = Encoder(part, slice_shape=vol.shape[1:], resume=True, tile=(64, 32), on_block=seen.append, **KW)
    assert enc.resumed_slices == 6 and enc.resumed_identical
    enc.write(vol)
    enc.close()
    assert [b.resumed for b in seen] == [True] * 4 + [False] * 4  # 2 tiles per layer: 2 layers kept, 2 coded
    assert part.read_bytes() == full.read_bytes()
    assert not os.path.exists(state_path(part))
    np.testing.assert_array_equal(voxcodec.decode(str(part)), vol)


def test_resume_without_checkpoint_is_exact(tmp_path, em_u8):
    vol = em_u8[:10, :48, :48]
    part = tmp_path / "out.vxc.part"
    _crash_after(part, vol, 6)
    os.remove(state_path(part))
    enc = Encoder(part, slice_shape=vol.shape[1:], resume=True, **KW)
    assert enc.resumed_slices == 6 and not enc.resumed_identical
    enc.write(vol)
    enc.close()
    np.testing.assert_array_equal(voxcodec.decode(str(part)), vol)


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


def test_progress_moves_within_a_block(em_u8):
    """One block: progress is reported many times before it is done, and never steps back."""
    seen = []
    enc = Encoder(None, slice_shape=em_u8.shape[1:], on_progress=seen.append, **{**KW, "block_depth": 12})
    enc._last_report = float("inf")  # report every call, not at most every 0.1 s
    enc._report = lambda v, force=False: seen.append(v)
    enc.write(em_u8)
    enc.close()
    inside = [v for v in seen if 0 < v < em_u8.size]
    assert len(inside) >= 10
    assert seen == sorted(seen) and seen[-1] == em_u8.size
