"""A second build of the native engine (voxcodec/core/native/vx6.c), loaded with ctypes: the same C
compiled with other flags (no optimization, the host's ISA, plain C loops without the AVX2 clones and
the SSE2 kernel) must code the same bytes as the extension that pip built.  Used by the exactness tests."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np

NATIVE = Path(__file__).resolve().parents[1] / "voxcodec" / "core" / "native"
#: flag sets of the second builds: -O0, the host's ISA, and -O2 with plain C loops (VX6_NO_DISPATCH: no
#: AVX2 clones, no SSE2 kernel)
BUILDS = {"O0": ["-O0"], "native": ["-O3", "-march=native"], "no-dispatch": ["-O2", "-DVX6_NO_DISPATCH"]}
BASE = ["-std=c99", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC"]


def compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) or shutil.which("cc") or shutil.which("gcc")


class Block(ctypes.Structure):
    _fields_ = [("d", ctypes.c_int), ("h", ctypes.c_int), ("w", ctypes.c_int), ("itemsize", ctypes.c_int),
                ("lo", ctypes.c_int64), ("hi", ctypes.c_int64), ("centre", ctypes.c_int64), ("shift", ctypes.c_int)]


class Params(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("coder", "n_causal", "n_prev", "n_prev2", "interval_log", "forget",
                                                  "ridge", "band_log", "casc", "inputs", "mant", "lr", "limit_log",
                                                  "sparse")]


class Slices(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_void_p), ("start", ctypes.c_void_p), ("values", ctypes.c_void_p)]


class Build:
    """vx6.c compiled with ``flags`` into ``folder``."""

    def __init__(self, folder: Path, flags: list[str]):
        src = sorted(NATIVE.glob("*.[ch]"))
        key = hashlib.sha256(" ".join(flags).encode() + b"".join(p.read_bytes() for p in src)).hexdigest()[:16]
        lib = Path(folder) / f"vx6-{key}.so"
        if not lib.exists():
            subprocess.run([compiler(), *BASE, *flags, "-o", str(lib), str(NATIVE / "vx6.c"), "-lm"], check=True,
                           capture_output=True)
        self.lib = ctypes.CDLL(str(lib))
        self.lib.vx6_parse_params.argtypes = [ctypes.c_char_p, ctypes.POINTER(Params)]
        self.lib.vx6_encode.argtypes = [ctypes.POINTER(Block), ctypes.POINTER(Params), ctypes.c_void_p,
                                        ctypes.POINTER(Slices), ctypes.POINTER(ctypes.c_void_p),
                                        ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
        self.lib.vx6_decode.argtypes = [ctypes.POINTER(Block), ctypes.POINTER(Params), ctypes.c_char_p, ctypes.c_size_t,
                                        ctypes.c_void_p]
        libc = ctypes.CDLL(None)
        self.free = libc.free
        self.free.argtypes = [ctypes.c_void_p]

    def _params(self, raw: bytes) -> Params:
        p = Params()
        assert self.lib.vx6_parse_params(raw, ctypes.byref(p)) == 0
        return p

    @staticmethod
    def _block(data: np.ndarray, lo, hi, centre, shift) -> Block:
        d, h, w = data.shape
        return Block(d, h, w, data.itemsize, lo, hi, centre, shift)

    def encode(self, data: np.ndarray, params_raw: bytes) -> bytes:
        from voxcodec.core import learn

        data = np.ascontiguousarray(data)
        lo, hi, centre, shift = learn.value_range(data)
        kinds, starts, values = learn.slice_headers(data, lo, hi)
        sl = Slices(kinds.ctypes.data, starts.ctypes.data, values.ctypes.data)
        out, n = ctypes.c_void_p(), ctypes.c_size_t()
        err = self.lib.vx6_encode(ctypes.byref(self._block(data, lo, hi, centre, shift)),
                                  ctypes.byref(self._params(params_raw)), data.ctypes.data, ctypes.byref(sl),
                                  ctypes.byref(out), ctypes.byref(n), None)
        assert err == 0, err
        try:
            return ctypes.string_at(out, n.value)
        finally:
            self.free(out)

    def decode(self, payload: bytes, like: np.ndarray, params_raw: bytes) -> np.ndarray:
        from voxcodec.core import learn

        lo, hi, centre, shift = learn.value_range(like)
        out = np.empty_like(like)
        err = self.lib.vx6_decode(ctypes.byref(self._block(like, lo, hi, centre, shift)),
                                  ctypes.byref(self._params(params_raw)), payload, len(payload), out.ctypes.data)
        assert err == 0, err
        return out


def builds(folder) -> dict[str, Build]:
    os.makedirs(folder, exist_ok=True)
    return {name: Build(Path(folder), flags) for name, flags in BUILDS.items()}
