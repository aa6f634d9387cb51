"""The model zoo: the pretrained network priors that the streams of voxcodec 0.4 and 0.5 name.

Format 4 and 5 blocks could start from a prior, a :class:`~voxcodec.core.legacy.network.BlockModel`
trained once on many EM volumes, instead of carrying their own networks: a stream names the priors
its blocks use by id and content hash (file header field ``priors``), and a block codes with its prior
as it is or carries a small difference against it.  Format 6 (voxcodec 0.6) codes without priors: its
model learns while it codes.  The priors stay in the package so that those streams keep decoding,
and a prior is never changed in place (``tests/test_zoo.py`` holds golden streams).

Each prior is one JSON file ``<id>.json``: its id, content hash (:attr:`BlockModel.sha256`),
configuration, weights (base64 of :meth:`BlockModel.raw_bytes`) and model card.  Priors are looked up
in the package's ``priors`` folder, then in the folders of the ``VOXCODEC_ZOO`` environment variable
(``os.pathsep``-separated) and those given to :func:`add_path`: a later folder may add ids, never
replace one.

    >>> import voxcodec.zoo as zoo
    >>> [p.id for p in zoo.available()]                     # doctest: +SKIP
    ['em-fib-v1', 'em-fib-v2', 'em-general-v1', 'em-general-v2', 'em-section-v1', 'em-section-v2']
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..core.legacy.network import BlockModel, ModelConfig
from ..errors import CorruptStreamError, UnsupportedError

#: the folder of the priors shipped in the package
PACKAGE_DIR = Path(__file__).resolve().parent / "priors"
FORMAT = "voxcodec-prior/1"
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_extra: list[Path] = []
_cache: dict = {}
_broken: dict = {}  # path -> why it is not a prior (named when an id is not found)
_lock = threading.Lock()


@dataclass(frozen=True)
class Prior:
    """One pretrained prior: its stable ``id``, the integer ``model`` and its ``card``."""

    id: str
    model: BlockModel = field(repr=False)
    card: dict = field(repr=False, default_factory=dict)
    path: str = ""

    @property
    def sha256(self) -> str:
        return self.model.sha256

    @property
    def ref(self) -> dict:
        """How a stream names this prior (file header field ``priors``)."""
        return {"id": self.id, "sha256": self.sha256}


def add_path(folder) -> None:
    """Look for priors in ``folder`` too (after the package's and ``VOXCODEC_ZOO``'s)."""
    p = Path(folder).resolve()
    if p not in _extra:
        _extra.append(p)


def search_path() -> list[Path]:
    env = [Path(s).resolve() for s in os.environ.get("VOXCODEC_ZOO", "").split(os.pathsep) if s]
    out = []
    for p in [PACKAGE_DIR, *env, *_extra]:
        if p not in out:
            out.append(p)
    return out


def load(path) -> Prior:
    """Read one prior file; its weights must match its content hash."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
        if d.get("format") != FORMAT:
            raise ValueError(f"format is {d.get('format')!r}, not {FORMAT!r}")
        pid = d["id"]
        if not isinstance(pid, str) or not _ID.match(pid):
            raise ValueError(f"id {pid!r} is not 1-64 letters, digits, '.', '_' or '-'")
        model = BlockModel.from_raw(base64.b64decode(d["weights"], validate=True),
                                    ModelConfig.from_json(d["config"], where="prior configuration"))
    except (OSError, ValueError, KeyError, TypeError, binascii.Error, CorruptStreamError) as exc:
        raise UnsupportedError(f"{path} is not a voxcodec prior: {exc}") from None
    if model.sha256 != d.get("sha256"):
        raise UnsupportedError(f"{path}: prior {pid} does not match its content hash (the file is damaged)")
    return Prior(pid, model, d.get("card", {}), str(path))

def available() -> list[Prior]:
    """Every prior on the search path, by id (the first folder holding an id wins)."""
    found: dict[str, Prior] = {}
    for folder in search_path():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            key = (str(path), path.stat().st_mtime_ns)
            with _lock:
                prior = _cache.get(key)
            if prior is None:
                try:
                    prior = load(path)
                except UnsupportedError as exc:
                    _broken[str(path)] = str(exc)  # another JSON file in a user's folder, or a damaged prior
                    continue
                with _lock:
                    _cache[key] = prior
            found.setdefault(prior.id, prior)
    return [found[k] for k in sorted(found)]


def get(prior_id: str, sha256: str | None = None) -> Prior:
    """The prior ``prior_id`` (with the content hash ``sha256``, if given).  Raises UnsupportedError
    naming what to do when it is not installed or differs."""
    for p in available():
        if p.id == prior_id:
            if sha256 is not None and p.sha256 != sha256:
                raise UnsupportedError(f"prior {prior_id} here has content hash {p.sha256[:16]}..., the stream wants "
                                       f"{sha256[:16]}...: its file ({p.path}) was changed; restore it")
            return p
    where = ", ".join(str(p) for p in search_path())
    broken = [f"{p}: {why}" for p, why in _broken.items() if Path(p).stem == prior_id]
    raise UnsupportedError(f"the model zoo has no prior {prior_id!r} (looked in {where}); install the voxcodec "
                           "version that wrote the stream, or put the prior's .json file in a folder named by "
                           "VOXCODEC_ZOO" + (f" (unreadable: {'; '.join(broken)})" if broken else ""))
