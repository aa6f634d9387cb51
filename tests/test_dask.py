"""Parallel compression with dask.distributed: two worker processes write one voxcodec zarr array."""

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from voxcodec.zarr import VoxCodec  # noqa: E402


def test_two_worker_processes_write_bit_exact(tmp_path, sample):
    vol = np.ascontiguousarray(sample[:32, :96, :128])
    path = str(tmp_path / "par.zarr")
    # create the array first, then write without a lock (da.to_zarr(..., mode="w") would serialize writes)
    arr = zarr.create_array(path, shape=vol.shape, chunks=(16, 48, 64), dtype="uint8",
                            serializer=VoxCodec(preset="fast"), compressors=None)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        x = da.from_array(vol, chunks=(16, 48, 64))
        da.store(x, arr, lock=False, compute=True)
        pids = client.run(lambda: __import__("os").getpid())
        assert len(set(pids.values())) == 2
    again = zarr.open_array(path, mode="r")
    np.testing.assert_array_equal(again[...], vol)
    assert len(list((tmp_path / "par.zarr" / "c").rglob("*"))) >= 8  # every chunk was written
