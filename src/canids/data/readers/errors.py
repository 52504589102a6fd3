"""``DataFormatError`` and how a bad row is put into words.

Every reader, the format detection and the row checks raise the same error, so a caller
(the catalog, the CLI, a worker process) can catch one type and always find the file,
line and offending value on it. It lives apart from the readers so that file access
(``raw``) and the row checks (``checks``) can raise it without importing any parser.
"""

from __future__ import annotations

from pathlib import Path

_MAX_SHOWN = 120  # characters of an offending value or line quoted in a message


class DataFormatError(ValueError):
    """A raw capture that cannot be read as the expected format.

    Attributes:
        path: the file.
        line: 1-based line number (the header counts as line 1); for parquet the 1-based
            row number; ``None`` for problems with the file as a whole (empty, unknown
            format, wrong columns).
        value: the offending text (a field, a line or a header), or ``None``.
    """

    def __init__(self, message: str, *, path: str | Path, line: int | None = None, value: str | None = None):
        super().__init__(message)
        self.path = str(path)
        self.line = line
        self.value = value

    def __reduce__(self):  # keep the attributes when pickled across processes
        return (_rebuild_error, (str(self), self.path, self.line, self.value))


def _rebuild_error(message: str, path: str, line: int | None, value: str | None) -> DataFormatError:
    return DataFormatError(message, path=path, line=line, value=value)


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _row_error(path: Path, where: str, line: int, what: str, value: str, expected: str) -> DataFormatError:
    """Build the standard message: file, line, offending value, what was expected."""
    shown = _shorten(value)
    return DataFormatError(
        f"{path}, {where} {line}: bad {what} {shown!r}; expected {expected}",
        path=path,
        line=line,
        value=value,
    )
