"""The model zoo: the network priors that streams of voxcodec 0.4 and 0.5 (formats 4 and 5) name, found
on the search path, checked by content hash, and the streams that use them decoding in a fresh
process; the CLI's zoo and preview commands."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import voxcodec
from voxcodec import CorruptStreamError, UnsupportedError, zoo
from voxcodec.core.legacy.network import BlockModel, ModelConfig

from conftest import console_script

DATA = Path(__file__).parent / "data"
RELEASED = ("em-general-v1", "em-section-v1", "em-fib-v1", "em-general-v2", "em-section-v2", "em-fib-v2")


def _golden(name):
    meta = json.loads((DATA / "golden.json").read_text())[name]
    return DATA / f"{name}.vxc", meta


def test_shipped_priors_load_with_their_cards():
    priors = {p.id: p for p in zoo.available()}
    for pid in RELEASED:
        p = priors[pid]
        assert p.sha256 == p.model.sha256 and len(p.sha256) == 64
        card = p.card
        assert card["trained_on"] and all("licence" in v and "volume" in v for v in card["trained_on"])


@pytest.mark.parametrize("name", ["golden_v4_em-section-v1", "golden_v5_em-fib-v2", "golden_v5_delta"])
def test_a_stream_naming_a_prior_decodes_in_a_fresh_process_and_needs_it(name, tmp_path):
    path, meta = _golden(name)
    with voxcodec.Decoder(path) as dec:
        ids = [p["id"] for p in dec.meta["priors"]]
        assert dec.block_header(0).prior >= 1
    code = f"import hashlib, voxcodec; print(hashlib.sha256(voxcodec.decode({str(path)!r}).tobytes()).hexdigest())"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == meta["sha256"], res.stderr
    # the same stream where the prior is not installed: a clear error naming it and where to put it
    empty = tmp_path / "zoo"
    empty.mkdir()
    code = ("import voxcodec.zoo as z, voxcodec; z.PACKAGE_DIR = z.Path(" + repr(str(empty)) + "); "
            f"voxcodec.decode({str(path)!r})")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode != 0 and f"no prior {ids[0]!r}" in res.stderr and "VOXCODEC_ZOO" in res.stderr


def test_block_model_gives_the_networks_of_legacy_blocks():
    from voxcodec.core.legacy import block

    from voxcodec.core.container import HEADER_SIZE

    path, _ = _golden("golden_v4_em-general-v1")
    data = path.read_bytes()
    want = voxcodec.decode(data)
    prior = zoo.get("em-general-v1").model
    with voxcodec.Decoder(data) as dec:
        model = dec.block_model(0)
        h = dec.block_header(0)
        assert model.intra_only().raw_bytes() == prior.intra_only().raw_bytes() and h.model_len == 0
        with pytest.raises(ValueError, match="networks"):
            dec.block_params(0)
        start = dec.index[0].offset + HEADER_SIZE + h.model_len
        got = block.decode_block(data[start:start + h.payload_len], model, h.shape, h.lo, h.hi, h.centre, h.shift,
                                 np.uint8, version=4)
    np.testing.assert_array_equal(got, want[:h.depth, :h.h, :h.w])


def test_a_changed_prior_is_refused(tmp_path):
    prior = zoo.get("em-general-v2")
    other = BlockModel.from_raw(prior.model.raw_bytes(), prior.model.config)
    next(iter(other.intra.values())).bmu += 1
    doc = json.loads(open(prior.path).read())
    doc["weights"] = __import__("base64").b64encode(other.raw_bytes()).decode()
    (tmp_path / "em-general-v2.json").write_text(json.dumps(doc))
    with pytest.raises(UnsupportedError, match="does not match its content hash"):
        zoo.load(tmp_path / "em-general-v2.json")
    # the same id with other weights (and their own hash) first on the search path: refused by hash
    doc["sha256"] = other.sha256
    (tmp_path / "em-general-v2.json").write_text(json.dumps(doc))
    path, _ = _golden("golden_v5_em-general-v2")
    code = ("import voxcodec.zoo as z, voxcodec; z.PACKAGE_DIR = z.Path(" + repr(str(tmp_path)) + "); "
            f"voxcodec.decode({str(path)!r})")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode != 0 and "content hash" in res.stderr


def test_priors_field_of_the_file_header_is_checked():
    from voxcodec.core.container import check_priors

    good = [{"id": "em-general-v1", "sha256": "0" * 64}]
    assert check_priors(good, version=5) == good
    for bad in ([{"id": "x"}], [{"id": "a b", "sha256": "0" * 64}], [{"id": "x", "sha256": "0" * 63}],
                "em-general-v1", [good[0]] * 65, [{"id": "x", "sha256": "0" * 64, "more": 1}]):
        with pytest.raises(CorruptStreamError, match="priors"):
            check_priors(bad, version=5)
    for version in (3, 6):  # only formats 4 and 5 name priors
        with pytest.raises(CorruptStreamError, match="only formats 4 and 5"):
            check_priors(good, version=version)


def test_twelve_bit_skip_weights_round_trip_and_are_checked():
    """Format 5: the networks of a golden stream keep their 12-bit skip weights as int16 and read back
    exactly; values beyond 12 bits, or skip_bits other than 8 and 12, are refused."""
    path, _ = _golden("golden_v5_own")
    with voxcodec.Decoder(path) as dec:
        model, cfg = dec.block_model(0), dec.config
    nets = list(model.intra.values())
    assert cfg.skip_bits == 12
    assert all(n.ws.dtype == np.int16 for n in nets) and max(int(abs(n.ws).max(initial=0)) for n in nets) > 127
    back = BlockModel.from_bytes(model.to_bytes(), cfg)
    assert back.raw_bytes() == model.raw_bytes()
    assert len(model.raw_bytes()) == cfg.raw_model_bytes(model.inter is not None)
    net = nets[-1]
    net.ws[0] = 2048
    with pytest.raises(ValueError):
        net.validate()
    with pytest.raises(CorruptStreamError):
        ModelConfig.from_json({**cfg.to_json(), "skip_bits": 10})
    assert "skip_bits" not in ModelConfig(neighbours=12).to_json()  # v1 priors keep their hashes


def test_cli_zoo_and_preview(tmp_path, sample):
    import tifffile

    exe = console_script("voxcodec", "voxcodec_cli.main")
    res = subprocess.run(exe + ["zoo"], capture_output=True, text=True)
    assert res.returncode == 0 and all(p in res.stdout for p in RELEASED)
    src = tmp_path / "v.tif"
    tifffile.imwrite(src, sample[:6, :64, :64])
    res = subprocess.run(exe + ["preview", str(src), "--slices", "4", "--side", "48", "--presets", "fast,default",
                                "--no-baselines"], capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("preset ")]
    assert [r.split()[1] for r in rows] == ["fast", "default"] and all(r.rstrip().endswith("yes") for r in rows)
    assert "fewest bits: preset" in res.stdout
