"""The model zoo: priors in the package, streams that name them, fine-tunes stored as differences,
flat contexts (black borders), and the commands and codecs that use them."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import voxcodec
from voxcodec import CorruptStreamError, UnsupportedError, zoo
from voxcodec.core.network import BlockModel
from voxcodec.core.training import NetBank

from conftest import console_script, run_python


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory, sample):
    """A folder holding one small prior, ``test-prior`` (fitted on a crop of the sample in seconds)."""
    d = tmp_path_factory.mktemp("zoo")
    model = voxcodec.fit_model(np.ascontiguousarray(sample[30:38, :64, :64]), preset="fast", threads=1)
    zoo.save(model, "test-prior", d, {"summary": "made by tests/test_zoo.py"})
    zoo.add_path(d)
    yield d
    # later test modules (the fuzz workers, prior="auto" encodes) must not find it
    zoo._extra.remove(d.resolve())


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_shipped_priors_load_with_their_cards():
    priors = {p.id: p for p in zoo.available()}
    for pid in ("em-general-v1", "em-section-v1", "em-fib-v1", "em-general-v2", "em-section-v2", "em-fib-v2"):
        p = priors[pid]
        assert p.path.startswith(str(zoo.PACKAGE_DIR))
        doc = json.loads(open(p.path).read())
        assert doc["sha256"] == p.model.sha256 == p.sha256
        card = p.card
        assert card["trained_on"] and all("licence" in v and "volume" in v for v in card["trained_on"])
        assert card["training"]["seconds"] > 0 and card["parameters"] > 0
        assert card["command"].startswith("python -m voxcodec.zoo.train")


def test_a_bank_holds_a_prior_exactly(sample):
    """Fine-tuning starts from the prior itself: a bank made from its networks exports the same
    integer networks (the same predictions)."""
    model = voxcodec.fit_model(np.ascontiguousarray(sample[:6, :48, :48]), preset="fast", threads=1)
    nets = list(model.intra.values())
    back = NetBank.from_nets(nets, model.config.hidden).export()
    rng = np.random.default_rng(0)
    for a, b in zip(nets, back):
        x = rng.integers(-128, 128, (a.w1.shape[1], 5000)).astype(np.float32)
        for got, want in zip(b.infer(x, 20), a.infer(x, 20)):
            np.testing.assert_array_equal(got, want)


def test_a_difference_against_a_prior_round_trips_and_is_checked(prior_dir):
    prior = zoo.get("test-prior").model
    tuned = BlockModel.from_raw(prior.raw_bytes(), prior.config)
    net = next(iter(tuned.intra.values()))
    net.w1[0, :3] += 1
    net.bmu += 5
    delta = tuned.delta_bytes(prior)
    assert len(delta) < len(tuned.to_bytes()) / 4  # what the fine-tune left alone costs almost nothing
    back = BlockModel.from_delta(delta, prior)
    assert back.raw_bytes() == tuned.raw_bytes()
    import zlib

    with pytest.raises(CorruptStreamError):
        BlockModel.from_delta(zlib.compress(b"\x05" * 40), prior)
    with pytest.raises(CorruptStreamError):
        BlockModel.from_delta(delta[:-3], prior)


@pytest.mark.parametrize("preset, train", [("fast", "auto"), ("default", "always")])
def test_a_stream_with_a_prior_decodes_in_a_fresh_process(prior_dir, sample, preset, train):
    vol = np.ascontiguousarray(sample[:10, :64, :80])
    enc = voxcodec.Encoder(None, slice_shape=vol.shape[1:], preset=preset, prior="test-prior", train=train,
                           fit_options={"prior_steps": 20}, block_depth=5, threads=1)
    enc.write(vol)
    data = enc.getvalue()
    with voxcodec.Decoder(data) as dec:
        assert dec.meta["priors"] == [zoo.get("test-prior").ref]
        headers = [dec.block_header(i) for i in range(len(dec))]
    assert all(h.prior == 1 for h in headers)
    if preset == "fast":
        assert all(h.model_len == 0 for h in headers)  # the prior as it is: no weights in the stream
    path = prior_dir / f"stream_{preset}.vxc"
    path.write_bytes(data)
    code = f"import voxcodec, hashlib; print(hashlib.sha256(voxcodec.decode({str(path)!r}).tobytes()).hexdigest())"
    assert run_python(code, {"VOXCODEC_ZOO": str(prior_dir)}).strip() == _sha(vol)
    # without the prior: a clear error naming it and where to put it
    env = {k: v for k, v in os.environ.items() if k != "VOXCODEC_ZOO"}
    res = subprocess.run([sys.executable, "-c", f"import voxcodec; voxcodec.decode({str(path)!r})"],
                         capture_output=True, text=True, env=env)
    assert res.returncode != 0 and "no prior 'test-prior'" in res.stderr and "VOXCODEC_ZOO" in res.stderr


def test_block_model_names_the_networks_of_each_block(prior_dir, sample):
    """Decoder.block_model: the prior itself for a `fast` block, the block's own networks without a
    prior, None for a constant block; the networks it returns code the block's voxels."""
    from voxcodec.core import block
    from voxcodec.core.container import HEADER_SIZE

    vol = np.ascontiguousarray(sample[:8, :48, :64])
    vol[4:] = 7  # the second block is constant
    prior = zoo.get("test-prior").model
    for kind, data in (("prior", voxcodec.encode(vol, preset="fast", prior="test-prior", block_depth=4)),
                       ("own", voxcodec.encode(vol, preset="fast", prior="none", block_depth=4, threads=1))):
        with voxcodec.Decoder(data) as dec:
            model = dec.block_model(0)
            assert dec.block_model(1) is None
            with pytest.raises(IndexError):
                dec.block_model(2)
            h = dec.block_header(0)
            if kind == "prior":
                assert model.intra_only().raw_bytes() == prior.intra_only().raw_bytes() and h.model_len == 0
            else:
                assert model.intra_only().raw_bytes() != prior.intra_only().raw_bytes() and h.model_len > 0
            start = dec.index[0].offset + HEADER_SIZE + h.model_len
            got = block.decode_block(data[start:start + h.payload_len], model, h.shape, h.lo, h.hi, h.centre,
                                     h.shift, np.uint8)
            np.testing.assert_array_equal(got, vol[:4])


def test_a_changed_prior_is_refused(prior_dir, sample, tmp_path):
    vol = np.ascontiguousarray(sample[:4, :48, :48])
    data = voxcodec.encode(vol, preset="fast", prior="test-prior")
    prior = zoo.get("test-prior")
    other = BlockModel.from_raw(prior.model.raw_bytes(), prior.model.config)
    next(iter(other.intra.values())).bmu += 1
    with pytest.raises(FileExistsError, match="never changed in place"):
        zoo.save(other, "test-prior", prior_dir)
    doc = json.loads(open(prior.path).read())
    doc["weights"] = __import__("base64").b64encode(other.raw_bytes()).decode()
    (tmp_path / "test-prior.json").write_text(json.dumps(doc))
    with pytest.raises(UnsupportedError, match="does not match its content hash"):
        zoo.load(tmp_path / "test-prior.json")
    # the same id with other weights (and their own hash) earlier on the search path: refused by hash
    doc["sha256"] = other.sha256
    (tmp_path / "test-prior.json").write_text(json.dumps(doc))
    code = (f"import voxcodec; voxcodec.decode(open({str(prior_dir / 'changed.vxc')!r}, 'rb').read())")
    (prior_dir / "changed.vxc").write_bytes(data)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "VOXCODEC_ZOO": os.pathsep.join([str(tmp_path), str(prior_dir)])})
    assert res.returncode != 0 and "content hash" in res.stderr


def test_priors_field_of_the_file_header_is_checked():
    from voxcodec.core.container import check_priors

    good = [{"id": "em-general-v1", "sha256": "0" * 64}]
    assert check_priors(good) == good
    for bad in ([{"id": "x"}], [{"id": "a b", "sha256": "0" * 64}], [{"id": "x", "sha256": "0" * 63}],
                "em-general-v1", [good[0]] * 65, [{"id": "x", "sha256": "0" * 64, "more": 1}]):
        with pytest.raises(CorruptStreamError, match="priors"):
            check_priors(bad)
    with pytest.raises(CorruptStreamError, match="format 4 brought them"):
        check_priors(good, version=3)


def test_black_margins_cost_almost_nothing(sample):
    """Flat contexts: a volume inside black margins that drift from slice to slice costs little more
    than the volume itself (about 0.15 bits per margin voxel here; voxcodec 0.3, format 3, spent 1.7)."""
    from voxcodec.zoo.train import with_margins

    vol = np.ascontiguousarray(sample[:8, :96, :96])
    framed = with_margins(np.pad(vol, ((0, 0), (40, 40), (40, 40))), np.random.default_rng(1), most=40)
    plain = len(voxcodec.encode(vol, preset="fast", prior="none", train="never"))
    margins = len(voxcodec.encode(framed, preset="fast", prior="none", train="never"))
    extra_bits_per_margin_voxel = 8 * (margins - plain) / (framed.size - vol.size)
    assert extra_bits_per_margin_voxel < 0.3, extra_bits_per_margin_voxel
    assert np.array_equal(voxcodec.decode(voxcodec.encode(framed, preset="fast", prior="none")), framed)


def test_cli_zoo_and_preview(prior_dir, tmp_path, sample):
    import tifffile

    env = {**os.environ, "VOXCODEC_ZOO": str(prior_dir)}
    exe = console_script("voxcodec", "voxcodec_cli.main")
    res = subprocess.run(exe + ["zoo"], capture_output=True, text=True, env=env)
    assert res.returncode == 0 and "em-general-v1" in res.stdout and "test-prior" in res.stdout
    src = tmp_path / "v.tif"
    tifffile.imwrite(src, sample[:6, :64, :64])
    res = subprocess.run(exe + ["preview", str(src), "--slices", "4", "--side", "48", "--presets", "fast",
                                "--no-baselines"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith(("prior ", "preset "))]
    assert any(ln.startswith("prior test-prior") for ln in rows) and any("preset fast" in ln for ln in rows)
    assert all(ln.rstrip().split()[-1] == "yes" or "yes" in ln for ln in rows)
    res = subprocess.run(exe + ["encode", str(src), "--prior", "no-such-prior", "-o", str(tmp_path / "x.vxc")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "no prior 'no-such-prior'" in res.stderr


def test_zarr_chunks_with_a_zoo_prior(tmp_path, sample):
    zarr = pytest.importorskip("zarr")
    from voxcodec.zarr import VoxCodec

    vol = np.ascontiguousarray(sample[:8, :64, :64])
    codec = VoxCodec(preset="fast", model="zoo:em-general-v1")
    arr = zarr.create_array(tmp_path / "a.zarr", shape=vol.shape, chunks=(4, 32, 32), dtype="uint8",
                            serializer=codec, compressors=None)
    arr[:] = vol
    meta = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())
    assert meta["codecs"][0]["configuration"]["model"] == "zoo:em-general-v1"  # an id, no weights
    code = (f"import zarr, hashlib; a = zarr.open_array({str(tmp_path / 'a.zarr')!r}); "
            "print(hashlib.sha256(a[:].tobytes()).hexdigest())")
    assert run_python(code).strip() == _sha(vol)
    with pytest.raises(UnsupportedError, match="no prior"):
        VoxCodec(model="zoo:no-such-prior")


def test_auto_takes_the_newest_version_of_each_family():
    model = zoo.get("em-general-v1").model
    priors = [zoo.Prior(i, model) for i in ("em-fib-v1", "em-fib-v2", "em-fib-v10", "mine", "lab-v3", "lab-v2")]
    assert [p.id for p in zoo.latest(priors)] == ["em-fib-v10", "lab-v3", "mine"]
    assert {p.id for p in zoo.resolve("auto")} >= {"em-general-v2", "em-section-v2", "em-fib-v2"}
    assert not {"em-general-v1", "em-section-v1", "em-fib-v1"} & {p.id for p in zoo.resolve("auto")}


def test_twelve_bit_skip_weights_round_trip_and_are_checked(sample):
    """Format 5: a model with 12-bit skip weights serializes them as int16 and reads them back exactly;
    values beyond 12 bits, or skip_bits other than 8 and 12, are refused."""
    from voxcodec.core.network import ModelConfig

    cfg = ModelConfig(levels=2, hidden=(4, 4), bins=8, neighbours=24, skip_bits=12)
    from voxcodec.core.block import FitOptions, fit_block

    model, _, _ = fit_block(np.ascontiguousarray(sample[:4, :48, :48]), cfg, FitOptions(steps=5), min_voxels=1)
    nets = list(model.intra.values())
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
