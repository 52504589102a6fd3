"""Reader for can-train-and-test captures (format ``"ctt"``): CSV, ``.csv.gz`` and parquet.

This is the format of most training data, so it has a fast path: pyarrow's C++ CSV reader
with explicit column types, validated with vectorised checks. Only when a check fails is
the file re-read by the line-exact path (``canids.data.readers.tokenise``), which can name
the line; both paths decode through the same ``_ctt_checks`` so they agree frame for frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from canids.data.frames import MAX_CAN_ID
from canids.data.readers.checks import _Checks, _Frames, _materialise, _values_of
from canids.data.readers.decode import _decode_ctt_payload, _ids, _labels, _timestamps
from canids.data.readers.errors import DataFormatError, _shorten
from canids.data.readers.order import _STRICT_ORDER, _add_order_check, _Order
from canids.data.readers.raw import _PARQUET_MAGIC, _text_bytes
from canids.data.readers.tokenise import _tokenise

#: can-train-and-test column names, in file order.
CTT_COLUMNS: tuple[str, ...] = ("timestamp", "arbitration_id", "data_field", "attack")


def _is_ctt_header(line: str) -> bool:
    return [p.strip().lower() for p in line.split(",")] == list(CTT_COLUMNS)


def _read_ctt(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    if raw.startswith(_PARQUET_MAGIC) or path.name.lower().endswith(".parquet"):
        return _read_ctt_parquet(path, raw, strict, order)
    data = _text_bytes(path, raw)
    frames = _read_ctt_fast(data, order)
    if frames is not None:
        return frames
    return _read_ctt_exact(path, data, strict, order)


_Column = pa.Array | pa.ChunkedArray


def _ctt_checks(
    checks: _Checks,
    ts_col: _Column,
    id_col: _Column,
    data_col: _Column,
    label_col: _Column,
    value_cols: Sequence[_Column],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode and validate the four ctt columns into ``checks``; returns (ts, ids, dlc, payload, labels)."""
    ts, bad_ts = _timestamps(ts_col)
    checks.add(bad_ts, "timestamp", "a finite number of seconds", _values_of(value_cols[0]))
    ids, bad_id = _ids(id_col)
    checks.add(bad_id, "arbitration_id", f"1-8 hex digits, at most 0x{MAX_CAN_ID:X}", _values_of(value_cols[1]))
    payload, dlc, bad_payload = _decode_ctt_payload(data_col)
    checks.add(
        bad_payload,
        "data_field",
        "an even number (0-16) of hex digits, i.e. at most 8 payload bytes",
        _values_of(value_cols[2]),
    )
    labels, bad_label = _labels(label_col)
    checks.add(bad_label, "attack label", "0 or 1 (or R/T)", _values_of(value_cols[3]))
    return ts, ids, dlc, payload, labels


def _read_ctt_fast(data: bytes, order: _Order = _STRICT_ORDER) -> _Frames | None:
    """Typed pyarrow parse; ``None`` whenever anything looks wrong (the exact path then explains).

    Single-threaded on purpose: the workflow parallelises over files and jobs, and the
    benchmark measures one core.
    """
    newline = data.find(b"\n")
    header = (data if newline < 0 else data[:newline]).decode("ascii", errors="replace")
    if not _is_ctt_header(header):
        return None
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(
                use_threads=False, column_names=list(CTT_COLUMNS), skip_rows=1, block_size=1 << 26
            ),
            parse_options=pacsv.ParseOptions(quote_char=False, escape_char=False, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={
                    "timestamp": pa.float64(),
                    "arbitration_id": pa.string(),
                    "data_field": pa.string(),
                    "attack": pa.int8(),  # R/T or junk fail here; the exact path handles them
                },
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows == 0:
        return None
    cols = [table.column(name) for name in CTT_COLUMNS]
    checks = _Checks(table.num_rows)
    ts, ids, dlc, payload, labels = _ctt_checks(checks, *cols, value_cols=cols)
    _add_order_check(checks, ts, None, lambda i: repr(float(ts[i])), order)
    if checks.any_bad():
        return None
    return _materialise(Path(), checks, np.zeros(0), "line", True, ts, ids, dlc, payload, labels)


def _read_ctt_exact(path: Path, data: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    """Line-exact ctt parse: every problem is reported with its true line number."""
    rows = _tokenise(data, b",")
    if len(rows) == 0:
        raise DataFormatError(f"{path}: empty file, no frames", path=path)
    header = rows.text_of(0)
    if not _is_ctt_header(header):
        raise DataFormatError(
            f"{path}, line {int(rows.line[0])}: bad header {_shorten(header)!r}; expected '{','.join(CTT_COLUMNS)}'",
            path=path,
            line=int(rows.line[0]),
            value=header,
        )
    rows = rows.drop_first()
    checks = _Checks(len(rows))
    checks.add(
        rows.count != 4,
        "row",
        f"4 comma-separated fields ({','.join(CTT_COLUMNS)})",
        rows.text_of,
        lambda i: f"4 comma-separated fields ({','.join(CTT_COLUMNS)}), got {int(rows.count[i])}",
    )
    cols = [rows.column(j) for j in range(4)]
    ts, ids, dlc, payload, labels = _ctt_checks(checks, *cols, value_cols=cols)
    _add_order_check(checks, ts, rows.line, _values_of(cols[0]), order)
    return _materialise(path, checks, rows.line, "line", strict, ts, ids, dlc, payload, labels)


def _read_ctt_parquet(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(raw), use_threads=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(f"{path}: unreadable parquet file ({exc})", path=path) from exc
    missing = [c for c in CTT_COLUMNS if c not in table.column_names]
    if missing:
        raise DataFormatError(
            f"{path}: parquet columns {table.column_names}; expected columns {', '.join(CTT_COLUMNS)} "
            f"(missing {', '.join(missing)})",
            path=path,
            value=",".join(table.column_names),
        )
    cols = [table.column(name) for name in CTT_COLUMNS]
    id_col = cols[1]
    if not (pa.types.is_integer(id_col.type) or pa.types.is_string(id_col.type) or pa.types.is_large_string(id_col.type)):
        id_col = pc.cast(id_col, pa.string())
    checks = _Checks(table.num_rows)
    ts, ids, dlc, payload, labels = _ctt_checks(checks, cols[0], id_col, cols[2], cols[3], value_cols=cols)
    rows = np.arange(1, table.num_rows + 1)
    _add_order_check(checks, ts, rows, _values_of(cols[0]), order)
    return _materialise(path, checks, rows, "row", strict, ts, ids, dlc, payload, labels)
