"""Write the golden streams in tests/data that are missing (a new format version adds its own).

    python tests/make_golden.py

The golden streams pin the format: tests/test_exactness.py decodes them and checks the voxels
against the arrays below, so a change that breaks old files fails the tests. A stream already in
tests/data is never rewritten: it stands for the files of its version that users have.  The options
of formats 1 to 5 record how voxcodec 0.1 to 0.5 wrote their streams (this voxcodec writes format 6
only); those of format 6 are this encoder's, and tests/test_exactness.py checks that it still writes
the same bytes with them.
"""

import hashlib
import json
import os

import numpy as np

import voxcodec
from voxcodec.storage.volume_io import sample_volume

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def golden_arrays():
    s = sample_volume()
    # trained blocks (>= 32768 voxels) and untrained ones, warm starts, tiles, a uint16 range
    u8 = np.ascontiguousarray(s[:20, :64, :64])
    u16 = s[20:24].astype(np.uint16) * 13 + 1000
    return {"golden_u8": (u8, dict(block_depth=8, train="always", fit_options={"inter": "always", "steps": 60})),
            "golden_u16": (u16, dict(block_depth=4, tile=(128, 96), train="always", fit_options={"steps": 60})),
            "golden_plain_u8": (u8[:6, :40, :56], dict(block_depth=4, train="never")),
            **golden_v2_arrays(), **golden_v3_arrays(), **golden_v4_arrays(), **golden_v5_arrays(),
            **golden_v6_arrays()}


def golden_v2_arrays():
    """Format 2 (voxcodec 0.2): a stored block (noise beside EM in one layer), listed palettes (a uint16
    mask of two values over the whole range), a constant slice."""
    s = sample_volume()
    noise = np.random.default_rng(7).integers(0, 256, (8, 64, 64), dtype=np.uint8)
    mixed = np.ascontiguousarray(np.concatenate([s[:8, :64, :64], noise], axis=2))
    mask = ((s[30:38, :32, :32] > 120) * 65535).astype(np.uint16)
    mask[3] = 0
    return {"golden_v2_stored_u8": (mixed, dict(block_depth=8, tile=(64, 64), train="always",
                                                fit_options={"steps": 30})),
            "golden_v2_listed_u16": (mask, dict(block_depth=4, train="never"))}


def golden_v3_arrays():
    """Format 3 (voxcodec 0.3: rANS payloads): trained blocks with inter-slice networks over two layers
    and two tiles; a uint16 block with a listed palette, a bitmap palette and a constant slice."""
    s = sample_volume()
    u8 = np.ascontiguousarray(s[:12, :64, :80])
    u16 = s[24:30, :48, :48].astype(np.uint16) * 40 + 300
    u16[1] = (u16[1] // 400) * 400 + 300  # few values: a palette slice
    u16[2] = 17
    u16[4, ::2] = 65000  # a wide range with few values
    u16[4, 1::2] = 300
    return {"golden_v3_u8": (u8, dict(block_depth=6, tile=(64, 40), train="always",
                                      fit_options={"inter": "always", "steps": 40})),
            "golden_v3_u16": (u16, dict(block_depth=6, train="never"))}


#: the zoo priors released so far: each keeps a golden stream that must decode forever (format 4: the
#: v1 priors, format 5: the v2 priors with 24 neighbours and 12-bit skip weights)
RELEASED_PRIORS = ("em-general-v1", "em-section-v1", "em-fib-v1")
RELEASED_PRIORS_V5 = ("em-general-v2", "em-section-v2", "em-fib-v2")


def golden_v4_arrays():
    """Format 4 (voxcodec 0.4): blocks coded with each released zoo prior as it is, a block with a
    fine-tuned difference against a prior, and a uint16 block with its own networks; all inside black
    margins that drift from slice to slice (flat contexts and their edges)."""
    s = sample_volume()
    out = {f"golden_v4_{p}": (framed(s[8 * i:8 * i + 6, :40, :56], i), dict(block_depth=6, prior=p, train="never"))
           for i, p in enumerate(RELEASED_PRIORS)}
    # em-section-v1 never saw FIB-SEM: a fine-tune pays for its difference here
    out["golden_v4_delta"] = (framed(s[:16, :128, :128], 7), dict(block_depth=16, preset="default", prior="em-section-v1",
                                                                   train="always", fit_options={"prior_steps": 300}))
    # every other slice a black and white pattern (palette slices): the slice before misleads, so the block
    # uses the prior's intra-slice networks alone
    alt = np.ascontiguousarray(s[:6, :48, :48]).copy()
    yy, xx = np.mgrid[:48, :48]
    alt[::2] = np.where((yy // 3 + xx // 3) % 2, 255, 0)
    out["golden_v4_intra"] = (alt, dict(block_depth=6, prior="em-section-v1", train="never"))
    i16 = (s[50:56, :40, :48].astype(np.int32) - 128) * 250  # a signed volume: the offset mapping
    i16[0, 0, :2] = (-32768, 32767)
    out["golden_v4_i16"] = (i16.astype(np.int16), dict(block_depth=6, preset="fast", prior="em-general-v1"))
    u16 = framed(s[44:50, :48, :48].astype(np.uint16) * 37 + 900, 9)
    out["golden_v4_u16"] = (u16, dict(block_depth=6, prior="none", train="always", fit_options={"steps": 30}))
    return out


def framed(a, seed):
    """``a`` inside black margins that drift from slice to slice."""
    out = np.zeros((a.shape[0], a.shape[1] + 24, a.shape[2] + 24), a.dtype)
    rng = np.random.default_rng(seed)
    for z in range(a.shape[0]):
        t, left = (int(v) for v in rng.integers(2, 22, 2))
        out[z, t:t + a.shape[1], left:left + a.shape[2]] = a[z]
    return out


def golden_v5_arrays():
    """Format 5 (voxcodec 0.5): 24 neighbours and 12-bit linear skip weights; blocks coded with each v2
    prior as it is, a fine-tuned difference against one, and a block with its own networks."""
    s = sample_volume()
    out = {f"golden_v5_{p}": (framed(s[8 * i + 1:8 * i + 7, :40, :56], 20 + i),
                              dict(block_depth=6, prior=p, train="never")) for i, p in enumerate(RELEASED_PRIORS_V5)}
    out["golden_v5_delta"] = (framed(s[16:32, :128, :128], 27), dict(block_depth=16, preset="default",
                                                                    prior="em-section-v2", train="always",
                                                                    fit_options={"prior_steps": 300}))
    out["golden_v5_own"] = (np.ascontiguousarray(s[60:68, :64, :72]), dict(block_depth=8, prior="none", train="always",
                                                                          fit_options={"steps": 40}))
    return out


def golden_v6_arrays():
    """Format 6 (voxcodec 0.6: the model learns while it codes): each preset on EM (two layers of two
    tiles for default); a uint16 volume with a shift, a listed and a bitmap palette and a constant slice;
    a signed volume; noise beside EM (a stored block) and a constant block; EM inside drifting black
    margins."""
    s = sample_volume()
    out = {f"golden_v6_{p}": (np.ascontiguousarray(s[10 * i:10 * i + 8, :48, :64]),
                              dict(preset=p, block_depth=4, tile=(48, 40) if p == "default" else None))
           for i, p in enumerate(("fast", "default", "max"))}
    u16 = s[30:36, :40, :48].astype(np.uint16) * 233 + 100
    u16[1] = (u16[1] // 4000) * 4000 + 100  # a few values over a wide range: a listed palette
    u16[2] = 17  # a constant slice
    u16[3] = (u16[3] // 466) * 466  # every other value of the range: a bitmap palette
    out["golden_v6_u16"] = (u16, dict(preset="default", block_depth=6))
    i16 = (s[50:54, :32, :40].astype(np.int32) - 128) * 250
    i16[0, 0, :2] = (-32768, 32767)
    out["golden_v6_i16"] = (i16.astype(np.int16), dict(preset="fast", block_depth=4))
    noise = np.random.default_rng(9).integers(0, 256, (4, 32, 32), dtype=np.uint8)
    flat = np.full((4, 32, 32), 77, np.uint8)
    out["golden_v6_stored"] = (np.ascontiguousarray(np.concatenate([s[40:44, :32, :32], noise, flat], axis=2)),
                               dict(preset="default", block_depth=4, tile=(32, 32)))
    out["golden_v6_framed"] = (framed(s[56:62, :40, :48], 31), dict(preset="default", block_depth=6))
    return out


def main():
    path = os.path.join(HERE, "golden.json")
    meta = json.load(open(path)) if os.path.exists(path) else {}
    for name, (arr, opts) in golden_arrays().items():
        if os.path.exists(os.path.join(HERE, name + ".vxc")):
            continue
        if not name.startswith("golden_v6_"):
            raise RuntimeError(f"{name}.vxc is missing: it was written by an older voxcodec and cannot be made again")
        data = voxcodec.encode(arr, **opts)
        with open(os.path.join(HERE, name + ".vxc"), "wb") as f:
            f.write(data)
        meta[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "encoder": f"voxcodec {voxcodec.__version__}",
                      "sha256": hashlib.sha256(arr.tobytes()).hexdigest(), "options": {k: v for k, v in opts.items()}}
    with open(path, "w") as f:
        json.dump(meta, f, indent=2)


if __name__ == "__main__":
    main()
