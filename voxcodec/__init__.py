"""voxcodec: lossless, bit-exact compression of electron-microscopy volumes with a model that learns
while it codes.

Three layers:

- :mod:`voxcodec.core`: the codec (volume -> blocks -> online least-squares prediction and adaptive
  residual models, learning as they code -> rANS coder -> ``.vxc`` container);
- :mod:`voxcodec.storage`: adapters to where volumes live (TIFF / ``.npy`` / slice folders, zarr v3 and
  numcodecs codecs, zarr chunks);
- :mod:`voxcodec.edge`: the edge transfer tool (acquisition folder -> spool -> journal -> destination).
"""

__version__ = "0.6.0"

from .core.decoder import Decoder, decode  # noqa: E402
from .core.encoder import Encoder, encode  # noqa: E402
from .errors import CorruptStreamError, InputError, TruncatedStreamError, UnsupportedError, VoxcodecError  # noqa: E402

__all__ = ["encode", "decode", "Encoder", "Decoder", "sample_path", "sample_volume", "VoxcodecError",
           "CorruptStreamError", "TruncatedStreamError", "UnsupportedError", "InputError", "__version__"]


def __getattr__(name):
    # the sample volume's readers (TIFF) load on first use: ``import voxcodec`` stays quick
    if name in ("sample_path", "sample_volume"):
        from .storage import volume_io

        return getattr(volume_io, name)
    raise AttributeError(f"module 'voxcodec' has no attribute {name!r}")
