"""Exceptions raised by voxcodec. All derive from :class:`VoxcodecError` (a ``ValueError``)."""


class VoxcodecError(ValueError):
    """Base class of every error voxcodec raises on bad input or a bad stream."""


class CorruptStreamError(VoxcodecError):
    """The stream is damaged: a checksum, a length or a field does not match.

    ``block`` is the index of the damaged block, or ``None`` when the damage is outside the blocks
    (file header, block index).
    """

    def __init__(self, message: str, block: int | None = None):
        self.block = block
        self._message = message
        if block is not None:
            message = f"block {block}: {message}"
        super().__init__(message)

    def __reduce__(self):  # keeps ``block`` when the error crosses from a worker process
        return (type(self), (self._message, self.block))


class TruncatedStreamError(CorruptStreamError):
    """The stream ends early (an interrupted write or copy)."""


class UnsupportedError(VoxcodecError):
    """The input cannot be coded: dtype, shape or options outside what voxcodec supports."""


class InputError(UnsupportedError):
    """An input volume cannot be read completely and unambiguously (a truncated or damaged file, slices
    that disagree, several channels). Nothing is coded from it."""
