"""The per-pass predictor network and its exact integer inference.

One small network per pass group predicts, for each voxel of a pass, a value (the mean) and a
scale bin.  The network is a 1x1-conv stack over gathered context features (a masked conv):

    v  = centred context values, integers in [-128, 127]
    a1 = clamp(round((W1 v + B1) / 2^s1), 0, 127)        hidden layer 1, int8 weights
    a2 = clamp(round((W2 a1 + B2) / 2^s2), 0, 127)       hidden layer 2, int8 weights
    mu = Wmu a2 + Ws v + Bmu                              value, int8 weights plus a linear skip
                                                          (int8, or int12 with ``skip_bits=12``)
    t  = Wsc a2 + Bsc                                     scale bin (clamped to 0..bins-1)

Every product and partial sum is an integer below 2^24 in magnitude, so the float32 GEMM that
computes them is exact whatever the BLAS, thread count, summation order or device; shifts, rounding
and clamps are done in int32 / int64 numpy, with no overflow.  The bounds (checked by
:meth:`ModelConfig.validate` and :meth:`IntNet.validate`, for every network a stream holds): int8
weights are in [-128, 127], features in [-128, 127] and activations in [0, 127], so a sum of F
products weight x feature is at most F * 128 * 128 (< 2^24 for F <= 1023 inputs; with 12-bit skip
weights the skip's sum is at most F * 2048 * 128, < 2^24 for F <= 63) and a sum of H
products weight x activation at most H * 128 * 127 (< 2^24 for H <= 1032 units); the output biases ``bmu``, ``bsc`` are at most 2^53 in magnitude, so ``mu`` stays below 2^54
and ``mu << shift`` (shift <= 8) below 2^62.
The float model is trained to compute exactly this (quantization-aware training), see
:mod:`voxcodec.core.training`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .context import Pass
from ...errors import CorruptStreamError

#: fractional bits of the hidden activations (a = value * 2^ACT_BITS)
ACT_BITS = 5
#: input scale: a feature value v stands for v / 2^IN_BITS
IN_BITS = 6
#: lowest scale (in centred value units) and scale step per bin (a factor of sqrt(2))
SCALE_MIN = 0.35
EXACT_LIMIT = 2 ** 24
#: largest magnitude of one product in a GEMM: int8 weight (>= -128) times a feature (>= -128)...
MAX_PRODUCT = 128 * 128
#: ...or times an activation (0..127)
MAX_ACT_PRODUCT = 128 * 127
#: largest magnitude of the output biases bmu and bsc (see the module docstring)
MAX_OUT_BIAS = 2 ** 53
#: bits of the linear skip's weights: int8 (every format), or int12 stored as int16 (format 5). A wide
#: skip is a linear interpolation filter over many neighbours; with int8 weights its gain is lost to
#: rounding (measured on cdeep3m: 1.94 bits on D0 with 12-bit weights, 2.97 with 8-bit)
SKIP_BITS = (8, 12)


def group_of(p: Pass) -> str:
    """Passes that share one network: the top lattice, and B/C passes by level (2 and up share)."""
    if p.name == "T":
        return "T"
    return f"{p.name[0]}{min(p.level, 2)}"


@dataclass
class ModelConfig:
    levels: int = 4
    hidden: tuple[int, int] = (8, 8)
    bins: int = 20
    neighbours: int = 12
    #: bits of the linear skip's weights (8 or 12; 12 needs format 5)
    skip_bits: int = 8

    def to_json(self):
        d = {"levels": self.levels, "hidden": list(self.hidden), "bins": self.bins,
             "neighbours": self.neighbours, "act_bits": ACT_BITS, "in_bits": IN_BITS}
        if self.skip_bits != 8:  # absent for 8: configurations (and prior hashes) of earlier formats stay as they were
            d["skip_bits"] = self.skip_bits
        return d

    @classmethod
    def from_json(cls, d, where: str = "model configuration") -> "ModelConfig":
        """The configuration of a stream's file header (``where`` names it in errors), checked with
        :meth:`validate`; anything wrong raises CorruptStreamError."""
        if not isinstance(d, dict):
            raise CorruptStreamError(f"{where} is {type(d).__name__}, not an object")
        if d.get("act_bits", ACT_BITS) != ACT_BITS or d.get("in_bits", IN_BITS) != IN_BITS:
            raise CorruptStreamError("stream uses fixed-point settings this voxcodec does not know")

        def whole(key, v):
            if isinstance(v, bool) or not isinstance(v, int):
                raise CorruptStreamError(f"{where}.{key} is {v!r:.40}, not an integer")
            return v

        try:
            hidden = d["hidden"]
            if not isinstance(hidden, list) or len(hidden) != 2:
                raise CorruptStreamError(f"{where}.hidden is {hidden!r:.40}, not two integers")
            cfg = cls(levels=whole("levels", d["levels"]), hidden=tuple(whole("hidden", h) for h in hidden),
                      bins=whole("bins", d["bins"]), neighbours=whole("neighbours", d.get("neighbours", 12)),
                      skip_bits=whole("skip_bits", d.get("skip_bits", 8)))
        except KeyError as exc:
            raise CorruptStreamError(f"{where}.{exc.args[0]} is missing") from None
        try:
            cfg.validate()
        except ValueError as exc:
            raise CorruptStreamError(f"{where}: {exc}") from None
        return cfg

    def validate(self):
        """Raise ValueError unless the configuration is one voxcodec codes with: the ranges below keep
        every network's sums exact (see the module docstring)."""
        if not 0 <= self.levels <= 6:
            raise ValueError(f"levels must be 0..6, got {self.levels}")
        if len(self.hidden) != 2 or not all(1 <= h <= 64 for h in self.hidden):
            raise ValueError(f"hidden must be two sizes in 1..64, got {self.hidden}")
        if not 2 <= self.bins <= 64:
            raise ValueError(f"bins must be in 2..64, got {self.bins}")
        if not 4 <= self.neighbours <= 24:
            raise ValueError(f"neighbours must be in 4..24, got {self.neighbours}")
        if self.skip_bits not in SKIP_BITS:
            raise ValueError(f"skip_bits must be one of {SKIP_BITS}, got {self.skip_bits}")
        # the widest network: a D pass (neighbours + 4 in-slice inputs) with previous-slice inputs
        f = self.neighbours + 4 + 17
        if max(f, *self.hidden) * MAX_PRODUCT >= EXACT_LIMIT or f * skip_product(self.skip_bits) >= EXACT_LIMIT:
            raise ValueError(f"networks of {f} inputs and hidden sizes {self.hidden} are too wide for exact "
                             "float32 inference")  # never with the ranges above

    def raw_model_bytes(self, inter: bool) -> int:
        """Length of a block's model section once decompressed (1 flag byte, then the networks)."""
        from .context import schedule

        groups = {}
        for p in schedule(self.levels, self.neighbours):
            groups.setdefault(group_of(p), p)
        h1, h2 = self.hidden
        n = 1
        for kind in ((False, True) if inter else (False,)):
            for p in groups.values():
                f = n_inputs(p, kind)
                n += (_EXP.size + 16 + h1 * f + h1 * h2 + h2 + f * skip_dtype(self.skip_bits).itemsize + h2
                      + 4 * h1 + 4 * h2)
        return n


def skip_limit(skip_bits: int) -> int:
    """Largest magnitude of a skip weight: 127 (int8) or 2047 (int12)."""
    return (1 << (skip_bits - 1)) - 1


def skip_dtype(skip_bits: int) -> np.dtype:
    """How a model section stores skip weights: int8, or 12-bit values as little-endian int16."""
    return np.dtype(np.int8 if skip_bits == 8 else "<i2")


def skip_product(skip_bits: int) -> int:
    """Largest magnitude of one product skip weight x feature."""
    return (skip_limit(skip_bits) + 1) * 128


_EXP = struct.Struct("<6B")


@dataclass
class IntNet:
    """Integer parameters of one network. Exponents e: float weight = int weight / 2^e."""

    w1: np.ndarray  # int8 (H1, F)
    b1: np.ndarray  # int32 (H1,)   units 2^-(e1 + IN_BITS)
    w2: np.ndarray  # int8 (H2, H1)
    b2: np.ndarray  # int32 (H2,)   units 2^-(e2 + ACT_BITS)
    wmu: np.ndarray  # int8 (H2,)
    ws: np.ndarray  # int8 (F,), or int16 holding 12-bit values (ModelConfig.skip_bits)
    bmu: int  # units 2^-fmu
    wsc: np.ndarray  # int8 (H2,)
    bsc: int  # units 2^-(esc + ACT_BITS)
    e: tuple = (1, 1, 1, 1, 1)  # e1, e2, emu, es, esc
    _f32: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def fmu(self) -> int:
        _, _, emu, es, _ = self.e
        return max(emu + ACT_BITS, es + IN_BITS)

    def validate(self):
        """Check the bounds that make inference exact (see the module docstring): the largest sum of
        every GEMM is below 2^24 (at most 1023 inputs, 1032 hidden units), exponents are 1..20, output
        biases are within +-2^53.  Raises ValueError."""
        h1, f = self.w1.shape
        h2 = self.w2.shape[0]
        if self.w2.shape != (h2, h1) or self.b1.shape != (h1,) or self.b2.shape != (h2,) or \
                self.wmu.shape != (h2,) or self.wsc.shape != (h2,) or self.ws.shape != (f,):
            raise ValueError("network weights have inconsistent shapes")
        # the largest sum of each GEMM: layer 1 and the linear skip sum f products weight x feature
        # (-128 x -128), layer 2 and the outputs h1 and h2 products weight x activation (-128 x 127)
        wide = self.ws.dtype != np.int8
        if wide and (self.ws.dtype != np.int16 or np.abs(self.ws.astype(np.int32)).max(initial=0) > skip_limit(12)):
            raise ValueError("linear skip weights are not 12-bit integers")
        worst = {"layer 1": f * MAX_PRODUCT, "layer 2": h1 * MAX_ACT_PRODUCT, "outputs": h2 * MAX_ACT_PRODUCT,
                 "skip": f * skip_product(12 if wide else 8)}
        for name, top in worst.items():
            if top >= EXACT_LIMIT:
                raise ValueError(f"network too wide for exact float32 inference: {name} sums can reach {top} >= 2^24")
        if len(self.e) != 5 or not all(1 <= e <= 20 for e in self.e):
            raise CorruptStreamError(f"network exponent out of range: {self.e}")
        if not (abs(int(self.bmu)) <= MAX_OUT_BIAS and abs(int(self.bsc)) <= MAX_OUT_BIAS):
            raise ValueError(f"network output bias out of range: {self.bmu}, {self.bsc} (at most 2^53)")

    def _mats(self):
        """float32 weights, and the hidden biases (rounding half added) as int32 column vectors.

        A bias beyond +-2^30 is clipped to +-2^30: with |W v| < 2^24 and shifts of at most 21 bits
        the activation saturates (0 or 127) either way, so the result is unchanged and int32 holds
        every sum."""
        if not self._f32:
            e1, e2 = self.e[0], self.e[1]
            s1 = e1 + IN_BITS - ACT_BITS

            def bias(b, s):
                return (np.clip(b.astype(np.int64), -2 ** 30, 2 ** 30) + (1 << (s - 1))).astype(np.int32)[:, None]

            self._f32.update(
                w1=self.w1.astype(np.float32), w2=self.w2.astype(np.float32),
                wout=np.stack([self.wmu, self.wsc]).astype(np.float32), ws=self.ws.astype(np.float32)[None, :],
                b1=bias(self.b1, s1), b2=bias(self.b2, e2))
        return self._f32

    def kernel_args(self):
        """The network as the compiled kernel (:func:`voxcodec.core.kernels.infer_rows`) takes it:
        float32 weights (the first layer's with the linear skip as an extra row), int32 hidden biases
        with their rounding half (clipped as in :meth:`_mats`), and the shifts of the output stage."""
        if "kernel" not in self._f32:
            m = self._mats()
            e1, e2, emu, es, esc = self.e
            fmu = self.fmu
            self._f32["kernel"] = (
                np.ascontiguousarray(np.concatenate([m["w1"], m["ws"]])), m["b1"][:, 0].copy(),
                e1 + IN_BITS - ACT_BITS, np.ascontiguousarray(m["w2"]), m["b2"][:, 0].copy(), e2,
                np.ascontiguousarray(m["wout"]), fmu - emu - ACT_BITS, fmu - es - IN_BITS, int(self.bmu),
                fmu - IN_BITS, int(self.bsc) + (1 << (esc + ACT_BITS - 1)), esc + ACT_BITS)
        return self._f32["kernel"]

    def infer(self, x: np.ndarray, bins: int, data_shift: int = 0, chunk: int = 1 << 16):
        """Exact integer inference on features ``x`` (F, N) float32 holding integers.

        Returns ``(offset, bin)``: the predicted value relative to the block centre, in data units
        (int64), and the scale bin (int64). Columns are independent, so any chunking gives the
        same result; ``chunk`` only bounds memory.
        """
        m = self._mats()
        e1, e2, emu, es, esc = self.e
        n = x.shape[1]
        off = np.empty(n, np.int64)
        sbin = np.empty(n, np.int64)
        s1 = e1 + IN_BITS - ACT_BITS
        fmu = self.fmu
        sh = fmu - IN_BITS
        for a in range(0, n, chunk):
            xc = x[:, a:a + chunk]
            if xc.shape[0]:
                z1 = (m["w1"] @ xc).astype(np.int32)
            else:
                z1 = np.zeros((self.w1.shape[0], xc.shape[1]), np.int32)
            z1 += m["b1"]
            z1 >>= s1
            a1 = np.clip(z1, 0, 127, out=z1).astype(np.float32)
            z2 = (m["w2"] @ a1).astype(np.int32)
            z2 += m["b2"]
            z2 >>= e2
            a2 = np.clip(z2, 0, 127, out=z2).astype(np.float32)
            out = (m["wout"] @ a2).astype(np.int64)
            mu = out[0] << (fmu - emu - ACT_BITS)
            if xc.shape[0]:
                mu += (m["ws"] @ xc)[0].astype(np.int64) << (fmu - es - IN_BITS)
            mu += self.bmu
            # value units: v = mu / 2^(fmu - IN_BITS); data units: v * 2^data_shift
            mu <<= data_shift
            mu += 1 << (sh - 1)
            mu >>= sh
            off[a:a + chunk] = mu
            t = out[1]
            t += self.bsc + (1 << (esc + ACT_BITS - 1))
            t >>= esc + ACT_BITS
            sbin[a:a + chunk] = np.clip(t, 0, bins - 1, out=t)
        return off, sbin

    # -- serialization -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        parts = [_EXP.pack(*self.e, 0), struct.pack("<qq", int(self.bmu), int(self.bsc))]
        for arr in (self.w1, self.w2, self.wmu, self.ws, self.wsc):
            parts.append(np.ascontiguousarray(arr, skip_dtype(12 if arr.dtype == np.int16 else 8)).tobytes())
        for arr in (self.b1, self.b2):
            parts.append(np.ascontiguousarray(arr, "<i4").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, buf: memoryview, pos: int, n_in: int, hidden, skip_bits: int = 8) -> tuple["IntNet", int]:
        h1, h2 = hidden

        def take(count, dtype):
            nonlocal pos
            size = count * np.dtype(dtype).itemsize
            if pos + size > len(buf):
                raise CorruptStreamError("model section is too short")
            a = np.frombuffer(buf, dtype, count, pos).copy()
            pos += size
            return a

        if pos + _EXP.size + 16 > len(buf):
            raise CorruptStreamError("model section is too short")
        *e, zero = _EXP.unpack_from(buf, pos)
        if zero:
            raise CorruptStreamError("model section is damaged: a network's reserved byte is not 0")
        pos += _EXP.size
        bmu, bsc = struct.unpack_from("<qq", buf, pos)
        pos += 16
        w1 = take(h1 * n_in, np.int8).reshape(h1, n_in)
        w2 = take(h2 * h1, np.int8).reshape(h2, h1)
        wmu = take(h2, np.int8)
        ws = take(n_in, skip_dtype(skip_bits)).astype(np.int16 if skip_bits > 8 else np.int8, copy=False)
        wsc = take(h2, np.int8)
        b1 = take(h1, "<i4").astype(np.int32)
        b2 = take(h2, "<i4").astype(np.int32)
        net = cls(w1, b1, w2, b2, wmu, ws, bmu, wsc, bsc, tuple(e))
        try:
            net.validate()
        except ValueError as exc:
            raise CorruptStreamError(f"model section is damaged: {exc}") from None
        return net, pos


def n_inputs(p: Pass, inter: bool) -> int:
    return len(p.inslice) + (len(p.prev) if inter else 0)


@dataclass
class BlockModel:
    """The networks of one block: ``intra`` (in-slice context only) and optionally ``inter``."""

    config: ModelConfig
    intra: dict  # group -> IntNet
    inter: dict | None  # group -> IntNet, None when the block codes every slice intra

    def groups(self):
        from .context import schedule
        seen = {}
        for p in schedule(self.config.levels, self.config.neighbours):
            seen.setdefault(group_of(p), p)
        return seen  # group -> representative pass

    @property
    def id(self) -> str:
        """Identity of the model (its configuration and weights), as named by streams that use it."""
        import hashlib
        import json

        h = hashlib.sha256(json.dumps(self.config.to_json(), sort_keys=True).encode() + self.to_bytes())
        return h.hexdigest()[:16]

    def to_text(self) -> str:
        """The model as plain JSON-safe text (configuration and base64 weights), for codec configs."""
        import base64
        import json

        return json.dumps({"config": self.config.to_json(), "weights": base64.b64encode(self.to_bytes()).decode()},
                          separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> "BlockModel":
        import base64
        import binascii
        import json

        try:
            d = json.loads(text)
            return cls.from_bytes(base64.b64decode(d["weights"]), ModelConfig.from_json(d["config"]))
        except (ValueError, KeyError, TypeError, binascii.Error, RecursionError) as exc:
            if isinstance(exc, CorruptStreamError):
                raise
            raise CorruptStreamError(f"not a voxcodec model: {exc}") from None

    def intra_only(self) -> "BlockModel":
        """The intra-slice networks alone (a zoo prior used without its inter-slice networks)."""
        return BlockModel(self.config, self.intra, None)

    def raw_bytes(self) -> bytes:
        """The model section before compression: a flag byte (1: inter-slice networks follow), then the
        networks of every pass group, intra-slice first."""
        parts = [bytes([1 if self.inter is not None else 0])]
        for g in self.groups():
            parts.append(self.intra[g].to_bytes())
        if self.inter is not None:
            for g in self.groups():
                parts.append(self.inter[g].to_bytes())
        return b"".join(parts)

    def to_bytes(self) -> bytes:
        return zlib.compress(self.raw_bytes(), 9)

    @property
    def sha256(self) -> str:
        """Content hash of the model (configuration and integer weights, uncompressed): what a stream
        that names a zoo prior checks it against."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.config.to_json(), sort_keys=True).encode() + self.raw_bytes()).hexdigest()

    def delta_bytes(self, prior: "BlockModel") -> bytes:
        """This model as a difference against ``prior`` (same configuration): the bytewise difference
        (mod 256) of the uncompressed sections, zlib-compressed.  Weights a fine-tune left alone are
        zeros, which cost almost nothing."""
        if prior.config != self.config:
            raise ValueError("a model differs from a prior of another configuration")
        a = np.frombuffer(self.raw_bytes(), np.uint8)
        b = _padded(prior.raw_bytes(), a.size)
        return zlib.compress((a - b).tobytes(), 9)

    @classmethod
    def from_delta(cls, data: bytes, prior: "BlockModel") -> "BlockModel":
        """Inverse of :meth:`delta_bytes` (a damaged section raises CorruptStreamError)."""
        diff = np.frombuffer(_inflate(data, prior.config.raw_model_bytes(True)), np.uint8)
        return cls.from_raw((diff + _padded(prior.raw_bytes(), diff.size)).tobytes(), prior.config)

    @classmethod
    def from_bytes(cls, data: bytes, config: ModelConfig) -> "BlockModel":
        """A model section (zlib) for ``config`` (validated by the caller).  Its decompressed length
        is exactly what ``config`` implies, and decompression stops there (no zlib bomb)."""
        return cls.from_raw(_inflate(data, config.raw_model_bytes(True)), config)

    @classmethod
    def from_raw(cls, raw: bytes, config: ModelConfig) -> "BlockModel":
        """Inverse of :meth:`raw_bytes`; raises CorruptStreamError."""
        raw = memoryview(raw)
        if len(raw) < 1 or raw[0] > 1:
            raise CorruptStreamError("model section has a bad flag byte")
        if len(raw) != config.raw_model_bytes(bool(raw[0])):
            raise CorruptStreamError(f"model section is {len(raw)} bytes once decompressed, not the "
                                     f"{config.raw_model_bytes(bool(raw[0]))} its configuration implies")
        pos = 1
        model = cls(config, {}, {} if raw[0] else None)
        for kind in ("intra", "inter"):
            nets = getattr(model, kind)
            if nets is None:
                continue
            for g, p in model.groups().items():
                nets[g], pos = IntNet.from_bytes(raw, pos, n_inputs(p, kind == "inter"), config.hidden,
                                                 config.skip_bits)
        if pos != len(raw):
            raise CorruptStreamError("model section has trailing bytes")
        return model


def _padded(raw: bytes, n: int) -> np.ndarray:
    """The first ``n`` bytes of ``raw``, zero-padded: what a delta is taken against."""
    out = np.zeros(n, np.uint8)
    b = np.frombuffer(raw, np.uint8)[:n]
    out[:b.size] = b
    return out


def _inflate(data: bytes, limit: int) -> bytes:
    """One zlib stream of at most ``limit`` bytes once decompressed (decompression stops there)."""
    try:
        z = zlib.decompressobj()
        raw = z.decompress(data, limit + 1)
        if len(raw) > limit or not z.eof or z.unused_data or z.unconsumed_tail:
            raise CorruptStreamError("model section is damaged: it is not one zlib stream of the size its "
                                     "configuration implies")
    except zlib.error as exc:
        raise CorruptStreamError(f"model section does not decompress: {exc}") from None
    return raw
