"""Build the native engine (voxcodec/core/native): plain C, compiled ahead of time by ``pip install``.

Exactness needs IEEE-754 double arithmetic as written: no FMA contraction and no -ffast-math (the
least-squares solve of format 6 must give the same bits on every machine).  Extra flags (a second
build for the exactness tests, say) come from VOXCODEC_CFLAGS."""

import os
import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    flags = ["/O2", "/fp:precise"]
else:
    flags = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math", "-fno-math-errno"]
flags += os.environ.get("VOXCODEC_CFLAGS", "").split()

setup(ext_modules=[Extension("voxcodec.core._native",
                             sources=["voxcodec/core/native/module.c", "voxcodec/core/native/vx6.c"],
                             depends=["voxcodec/core/native/vx6.h", "voxcodec/core/native/logistic.h"],
                             extra_compile_args=flags)])
