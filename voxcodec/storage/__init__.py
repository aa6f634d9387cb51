"""Storage adapters: reading volumes (:mod:`.volume_io`), zarr v3 and numcodecs codecs (:mod:`.zarr`,
:mod:`.numcodecs`) and the chunk format they share (:mod:`.chunks`)."""
