"""Readers for the HCRL formats: Car-Hacking CSV, ``normal_run_data.txt``, survival-analysis text.

HCRL rows have a variable number of fields (the payload has DLC bytes, one field each, and
the flag follows them), which pyarrow's typed CSV reader cannot express; these readers run
on the line-exact tokeniser, still vectorised, and share its exact line numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from canids.data.frames import MAX_CAN_ID
from canids.data.readers.checks import _Checks, _Frames, _materialise, _values_of
from canids.data.readers.decode import (
    _bool_np,
    _decode_dlc,
    _decode_hex_strings,
    _dict_lookup,
    _ids,
    _labels,
    _timestamps,
)
from canids.data.readers.errors import DataFormatError
from canids.data.readers.order import _STRICT_ORDER, _add_order_check, _Order
from canids.data.readers.raw import _text_bytes
from canids.data.readers.tokenise import _Rows, _tokenise


def _decode_byte_columns(rows: _Rows, dlc: np.ndarray, first_byte: int) -> tuple[np.ndarray, np.ndarray]:
    """Payload from one token per byte (``6f``), bytes ``first_byte..first_byte+dlc-1`` of each row."""
    n = len(rows)
    payload = np.zeros((n, 8), np.uint8)
    bad = np.zeros(n, bool)
    for j in range(8):
        present = dlc > j
        if not present.any():
            break
        tokens = rows.column(first_byte + j)
        tokens = pc.if_else(pa.array(present), tokens, pa.scalar("00", tokens.type))
        tokens = pc.utf8_lpad(tokens, 2, "0")  # a lone digit '5' means 0x05
        values, _, bad_j = _decode_hex_strings(tokens, 2)
        payload[:, j] = np.where(present, values[:, 0], 0)
        bad |= present & bad_j
    return payload, bad


def _read_hcrl_csv(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER, *, flag: str) -> _Frames:
    """Shared parser for ``hcrl_ch`` (flag required) and ``hcrl_sa`` (flag optional per file)."""
    data = _text_bytes(path, raw)
    rows = _tokenise(data, b",")
    if len(rows) == 0:
        raise DataFormatError(f"{path}: empty file, no frames", path=path)
    n = len(rows)
    checks = _Checks(n)
    text_of = rows.text_of
    checks.add(rows.count < 3, "row", "comma-separated 'timestamp,CAN ID,DLC,bytes...,flag'", text_of)
    ts_tok, id_tok, dlc_tok = rows.column(0), rows.column(1), rows.column(2)
    ts, bad_ts = _timestamps(ts_tok)
    checks.add(bad_ts, "timestamp", "a finite number of seconds", _values_of(ts_tok))
    ids, bad_id = _ids(id_tok)
    checks.add(bad_id, "CAN ID", f"1-8 hex digits, at most 0x{MAX_CAN_ID:X}", _values_of(id_tok))
    dlc_raw = _dict_lookup(dlc_tok, _decode_dlc)
    checks.add(dlc_raw < 0, "DLC", "an integer 0..8", _values_of(dlc_tok))
    dlc = np.where(dlc_raw < 0, 0, dlc_raw)
    has_flag = _has_flag(rows, dlc, checks.ok) if flag == "optional" else True
    expected_count = dlc + 3 + int(has_flag)
    shape = "timestamp,CAN ID,DLC,DLC bytes" + (",flag" if has_flag else "")
    checks.add(
        rows.count != expected_count,
        "row",
        f"{3 + int(has_flag)} + DLC comma-separated fields ({shape})",
        text_of,
        lambda i: f"{3 + int(has_flag)} + DLC = {int(expected_count[i])} comma-separated fields ({shape}), "
        f"got {int(rows.count[i])}",
    )
    payload, bad_payload = _decode_byte_columns(rows, dlc, 3)
    checks.add(bad_payload, "data byte", "DLC payload bytes of 1-2 hex digits each", text_of)
    if has_flag:
        flag_tok = rows.column(3 + dlc)
        labels, bad_label = _labels(flag_tok)
        checks.add(bad_label, "flag", "R or T (or 0/1)", _values_of(flag_tok))
    else:
        labels = np.zeros(n, np.int64)
    _add_order_check(checks, ts, rows.line, _values_of(ts_tok), order)
    return _materialise(path, checks, rows.line, "line", strict, ts, ids, dlc, payload, labels)


def _has_flag(rows: _Rows, dlc: np.ndarray, ok: np.ndarray) -> bool:
    """Whether this survival-analysis file carries a flag column, from its first well-formed row."""
    candidates = np.flatnonzero(ok & ((rows.count == dlc + 3) | (rows.count == dlc + 4)))
    if candidates.size == 0:
        return False
    i = int(candidates[0])
    return bool(rows.count[i] == dlc[i] + 4)


def _read_hcrl_ch(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    return _read_hcrl_csv(path, raw, strict, order, flag="required")


def _read_hcrl_sa(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    return _read_hcrl_csv(path, raw, strict, order, flag="optional")


_TXT_KEYWORDS = ((0, "Timestamp:"), (2, "ID:"), (5, "DLC:"))  # token index, expected text
_TXT_SHAPE = "'Timestamp: <seconds> ID: <hex> <rtr> DLC: <0-8> <DLC hex bytes>'"


def _squeeze_blanks(data: bytes) -> bytes:
    """Collapse runs of spaces/tabs to one space and drop them at line ends.

    ``normal_run_data.txt`` aligns its columns with runs of spaces; once squeezed, a
    single space is a field separator and the shared tokeniser applies (regex kernels
    were 20x slower). Newlines are kept, so line numbers do not move.
    """
    buf = np.frombuffer(data, np.uint8)
    blank = (buf == 32) | (buf == 9)
    if not blank.any():
        return data
    edge = (buf == 10) | (buf == 13)
    before = np.concatenate(([True], blank[:-1] | edge[:-1]))  # preceded by blank / line start
    after = np.concatenate((edge[1:], [True]))  # followed by a line end / EOF
    drop = blank & (before | after)
    out = buf[~drop]
    out[out == 9] = 32
    return out.tobytes()


def _read_hcrl_ch_txt(path: Path, raw: bytes, strict: bool, order: _Order = _STRICT_ORDER) -> _Frames:
    """``normal_run_data.txt``: space-separated tokens ``Timestamp: ts ID: id rtr DLC: n b0 ..``."""
    data = _text_bytes(path, raw)
    rows = _tokenise(_squeeze_blanks(data), b" ", original=data)
    if len(rows) == 0:
        raise DataFormatError(f"{path}: empty file, no frames", path=path)
    n = len(rows)
    text_of = rows.text_of
    checks = _Checks(n)
    malformed = rows.count < 7
    for index, keyword in _TXT_KEYWORDS:
        malformed |= ~_bool_np(pc.equal(rows.column(index), keyword))
    checks.add(malformed, "line", _TXT_SHAPE, text_of)
    ts_tok, id_tok, dlc_tok = rows.column(1), rows.column(3), rows.column(6)
    ts, bad_ts = _timestamps(ts_tok)
    checks.add(bad_ts, "timestamp", "a finite number of seconds", _values_of(ts_tok))
    ids, bad_id = _ids(id_tok)
    checks.add(bad_id, "ID", f"1-8 hex digits, at most 0x{MAX_CAN_ID:X}", _values_of(id_tok))
    dlc_raw = _dict_lookup(dlc_tok, _decode_dlc)
    checks.add(dlc_raw < 0, "DLC", "an integer 0..8", _values_of(dlc_tok))
    dlc = np.where(dlc_raw < 0, 0, dlc_raw)
    data_of = lambda i: " ".join(text_of(i).split()[7:])  # noqa: E731 - the bytes part of the line
    checks.add(
        rows.count != dlc + 7,
        "data bytes",
        "DLC space-separated bytes",
        data_of,
        lambda i: f"DLC = {int(dlc[i])} space-separated bytes, got {int(rows.count[i]) - 7}",
    )
    payload, bad_payload = _decode_byte_columns(rows, dlc, 7)
    checks.add(bad_payload, "data bytes", "bytes of 1-2 hex digits each", data_of)
    _add_order_check(checks, ts, rows.line, _values_of(ts_tok), order)
    labels = np.zeros(n, np.uint8)
    return _materialise(path, checks, rows.line, "line", strict, ts, ids, dlc, payload, labels)
