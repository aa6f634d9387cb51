"""Every code block of the README and then of docs/usage.md runs as pasted, in order, the way a new
user would run them.

The README is copied with the rest of the checkout into a fresh folder; its first command creates a
fresh virtual environment there and installs voxcodec into it, and every later block runs in that
environment, in that folder: ``bash`` blocks in a shell with the environment activated, ``python``
blocks saved to a file and run with its interpreter. ``text`` blocks are output, not code. A block
after ``<!-- readme-test: ci -->`` is the test command itself: ``.ci/run`` must run it exactly. One
after ``<!-- readme-test: slow -->`` (the benchmarks, minutes each) runs only with ``-m slow``.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<tag>[\w-]+) -->\n)?^```(?P<lang>\w*)\n(?P<code>.*?)^```", re.S | re.M)


DOCS = ("README.md", "docs/usage.md")


def readme_blocks(docs=DOCS):
    """``(tag, language, code, where)`` of every code block, README first."""
    out = []
    for doc in docs:
        text = (ROOT / doc).read_text()
        out += [(m["tag"] or "", m["lang"], m["code"], f"{doc}:{text.count(chr(10), 0, m.start()) + 1}")
                for m in BLOCK.finditer(text)]
    return out


def test_every_block_is_tagged_with_its_language():
    for tag, lang, code, line in readme_blocks():
        assert lang in ("bash", "python", "text"), f"{line}: a code block needs bash, python or text"
    tags = [tag for tag, *_ in readme_blocks(("README.md",))]
    assert tags[:2] == ["fresh-clone", "ci"], "the README opens with the set-up command and the test command"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [code.strip() for tag, _, code, _ in readme_blocks() if tag == "ci"]
    assert commands and all(c in ci.splitlines() for c in commands)


def _checkout_copy(dest: Path):
    """The files of the checkout as a fresh clone would have them (tracked and untracked, not ignored)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _run_blocks(work: Path, include_slow: bool):
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(str(Path(sys.executable).parent)))
    env.setdefault("OMP_NUM_THREADS", "1")
    for i, (tag, lang, code, line) in enumerate(readme_blocks()):
        if lang == "text" or tag == "ci" or (tag == "slow" and not include_slow):
            continue
        if lang == "bash":
            script = code if tag == "fresh-clone" else ". .venv/bin/activate\n" + code
            cmd = ["bash", "-e", "-o", "pipefail", "-c", script]
        else:
            path = work / f"readme_block_{i}.py"
            path.write_text(code)
            cmd = [str(work / ".venv" / "bin" / "python"), path.name]
        res = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
        assert res.returncode == 0, f"block at {line} failed:\n{code}\n--- stdout\n{res.stdout[-3000:]}" \
                                    f"\n--- stderr\n{res.stderr[-3000:]}"


def test_readme_blocks_run_as_pasted(tmp_path):
    work = tmp_path / "voxcodec"
    _checkout_copy(work)
    _run_blocks(work, include_slow=False)
    assert (work / "sample.vxc").exists() and (work / "run.zarr" / "zarr.json").exists()


@pytest.mark.slow
def test_readme_blocks_with_benchmarks_run_as_pasted(tmp_path):
    work = tmp_path / "voxcodec"
    _checkout_copy(work)
    shared = ROOT.parent / "shared"
    if shared.exists():  # the benchmarks read ../shared/data
        os.symlink(shared, tmp_path / "shared")
    _run_blocks(work, include_slow=True)
