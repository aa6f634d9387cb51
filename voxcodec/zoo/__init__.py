"""The model zoo: pretrained priors that blocks start from instead of training from scratch.

A prior is a :class:`~voxcodec.core.network.BlockModel` (int8 weights, exact integer inference)
trained once on many EM volumes (:mod:`voxcodec.zoo.train`).  Its weights live in the package, not
in the streams: a stream names the priors its blocks use by id and content hash (file header field
``priors``), and a block either codes with its prior as is or carries a small, compressed
difference against it (a fine-tune).  A prior is never changed in place: new weights get a new id,
and every released id stays decodable (``tests/test_zoo.py`` holds golden streams).

Each prior is one JSON file ``<id>.json``: its id, content hash (:attr:`BlockModel.sha256`),
configuration, weights (base64 of :meth:`BlockModel.raw_bytes`) and model card (training volumes and
their licences, parameters, measured bits).  Priors are looked up in the package's ``priors``
folder, then in the folders of the ``VOXCODEC_ZOO`` environment variable (``os.pathsep``-separated)
and those given to :func:`add_path`: a later folder may add ids, never replace one.

    >>> import voxcodec.zoo as zoo
    >>> [p.id for p in zoo.available()]                     # doctest: +SKIP
    ['em-fib-v1', 'em-fib-v2', 'em-general-v1', 'em-general-v2', 'em-section-v1', 'em-section-v2']
    >>> [p.id for p in zoo.resolve("auto")]                 # doctest: +SKIP
    ['em-fib-v2', 'em-general-v2', 'em-section-v2']

``"auto"`` takes the newest version of each family (``<name>-v<N>``): older versions stay in the
package so that the streams which name them decode, and an encoder names them only when asked to.
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

from ..core.network import BlockModel, ModelConfig
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


def save(model: BlockModel, prior_id: str, folder, card: dict | None = None) -> Path:
    """Write ``model`` as prior ``prior_id`` into ``folder`` (a new file: a prior is never rewritten)."""
    if not _ID.match(prior_id):
        raise ValueError(f"prior id {prior_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prior_id}.json"
    if path.exists() and load(path).sha256 != model.sha256:
        raise FileExistsError(f"{path} holds other weights under the id {prior_id}: a prior is never changed in "
                              "place, give the new one a new id")
    doc = {"format": FORMAT, "id": prior_id, "sha256": model.sha256, "config": model.config.to_json(),
           "weights": base64.b64encode(model.raw_bytes()).decode(), "card": card or {}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


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


def latest(priors: list[Prior]) -> list[Prior]:
    """The newest of each family of ``priors`` (ids ``<name>-v<N>``: the largest N); other ids as they are."""
    newest: dict[str, tuple[int, Prior]] = {}
    out = []
    for p in priors:
        m = re.fullmatch(r"(.+)-v(\d+)", p.id)
        if m is None:
            out.append(p)
        elif m[1] not in newest or int(m[2]) > newest[m[1]][0]:
            newest[m[1]] = (int(m[2]), p)
    return sorted(out + [p for _, p in newest.values()], key=lambda p: p.id)


def resolve(spec) -> list[Prior]:
    """The priors an encoder may choose from: ``"auto"`` the newest of each family; ``"none"`` (or None)
    none; an id, ``"zoo:<id>"``, a :class:`Prior`, or a list of those."""
    if spec is None or spec == "none":
        return []
    if spec == "auto":
        return latest(available())
    if isinstance(spec, (str, Prior)):
        spec = [spec]
    out = []
    for s in spec:
        if isinstance(s, Prior):
            out.append(s)
        elif isinstance(s, str):
            out.append(get(s[4:] if s.startswith("zoo:") else s))
        else:
            raise ValueError(f"a prior is an id, 'zoo:<id>', 'auto' or 'none', not {s!r}")
    return out
