"""The exception types a user of SSD Explorer can trigger.

Each carries a message written for a person: what was wrong and what to do, plus structured
fields (``field``, ``path``, ``reason``) so callers never parse the message text. They subclass
the built-in type a caller would expect, so ``except ValueError`` keeps working.
"""


class SSDError(Exception):
    """Base class of every error ssd_core raises on purpose.

    ``path``: the file the error is about (None if none); ``reason``: the short cause without
    the advice, for a caller that words its own message (defaults to the whole message).
    """

    def __init__(self, message: str = "", *, path=None, reason: str | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.reason = message if reason is None else reason


class InvalidImageError(SSDError, ValueError):
    """An image (path, bytes, upload) that cannot be decoded or is refused."""


class AnnotationError(SSDError, ValueError):
    """A dataset or annotation file that is malformed; the message names file and row."""


class CheckpointError(SSDError, ValueError):
    """A checkpoint file that is missing, corrupt, unsafe or does not fit the model."""


class TrainingDiverged(SSDError, RuntimeError):
    """Training produced NaN/inf; the message names the likely cause (e.g. learning rate)."""


class ConfigError(SSDError, ValueError):
    """A training or model setting outside its valid range; ``field`` names the setting."""

    def __init__(self, message: str = "", *, field: str | None = None, **kw):
        super().__init__(message, **kw)
        self.field = field
