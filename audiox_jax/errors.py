"""The package's exceptions: one root, and a parameter error that is also a ValueError.

Every message names the offending input, its value, and the fix.
"""


class AudioxError(Exception):
    """Root of every error audiox-jax raises on purpose."""


class ParamError(AudioxError, ValueError):
    """A bad argument or config value: the message names it, its value and the fix."""


class AudioFileError(AudioxError, OSError):
    """An audio file that cannot be used: missing, empty, not audio, or with NaN/Inf samples."""
