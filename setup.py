"""Build the native engine (voxcodec/core/native): plain C, compiled ahead of time by ``pip install``.

Exactness needs IEEE-754 double arithmetic as written: no FMA contraction and no -ffast-math (the
least-squares solve of format 6 must give the same bits on every machine).  Extra flags (a second
build for the exactness tests, say) come from VOXCODEC_CFLAGS."""

import os
import platform
import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    flags = ["/O2", "/fp:precise"]
else:
    flags = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math", "-fno-math-errno"]
    if platform.machine().lower() in ("i386", "i486", "i586", "i686", "x86"):
        flags += ["-msse2", "-mfpmath=sse"]  # x87's 80-bit registers would round the solve differently
flags += os.environ.get("VOXCODEC_CFLAGS", "").split()

setup(ext_modules=[Extension("voxcodec.core._native",
                             sources=["voxcodec/core/native/module.c", "voxcodec/core/native/vx6.c"],
                             depends=["voxcodec/core/native/vx6.h", "voxcodec/core/native/logistic.h"],
                             extra_compile_args=flags)])
