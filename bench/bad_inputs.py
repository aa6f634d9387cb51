"""What the command line says to bad inputs: makes each one in a temporary folder, runs the installed
``voxcodec`` on it and prints a markdown table of the message and the exit status.

    python bench/bad_inputs.py > bench/bad_inputs.md
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile


def voxcodec(*args, cwd) -> tuple[int, str]:
    exe = shutil.which("voxcodec") or os.path.join(os.path.dirname(sys.executable), "voxcodec")
    res = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    lines = [line for line in (res.stderr + res.stdout).splitlines() if line.strip()]
    return res.returncode, " / ".join(lines[-2:]) if res.returncode else (lines[-1] if lines else "")


def main() -> int:
    import imagecodecs

    import voxcodec as vc

    vol = vc.sample_volume()
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def case(what, *args):
            cases.append((what, args))

        with tifffile.TiffWriter(d / "pages.tif") as tw:  # one series per page
            for s in vol[:30]:
                tw.write(s)
        case("TIFF written page by page (30 slices): encode", "encode", "pages.tif", "--preset", "fast", "-q")
        case("... then verify against it", "verify", "pages.vxc", "--against", "pages.tif")
        tifffile.imwrite(d / "stack.tif", vol[:30])
        (d / "cut.tif").write_bytes((d / "stack.tif").read_bytes()[:300_000])
        case("truncated TIFF (first 300 kB of a 30-slice stack)", "encode", "cut.tif")
        (d / "acq").mkdir()
        for z, s in enumerate(vol[:12]):
            (d / "acq" / f"s{z}.png").write_bytes(imagecodecs.png_encode(s))
        case("folder s0.png ... s11.png: encode", "encode", "acq", "-o", "acq.vxc", "--preset", "fast", "-q")
        case("... then decode slice 10 and compare with s10.png", "decode", "acq.vxc", "-o", "s10.npy", "--z", "10:11",
             "-q")
        tifffile.imwrite(d / "rgb.tif", np.stack([vol[0]] * 3, -1), photometric="rgb")
        case("RGB image (128, 128, 3)", "encode", "rgb.tif")
        (d / "empty.tif").write_bytes(b"")
        case("empty file", "encode", "empty.tif")
        (d / "text.npy").write_text("1 2 3\n")
        case("text saved as .npy", "encode", "text.npy")
        (d / "bad").mkdir()
        for z, s in enumerate(vol[:4]):
            (d / "bad" / f"s{z}.png").write_bytes(imagecodecs.png_encode(s))
        (d / "bad" / "s2.png").write_bytes((d / "bad" / "s2.png").read_bytes()[:3000])
        case("truncated PNG in a folder", "encode", "bad")
        np.save(d / "f.npy", np.zeros((4, 8, 8), np.float32))
        case("float32 volume", "encode", "f.npy")
        vc_path = d / "s.vxc"
        vc_path.write_bytes(vc.encode(vol, block_depth=16))
        case("decode --z 100:200 of a 64-slice stream", "decode", "s.vxc", "-o", "x.tif", "--z", "100:200")
        case("-o pointing to a folder", "encode", "stack.tif", "-o", ".")
        case("-o in a folder that does not exist", "encode", "stack.tif", "-o", "nowhere/x.vxc")
        case("-o with another extension (warning only)", "decode", "s.vxc", "-o", "back.raw", "-q")
        (d / "head.vxc").write_bytes(vc_path.read_bytes()[:600])
        case("verify --salvage that recovers 0 blocks", "verify", "head.vxc", "--salvage")
        case("a truncated stream without --salvage", "decode", "head.vxc", "-o", "y.tif")
        case("damaged stream (not a .vxc)", "info", "text.npy")
        case("no such command", "encdoe", "stack.tif")
        rows = [(what, *voxcodec(*args, cwd=d)) for what, args in cases]
        same = np.array_equal(np.load(d / "s10.npy")[0], vol[10])
        rows = [(w, rc, msg or ("slice 10 is s10.png" if same else "WRONG SLICE") if "s10" in w else msg)
                for w, rc, msg in rows]
    print("| input | exit | what voxcodec says |\n|---|---:|---|")
    for what, rc, msg in rows:
        print(f"| {what} | {rc} | `{msg.replace('|', '/')}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
