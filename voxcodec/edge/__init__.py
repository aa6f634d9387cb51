"""The edge transfer tool (``voxcodec-edge``): an acquisition folder is watched (:mod:`.acquisition`),
slices are coded into blocks in a local spool and journaled (:mod:`.journal`), and shipped to a zarr
array at a destination (:mod:`.destination`) by a shipper thread (:mod:`.shipper`), while a status
thread keeps ``status.json`` fresh (:mod:`.status`). :mod:`.run` ties them together."""

from .run import EdgeError, EdgeOptions, EdgeRun, VerifyError, chunk_grid, read_status

__all__ = ["EdgeRun", "EdgeOptions", "EdgeError", "VerifyError", "chunk_grid", "read_status"]
