"""Readers of formats 1 to 5 (voxcodec 0.1 to 0.5): networks per pass group of the multi-pass order,
exact integer inference, range-coded (formats 1-2) or rANS-coded (3-5) residual tokens.

voxcodec writes format 6 (:mod:`voxcodec.core.learn`); these modules only decode older streams.
:func:`voxcodec.core.legacy.block.decode_block` decodes one block; importing this package alone loads
neither numba nor constriction (the decoder imports :mod:`.block` when it meets a legacy block)."""
