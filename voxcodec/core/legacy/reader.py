"""The blocks of formats 1 to 5 (voxcodec 0.1 to 0.5), for :class:`voxcodec.core.decoder.Decoder`.

A stream of those formats names its network configuration in the file header (``model``); a coded block
carries its networks (zlib-compressed), names a zoo prior (with or without a difference against it), or
uses a shared model given to the decoder.  :class:`LegacyReader` resolves a block's networks and decodes
it with :func:`.block.decode_block` (numba and constriction, imported on the first legacy block: the
``legacy`` extra installs them).
"""

from __future__ import annotations

import numpy as np

from ...errors import CorruptStreamError, UnsupportedError
from ..container import FLAG_INTER, FLAG_SHARED, BlockHeader
from .network import BlockModel, ModelConfig


class LegacyReader:
    """The models of one format 1-5 stream: its file header's configuration, the zoo priors it names (looked
    up once each) and the shared model the caller gave."""

    def __init__(self, meta: dict, version: int, shared_model: BlockModel | None):
        self.meta = meta
        self.version = version
        self.shared_model = shared_model
        self.config = ModelConfig.from_json(meta["model"], where="file header field model")
        if self.config.skip_bits != 8 and version < 5:
            raise CorruptStreamError(f"file header field model has 12-bit skip weights in a format {version} "
                                     "stream (format 5 brought them)")
        shared = meta.get("shared_model")
        if shared is not None and not (isinstance(shared, str) and 1 <= len(shared) <= 64):
            raise CorruptStreamError(f"file header field shared_model is {shared!r:.40}, not a model name")
        self._priors = {}  # k -> the model of the k-th prior the file header names, once looked up

    def decode_block(self, hd: BlockHeader, body: bytes, i: int, coded: np.dtype, out: np.ndarray | None,
                     batch: int | None) -> np.ndarray:
        """Decode coded block ``i`` (its checked header and its model section + payload)."""
        try:  # numba and constriction: loaded only for the streams of voxcodec <= 0.5
            import constriction  # noqa: F401
            import numba  # noqa: F401

            from .block import decode_block
        except ImportError as exc:
            raise UnsupportedError(f"block {i}: this stream is format {self.version} (written by voxcodec 0.5 or "
                                   f"older), whose reader needs numba and constriction ({exc.name} is missing): "
                                   "pip install 'voxcodec[legacy]'") from exc

        model = self.model(hd, body[:hd.model_len], i)
        return decode_block(body[hd.model_len:], model, hd.shape, hd.lo, hd.hi, hd.centre, hd.shift, coded,
                            block_index=i, out=out, batch=batch, version=self.version)

    def model(self, hd: BlockHeader, section: bytes, i: int) -> BlockModel:
        """The model of block ``i`` from its header and model section."""
        if hd.flags & FLAG_SHARED:
            model = self._shared(i)
        elif hd.prior:
            model = self._prior(hd.prior, section, i)
            if not section and not hd.flags & FLAG_INTER:  # the prior's intra-slice networks alone
                model = model.intra_only()
        else:
            try:
                model = BlockModel.from_bytes(section, self.config)
            except CorruptStreamError as exc:
                raise CorruptStreamError(str(exc), i) from None
        if bool(hd.flags & FLAG_INTER) != (model.inter is not None):
            raise CorruptStreamError("block flags disagree with its model", i)
        return model

    def _prior(self, k: int, delta: bytes, i: int) -> BlockModel:
        """The model of a block that names the k-th prior of the file header: the zoo prior itself, or
        with the difference the block carries."""
        from ... import zoo

        ref = self.meta["priors"][k - 1]  # checked by layout_from_meta and BlockHeader.check
        prior = self._priors.get(k)
        if prior is None:
            prior = self._priors[k] = zoo.get(ref["id"], ref["sha256"]).model
        if not delta:
            return prior
        try:
            return BlockModel.from_delta(delta, prior)
        except CorruptStreamError as exc:
            raise CorruptStreamError(str(exc), i) from None

    def _shared(self, i):
        want = self.meta.get("shared_model")
        if want is None:
            raise CorruptStreamError("block refers to a shared model but the stream names none", i)
        if self.shared_model is None:
            raise UnsupportedError(f"this stream was coded with the shared model {want}: pass it as "
                                   "Decoder(..., shared_model=model)")
        if self.shared_model.id != want:
            raise UnsupportedError(f"this stream needs the shared model {want}, not {self.shared_model.id}")
        if self.shared_model.config != self.config:
            raise CorruptStreamError("file header field model differs from the configuration of the shared model "
                                     f"{want} it names", i)
        return self.shared_model
