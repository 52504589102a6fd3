"""The line-exact tokeniser: a whole text file split into lines and fields, vectorised.

Error messages must name the true line, even with blank lines or CRLF endings, and the
HCRL formats have a variable number of fields per row; both need a parse that keeps every
line's number. Tokenising with numpy (separator positions -> token offsets -> one Arrow
string array) does that without a Python loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class _Rows:
    """Non-blank lines of a text file split into tokens, with exact 1-based line numbers."""

    tokens: pa.Array  # large_string, whitespace-trimmed, all rows' tokens in order
    first: np.ndarray  # index of each row's first token
    count: np.ndarray  # tokens per row
    line: np.ndarray  # 1-based line number of each row
    text_of: Callable[[int], str]  # full text of row i (for messages)

    def __len__(self) -> int:
        return len(self.first)

    def column(self, j: int | np.ndarray) -> pa.Array:
        """Token ``j`` of every row (row's first token where it has fewer; callers flag those)."""
        index = self.first + j
        index = np.where(j < self.count, index, self.first)
        return self.tokens.take(pa.array(index))

    def drop_first(self) -> "_Rows":
        return _Rows(self.tokens, self.first[1:], self.count[1:], self.line[1:], lambda i: self.text_of(i + 1))


def _tokenise(data: bytes, sep: bytes | None, original: bytes | None = None) -> _Rows:
    """Split ``data`` into lines and (if ``sep``) fields, fully vectorised.

    Separator positions give token spans; deleting the separators (and the CR of CRLF
    endings) leaves the tokens back to back, so their offsets are a cumulative sum of
    lengths and one Arrow string array holds them all. Non-ASCII bytes become '?', which
    every field check rejects, so such rows are reported rather than mis-decoded.
    ``original`` (same lines, e.g. before whitespace squeezing) is what messages quote.
    """
    buf = np.frombuffer(data, np.uint8)
    if buf.size and (buf >= 0x80).any():
        buf = np.where(buf >= 0x80, np.uint8(ord("?")), buf)
    is_sep = buf == 10
    if sep is not None:
        is_sep |= buf == sep[0]
    sep_pos = np.flatnonzero(is_sep)
    starts = np.concatenate(([0], sep_pos + 1))
    ends = np.concatenate((sep_pos, [len(buf)]))
    ends_line = np.concatenate((buf[sep_pos] == 10, [True]))  # token ends a line
    has_cr = ends_line & (ends > starts)
    has_cr[has_cr] = buf[ends[has_cr] - 1] == 13
    ends = ends - has_cr
    removed = np.concatenate((sep_pos, ends[has_cr]))
    joined = np.delete(buf, removed) if removed.size else buf
    offsets = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(ends - starts, out=offsets[1:])
    tokens = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(joined)))
    tokens = pc.utf8_trim_whitespace(tokens)

    token_line = np.concatenate(([0], np.cumsum(buf[sep_pos] == 10)))
    count = np.bincount(token_line, minlength=int(token_line[-1]) + 1)
    first = np.concatenate(([0], np.cumsum(count)[:-1]))
    single = np.flatnonzero(count == 1)
    blank = np.zeros(len(count), bool)
    if single.size:
        single_len = pc.binary_length(tokens.take(pa.array(first[single]))).to_numpy(zero_copy_only=False)
        blank[single[single_len == 0]] = True
    rows = np.flatnonzero(~blank)
    quoted = buf if original is None else np.frombuffer(original, np.uint8)
    nl_pos = np.flatnonzero(quoted == 10)

    def text_of(i: int) -> str:
        line_index = int(rows[i])
        start = int(nl_pos[line_index - 1]) + 1 if line_index > 0 else 0
        stop = int(nl_pos[line_index]) if line_index < len(nl_pos) else len(quoted)
        return bytes(quoted[start:stop]).decode("utf-8", errors="replace").rstrip("\r")

    return _Rows(tokens, first[rows], count[rows], rows + 1, text_of)
