"""voxcodec: lossless, bit-exact compression of electron-microscopy volumes with a small network
trained per block."""

__version__ = "0.1.0"

from .codec import Decoder, Encoder, decode, encode, fit_model  # noqa: E402
from .errors import CorruptStreamError, TruncatedStreamError, UnsupportedError, VoxcodecError  # noqa: E402

__all__ = ["encode", "decode", "fit_model", "Encoder", "Decoder", "VoxcodecError", "CorruptStreamError",
           "TruncatedStreamError", "UnsupportedError", "__version__"]
