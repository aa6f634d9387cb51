"""Regenerate the golden streams in tests/data (only when the format version changes on purpose).

    python tests/make_golden.py

The golden streams pin the format: tests/test_golden.py decodes them and checks the voxels
against the arrays below, so a change that breaks old files fails the tests.
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
            "golden_plain_u8": (u8[:6, :40, :56], dict(block_depth=4, train="never"))}


def main():
    meta = {}
    for name, (arr, opts) in golden_arrays().items():
        data = voxcodec.encode(arr, **opts)
        with open(os.path.join(HERE, name + ".vxc"), "wb") as f:
            f.write(data)
        meta[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype),
                      "sha256": hashlib.sha256(arr.tobytes()).hexdigest(), "options": {k: v for k, v in opts.items()}}
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(meta, f, indent=2)


if __name__ == "__main__":
    main()
