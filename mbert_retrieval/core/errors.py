"""Error types. Every user-facing failure is one of these, and its message is one line.

The CLI prints ``error: <message>`` and exits non-zero for these; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class MbertRetrievalError(Exception):
    """Base class of the errors the CLI reports as one line."""


class ConfigError(MbertRetrievalError):
    """A suite, recipe or spec file (or a command-line option) is invalid."""


class DataError(MbertRetrievalError):
    """An input data file is malformed. Names the file, the line (1-based) and the field."""

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = message
        where = self.path if line is None else f"{self.path}:{line}"
        what = message if field is None else f"field {field!r}: {message}"
        super().__init__(f"{where}: {what}")


class OutputExistsError(MbertRetrievalError):
    """An output already exists and the user did not ask to overwrite it."""


class OutputLockedError(MbertRetrievalError):
    """Another live run holds the lock of the output folder (see ``lock.output_lock``)."""


class OutputWriteError(MbertRetrievalError):
    """An output could not be written: disk full, quota, permissions, a read-only file system."""

    def __init__(self, path: str | Path, error: OSError) -> None:
        self.path = str(path)
        self.error = error
        reason = error.strerror or str(error) or type(error).__name__
        super().__init__(f"{self.path}: cannot write: {reason} (the previous content, if any, is unchanged)")
