"""Storage adapters: reading volumes completely or refusing them (:mod:`.volume_io`, with TIFF stacks in
:mod:`.tiff`), zarr v3 and numcodecs codecs (:mod:`.zarr`, :mod:`.numcodecs`) and the chunk format they
share (:mod:`.chunks`)."""
