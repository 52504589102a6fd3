"""The bytes of a capture file as the text parsers see them.

Every text format can arrive plain, gzip-compressed, or saved by Excel as "CSV UTF-8",
which starts the file with a UTF-8 byte-order mark. Handling those here, once, for format
detection and for every reader, means no parser ever sees a gzip header or a BOM (which
would otherwise turn the first header or row into ``'\\ufefftimestamp'``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

from canids.data.readers.errors import DataFormatError

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 1 << 16
#: UTF-8 byte-order mark, written at the start of a file by Excel's "CSV UTF-8".
_UTF8_BOM = b"\xef\xbb\xbf"


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"capture file not found: {path}")
    if not path.is_file():
        raise DataFormatError(f"{path}: not a regular file", path=path)


def _head_bytes(path: Path, size: int = _SNIFF_BYTES) -> bytes:
    """First bytes of a file, transparently decompressed if it is gzip, without a UTF-8 BOM."""
    with open(path, "rb") as handle:
        head = handle.read(size)
    if head.startswith(_GZIP_MAGIC):
        with gzip.open(path, "rb") as handle:
            try:
                head = handle.read(size)
            except (OSError, EOFError) as exc:
                raise DataFormatError(f"{path}: unreadable gzip data ({exc})", path=path) from exc
    return _strip_bom(head)


def _decompress(path: Path, raw: bytes) -> bytes:
    if raw.startswith(_GZIP_MAGIC):
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"{path}: unreadable gzip data ({exc})", path=path) from exc
    return raw


def _strip_bom(data: bytes) -> bytes:
    """``data`` without a leading UTF-8 byte-order mark (a copy only when there is one).

    The BOM is not part of the first line's text: left in, the header would read
    ``'\\ufefftimestamp'`` (``'???timestamp'`` once non-ASCII bytes are masked). Removing
    it shifts byte offsets only, so every line keeps its number.
    """
    return data[len(_UTF8_BOM) :] if data.startswith(_UTF8_BOM) else data


def _text_bytes(path: Path, raw: bytes) -> bytes:
    """The text of a text-format capture: decompressed if it is gzip, without a UTF-8 BOM."""
    return _strip_bom(_decompress(path, raw))
