"""Column decoders: timestamps, hex IDs, hex payloads, DLCs and labels, each with a bad-row mask.

Decoding is where the per-row cost is, so it uses numpy lookup tables over the raw
string bytes (two hex digits per lookup) and dictionary decoding for low-cardinality
columns; no function here loops over rows in Python. Each decoder returns its values and
a mask of rows it rejected, for the row checks to report.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from canids.data.frames import MAX_CAN_ID

_HEX_ID = re.compile(r"[0-9A-Fa-f]{1,8}")
_NUMBER_RE = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"
_LABELS = {"0": 0, "1": 1, "R": 0, "T": 1}
_HEX_DIGITS = "0123456789abcdefABCDEF"


def _build_hex_nibble_table() -> np.ndarray:
    """int64[256]: ASCII hex digit -> value, -1 if not a hex digit."""
    nibble = np.full(256, -1, np.int64)
    for ch in _HEX_DIGITS:
        nibble[ord(ch)] = int(ch, 16)
    return nibble


_HEX_NIBBLE = _build_hex_nibble_table()


def _build_hex_pair_table() -> np.ndarray:
    """int16[65536]: little-endian pair of ASCII hex digits -> byte value, -1 if not hex.

    Decoding two characters per lookup halves the gathers compared with a per-nibble
    table, and invalid characters fall out of the same lookup (validation for free).
    """
    nibble = _HEX_NIBBLE
    codes = np.arange(1 << 16)
    high = nibble[codes & 0xFF]  # first character is the low byte in little-endian
    low = nibble[codes >> 8]
    return np.where((high >= 0) & (low >= 0), high * 16 + low, -1).astype(np.int16)


_HEX_PAIR = _build_hex_pair_table()


def _as_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        if col.num_chunks == 0:
            return pa.array([], col.type)
        if pa.types.is_dictionary(col.type):
            col = col.unify_dictionaries()
            indices = pa.concat_arrays([c.indices for c in col.chunks])
            return pa.DictionaryArray.from_arrays(indices, col.chunk(0).dictionary)
        return col.combine_chunks()
    return col


def _filled_numpy(col: pa.Array | pa.ChunkedArray, fill: float | int | bool) -> np.ndarray:
    """A numeric or boolean column as numpy, nulls replaced by ``fill``.

    Columns without nulls (every well-formed file) are viewed straight from their Arrow
    buffer: ``to_numpy`` and Python scalars make pyarrow import pandas, 0.15 s of every
    stage job for nothing.
    """
    arr = _as_array(col)
    if arr.null_count == 0 and (pa.types.is_boolean(arr.type) or pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        n, offset, data = len(arr), arr.offset, arr.buffers()[1]
        if pa.types.is_boolean(arr.type):
            bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little") if n else np.zeros(0, np.uint8)
            return bits[offset : offset + n].astype(bool)
        dtype = np.dtype(arr.type.to_pandas_dtype())
        return np.frombuffer(data, dtype, count=offset + n)[offset:].copy() if n else np.zeros(0, dtype)
    return pc.fill_null(arr, fill).to_numpy(zero_copy_only=False)


def _bool_np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(_filled_numpy(arr, False), dtype=bool)


def _dict_lookup(col: pa.Array | pa.ChunkedArray, decode: Callable[[str], int]) -> np.ndarray:
    """Decode a low-cardinality string column via its dictionary: one Python call per distinct value.

    Returns int64 values, -1 where ``decode`` rejects the value or it is missing.
    """
    arr = _as_array(col)
    if not pa.types.is_dictionary(arr.type):
        arr = _as_array(pc.dictionary_encode(arr))
    table = np.array([decode(v) for v in arr.dictionary.to_pylist()] + [-1], np.int64)
    indices = pc.fill_null(arr.indices, len(table) - 1).to_numpy(zero_copy_only=False)
    return table[indices]


def _decode_hex_id(text: str | None) -> int:
    if text is None:
        return -1
    text = text.strip()
    if not _HEX_ID.fullmatch(text):
        return -1
    value = int(text, 16)
    return value if value <= MAX_CAN_ID else -1


def _decode_label(text: str | None) -> int:
    return -1 if text is None else _LABELS.get(text.strip().upper(), -1)


def _decode_dlc(text: str | None) -> int:
    if text is None:
        return -1
    text = text.strip()
    return int(text) if text.isdigit() and int(text) <= 8 else -1


def _ids(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """CAN ids (int64) and a bad-row mask; hex strings or integer columns (parquet).

    Real files write every id with the same number of digits (3 in can-train-and-test,
    4 in HCRL), so the common case is decoded straight from the string bytes; anything
    else goes through the column's dictionary (one Python call per distinct id).
    """
    if pa.types.is_integer(col.type):
        values = _filled_numpy(col, -1).astype(np.int64)
        return values, (values < 0) | (values > MAX_CAN_ID)
    arr = _as_array(col)
    if (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)) and arr.null_count == 0 and len(arr):
        offsets, _ = _string_bytes(arr)
        width = int(offsets[1] - offsets[0])
        chars = _fixed_width(arr, width) if 1 <= width <= 7 else None
        if chars is not None:
            nibbles = _HEX_NIBBLE[chars]
            if nibbles.min() >= 0:
                values = nibbles @ (16 ** np.arange(width - 1, -1, -1, dtype=np.int64))
                return values, np.zeros(len(values), bool)
    values = _dict_lookup(arr, _decode_hex_id)
    return values, values < 0


def _labels(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    if pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
        values = _filled_numpy(pc.cast(col, pa.int64()), -1)
        return values, (values != 0) & (values != 1)
    values = _dict_lookup(col, _decode_label)
    return values, values < 0


def _timestamps(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """float64 seconds and a bad-row mask (missing, not a number, or not finite)."""
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
        values = _filled_numpy(pc.cast(col, pa.float64()), np.nan)
        return values, ~np.isfinite(values)
    text = pc.utf8_trim_whitespace(col)
    valid = _bool_np(pc.match_substring_regex(text, _NUMBER_RE))
    safe = pc.if_else(pa.array(valid), text, "0") if not valid.all() else text
    values = pc.cast(safe, pa.float64()).to_numpy(zero_copy_only=False)
    return values, ~valid | ~np.isfinite(values)


def _string_bytes(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets relative to the first value, data bytes) of a string array, zero-copy."""
    n = len(arr)
    offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], offset_type)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    start = int(offsets[0])
    return offsets - start, data[start : int(offsets[-1])]


def _fixed_width(arr: pa.Array, width: int) -> np.ndarray | None:
    """(n, width) view of the bytes of a string array if every value has ``width`` bytes, else None."""
    n = len(arr)
    if n == 0:
        return np.zeros((0, width), np.uint8)
    offsets, data = _string_bytes(arr)
    if len(data) != n * width or (width and np.diff(offsets).min() != width):
        return None
    return data.reshape(n, width)


def _decode_hex_strings(col: pa.Array | pa.ChunkedArray, max_digits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hex strings of 0..max_digits digits -> (bytes (n, max_digits/2), digit count, bad mask).

    Strings are right-padded with '0' to a fixed width so the whole column becomes one
    contiguous byte buffer, decoded two characters at a time by table lookup. Rows that
    cannot be padded (missing, too long, non-ASCII) are blanked first and marked bad.
    """
    arr = _as_array(col)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.large_string())
    n = len(arr)
    lengths = _filled_numpy(pc.binary_length(arr), max_digits + 1)
    unusable = lengths > max_digits
    if unusable.any():
        arr = pc.if_else(pa.array(unusable), pa.scalar("", arr.type), arr)
    chars = _fixed_width(pc.utf8_rpad(arr, max_digits, "0"), max_digits)
    if chars is None:  # multi-byte characters made some padded values longer
        unusable |= ~_bool_np(pc.string_is_ascii(arr))
        arr = pc.if_else(pa.array(unusable), pa.scalar("", arr.type), arr)
        chars = _fixed_width(pc.utf8_rpad(arr, max_digits, "0"), max_digits)
    values = _HEX_PAIR[chars.view("<u2")]
    bad = unusable | (lengths % 2 == 1)
    if values.min(initial=0) < 0:
        bad |= (values < 0).any(axis=1)
    return values.astype(np.uint8), lengths, bad


def _decode_ctt_payload(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    payload, digits, bad = _decode_hex_strings(col, 16)
    dlc = np.where(bad, 0, digits // 2).astype(np.uint8)
    return payload, dlc, bad
