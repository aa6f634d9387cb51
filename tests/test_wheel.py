"""A binary wheel: ``pip wheel .`` builds one (the native engine compiled ahead of time, and the napari
manifest), and installed in a fresh virtual environment, without extras, it round-trips the sample
volume through the command line with neither torch nor numba present."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from test_readme import _checkout_copy

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_round_trips_the_sample(tmp_path):
    src = tmp_path / "src"
    _checkout_copy(src)  # as a fresh clone: no build outputs
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(str(Path(sys.executable).parent)))

    def run(*cmd, cwd=tmp_path):
        res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
        assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        return res.stdout

    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src))
    wheels = list((tmp_path / "dist").glob("voxcodec-*.whl"))
    assert len(wheels) == 1 and "-py3-none-any" not in wheels[0].name  # a binary wheel: it carries the engine
    run(shutil.which("python3") or sys.executable, "-m", "venv", str(tmp_path / "venv"))
    bin_ = tmp_path / "venv" / "bin"
    run(str(bin_ / "pip"), "install", str(wheels[0]))
    run(str(bin_ / "voxcodec"), "sample", "s.tif")
    run(str(bin_ / "voxcodec"), "encode", "s.tif", "-o", "s.vxc", "--preset", "fast")
    run(str(bin_ / "voxcodec"), "verify", "s.vxc", "--against", "s.tif")
    missing = run(str(bin_ / "python"), "-c", "import importlib.util as u; "
                  "print([m for m in ('torch', 'numba', 'constriction') if u.find_spec(m)])")
    assert missing.strip() == "[]"
    # the napari reader's manifest travels in the wheel, and its entry point with it
    found = run(str(bin_ / "python"), "-c", "import importlib.metadata as md, pathlib, voxcodec; "
                "print([e.value for e in md.entry_points(group='napari.manifest') if e.name == 'voxcodec'], "
                "(pathlib.Path(voxcodec.__file__).parent / 'napari.yaml').is_file())")
    assert found.strip() == "['voxcodec:napari.yaml'] True"
