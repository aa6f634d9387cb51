"""The guarantees that make a stream decodable anywhere: the native engine codes the same bytes in every
build (a second code path: the same C compiled without optimization, for the host's ISA, and without
the AVX2 clones), whatever the worker count, thread count or tile split; and format stability
(golden streams of formats 1 to 6)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import voxcodec
from voxcodec.core import learn
from voxcodec.core.presets import PRESETS

import native_build
from conftest import run_python

DATA = Path(__file__).parent / "data"


def _volumes(sample):
    """Small volumes that exercise every path: real EM, a uint16 one with a shift, palettes (a bitmap and
    a list), a constant slice, saturated regions, one row, one column."""
    rng = np.random.default_rng(7)
    em = np.ascontiguousarray(sample[:5, :40, :72])
    mixed = em.copy()
    mixed[1] = 90  # a constant slice
    mixed[2] = mixed[2] // 8 * 8  # a listed palette
    mixed[3] = mixed[3] // 2 * 2  # a bitmap palette
    mixed[4, :10] = 255  # saturated
    wide = (sample[:3, :24, :64].astype(np.uint16) * 211 + rng.integers(0, 200, (3, 24, 64))).astype(np.uint16)
    return {"em": em, "mixed": mixed, "u16": wide, "row": np.ascontiguousarray(sample[:3, :1, :90]),
            "column": np.ascontiguousarray(sample[:3, :50, :1])}


def _all_params():
    out = {name: cands[0] for name, cands in PRESETS.items()}
    out["every-option"] = learn.Params("mixing", causal=24, prev=15, prev2=9, interval_log=0, forget=1, ridge=40,
                                       band_log=4, casc=8, inputs=6, mant=16, lr=64, limit_log=10, sparse=3)
    out["bare"] = learn.Params("tables", causal=0, prev=1, prev2=0, interval_log=10, forget=24, ridge=1, band_log=0,
                               casc=0)
    return out


@pytest.fixture(scope="module")
def second_builds(tmp_path_factory):
    if native_build.compiler() is None:
        pytest.skip("no C compiler: the second builds of the engine cannot be made")
    return native_build.builds(tmp_path_factory.mktemp("builds"))


def test_every_build_codes_and_decodes_the_same_bytes(sample, second_builds):
    for vname, vol in _volumes(sample).items():
        for pname, params in _all_params().items():
            payload, _ = learn.encode_block(vol, params)
            lo, hi, centre, shift = learn.value_range(vol)
            np.testing.assert_array_equal(
                learn.decode_block(payload, params, vol.shape, lo, hi, centre, shift, vol.dtype), vol)
            for bname, build in second_builds.items():
                assert build.encode(vol, params.to_bytes()) == payload, f"{bname} build, {vname}, {pname}"
                np.testing.assert_array_equal(build.decode(payload, vol, params.to_bytes()), vol)


def test_the_stream_does_not_depend_on_workers_or_threads(em_u8, tmp_path):
    streams = [voxcodec.encode(em_u8, block_depth=4, tile=(48, 64), workers=w) for w in (1, 2, 3)]
    assert streams[0] == streams[1] == streams[2]
    path = tmp_path / "s.vxc"
    path.write_bytes(streams[0])
    code = f"import hashlib, voxcodec; print(hashlib.sha256(voxcodec.decode({str(path)!r}, workers=3).tobytes()).hexdigest())"
    digest = run_python(code, {"OMP_NUM_THREADS": "3"}).strip()  # a fresh process, other thread counts
    assert digest == hashlib.sha256(em_u8.tobytes()).hexdigest()


def test_tile_and_block_splits_all_decode_to_the_volume(em_u8):
    for tile, depth in [((96, 96), 12), ((48, 64), 5), ((96, 33), 3), ((7, 96), 1)]:
        np.testing.assert_array_equal(voxcodec.decode(voxcodec.encode(em_u8, tile=tile, block_depth=depth)), em_u8)


GOLDEN = [("golden_u8", 1), ("golden_u16", 1), ("golden_plain_u8", 1), ("golden_v2_stored_u8", 2),
          ("golden_v2_listed_u16", 2), ("golden_v3_u8", 3), ("golden_v3_u16", 3), ("golden_v4_em-general-v1", 4),
          ("golden_v4_em-section-v1", 4), ("golden_v4_em-fib-v1", 4), ("golden_v4_delta", 4), ("golden_v4_intra", 4),
          ("golden_v4_u16", 4), ("golden_v4_i16", 4), ("golden_v5_em-general-v2", 5), ("golden_v5_em-section-v2", 5),
          ("golden_v5_em-fib-v2", 5), ("golden_v5_delta", 5), ("golden_v5_own", 5)]
GOLDEN_V6 = [(name, 6) for name in json.loads((DATA / "golden.json").read_text()) if name.startswith("golden_v6_")]


@pytest.mark.parametrize("name, version", GOLDEN + GOLDEN_V6)
def test_golden_streams_still_decode(name, version):
    """Streams written by voxcodec 0.1.0 (format 1) to 0.5.0 (format 5; one stream per zoo prior released:
    every released prior stays decodable) and 0.6.0 (format 6) keep decoding to the same voxels."""
    meta = json.loads((DATA / "golden.json").read_text())[name]
    with voxcodec.Decoder(DATA / f"{name}.vxc") as dec:
        assert dec.format_version == version
    out = voxcodec.decode(DATA / f"{name}.vxc")
    assert list(out.shape) == meta["shape"] and str(out.dtype) == meta["dtype"]
    assert hashlib.sha256(out.tobytes()).hexdigest() == meta["sha256"]


def test_format6_golden_streams_are_what_the_encoder_writes_today():
    """The encoder is deterministic: coding a golden volume again with its recorded settings gives the
    golden bytes (a change to the engine that changes the stream must be a new format version).  The
    ``*_interval7`` streams were written with the first parameters of ``fast``: they only decode (above)."""
    from make_golden import golden_arrays

    arrays = golden_arrays()
    today = [name for name, _ in GOLDEN_V6 if not name.endswith("_interval7")]
    assert sorted(today) == sorted(n for n in arrays if n.startswith("golden_v6_")), "run tests/make_golden.py"
    for name in today:
        arr, kw = arrays[name]
        assert voxcodec.encode(arr, **kw) == (DATA / f"{name}.vxc").read_bytes(), name


def test_golden_arrays_match_their_source(sample):
    from make_golden import golden_arrays  # noqa: the generator documents how they were made

    meta = json.loads((DATA / "golden.json").read_text())
    for name, (arr, _) in golden_arrays().items():
        assert hashlib.sha256(arr.tobytes()).hexdigest() == meta[name]["sha256"], name


def test_early_format6_header_with_the_model_as_an_object_still_decodes(tmp_path):
    """The first 0.6.0 builds wrote the header's model as the first candidate's fields (an object), later ones
    as a list of the candidates' bytes in hex; the blocks are the same, and both decode."""
    from make_golden import golden_arrays

    early = DATA / "early_v6_fast_model_object.vxc"
    with voxcodec.Decoder(early) as dec:
        assert isinstance(dec.meta["model"], dict) and dec.format_version == 6
    arr, kw = golden_arrays()["golden_v6_fast"]
    np.testing.assert_array_equal(voxcodec.decode(early), arr)
    with voxcodec.Decoder(voxcodec.encode(arr, **kw)) as dec:
        assert isinstance(dec.meta["model"], list)
