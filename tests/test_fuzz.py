"""Fuzzing the decoder with bench/fuzz.py: 4,000 mutated streams from a fixed seed (random damage and
CRC-consistent edits of every header, the JSON, the block index and the block records, in normal and
salvage decoding) each decode to exactly the original voxels or raise a documented VoxcodecError,
within 10 s and 256 MiB of address space each (a worker process per run, capped with RLIMIT_AS; a
hang or a crash kills the worker and counts as a failure).  About 30 s on 2 cores."""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import fuzz  # noqa: E402

COUNT = 4000
SEED = 20240601


@pytest.fixture(scope="module")
def streams():
    return fuzz.make_streams()


def test_fuzzed_streams_decode_exactly_or_raise_a_documented_error(streams):
    t0 = time.perf_counter()
    res = fuzz.run(count=COUNT, seed=SEED, streams=streams, timeout=10, memory_mb=256)
    report = fuzz.report(res)
    print(report)
    assert not res.bad, report
    assert sum(res.counts.values()) == COUNT
    assert set(res.counts) <= {"exact", "CorruptStreamError", "TruncatedStreamError", "UnsupportedError"}, report
    # every family and mode was exercised and reached both a decode and an error
    for key in (("random", "exact"), ("crc", "exact"), ("random", "CorruptStreamError"), ("crc", "CorruptStreamError"),
                ("random", "TruncatedStreamError")):
        assert res.by_family[key] > 20, (key, report)
    for key in (("normal", "exact"), ("salvage", "exact"), ("normal", "CorruptStreamError"),
                ("salvage", "CorruptStreamError")):
        assert res.by_mode[key] > 20, (key, report)
    assert time.perf_counter() - t0 < 600


def test_the_harness_detects_each_kind_of_failure(streams, monkeypatch):
    """A harness that cannot fail proves nothing: cases made to hang, crash, return other voxels or
    allocate beyond the bound are each reported, and the cases after them still run."""
    monkeypatch.setenv("VOXCODEC_FUZZ_SELFTEST", "1:hang,2:crash,3:wrong,4:memory")
    res = fuzz.run(count=6, seed=SEED, streams=streams, timeout=2, memory_mb=64)
    assert res.counts["HANG"] == 1 and res.counts["CRASH"] == 1 and res.counts["SILENT WRONG"] == 1, res.counts
    assert res.counts["UNDOCUMENTED MemoryError"] == 1, res.counts
    assert sum(res.counts.values()) == 6 and sorted(i for i, *_ in res.failures) == [1, 2, 3, 4]


def test_cases_are_reproducible(streams):
    parsed = [fuzz.parse(s.data) for s in streams]
    for i in (0, 17, 999):
        a, b = fuzz.make_case(streams, parsed, SEED, i), fuzz.make_case(streams, parsed, SEED, i)
        assert (a.data, a.salvage, a.what, a.read) == (b.data, b.salvage, b.what, b.read)
    # parse and build are inverses on every stream (the CRC-consistent edits start from there)
    for s, p in zip(streams, parsed):
        assert fuzz.build(p)[0] == s.data
