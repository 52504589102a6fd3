"""Readers for every raw CAN format users have on disk, all producing one ``Capture``.

Why this package looks the way it does:

* Speed. A training run starts by reading millions of frames, so the common case
  (can-train-and-test CSV, format ``"ctt"``) is parsed by pyarrow's C++ CSV reader with
  explicit column types and decoded with numpy lookup tables: no per-row Python.
  Validation is vectorised too; only once a problem is found is the file re-read by a
  slower, line-exact path that can say *which line* is wrong.
* Honesty about bad data. Every bad row is either an error naming the file, line,
  offending value and what was expected (strict mode, the default), or is skipped and
  counted in ``Capture.skipped_rows`` (lenient mode). Nothing is dropped silently.
* One exact path for every text format. The line-exact path tokenises the whole file
  with numpy (separator positions -> token offsets -> one Arrow string array), so line
  numbers are exact even with blank lines or CRLF endings, and the HCRL formats (whose
  rows have a variable number of fields) use it as their main, still vectorised, path.

Formats (``fmt``):

``"ctt"``
    can-train-and-test v1.5: header ``timestamp,arbitration_id,data_field,attack``, ID in
    hex, payload one hex string of 0-16 digits (DLC = digits / 2), attack 0/1. Also
    ``.csv.gz`` and ``.parquet`` with the same columns.
``"hcrl_ch"``
    HCRL Car-Hacking CSV, headerless: ``Timestamp,CAN ID,DLC,DATA[0..DLC-1],Flag``; rows
    with DLC < 8 are shorter and the flag (R normal / T injected) sits at DATA[DLC].
``"hcrl_ch_txt"``
    Car-Hacking ``normal_run_data.txt``: ``Timestamp: <s> ID: <hex> <rtr> DLC: <n> <bytes>``;
    every frame is normal.
``"hcrl_sa"``
    HCRL survival-analysis text: ``timestamp,CAN ID,DLC,byte0..byte(DLC-1)[,flag]``; the
    flag (R/T or 0/1) is present in attack files only, absent means all frames normal.

Labels are accepted as ``0``/``1`` or ``R``/``T`` (case-insensitive) in every format.

Timestamp order (``timestamp_order``), the same for every format:

``"strict"`` (default)
    A frame stamped earlier than any frame before it is a bad row: an error naming file,
    line and value in strict mode, dropped and counted in lenient mode.
``"sort"``
    Opt-in, per dataset via the catalog. can-train-and-test stamps some injected frames
    slightly ahead of the normal frames that follow them, so timestamps go back by up to
    ~100 us at a few places; reading such a file strictly fails, and dropping the rows
    loses attack frames. ``"sort"`` keeps every frame and stable-sorts the capture by
    timestamp; the number of rows that were out of order is in
    ``Capture.meta["reordered_rows"]``. A jump back by more than ``max_backwards_s``
    (default 10 ms) is still a bad row as above, because that is a corrupted or
    concatenated file, not stamping jitter.

A UTF-8 byte-order mark at the start of a text capture (Excel's "CSV UTF-8") is ignored,
plain or gzip-compressed.

Package layout, one job per module (all imports absolute, so the workflow's code digest
sees every module a stage runs):

``api``       ``read_capture`` and the format -> reader registry
``detect``    ``detect_format``: sniffing the first lines
``ctt``       can-train-and-test CSV / ``.csv.gz`` / parquet reader
``hcrl``      HCRL Car-Hacking CSV, ``normal_run_data.txt`` and survival-analysis readers
``tokenise``  the line-exact, vectorised tokeniser the exact paths share
``decode``    hex / number / DLC / label column decoders and their lookup tables
``checks``    per-row checks, strict vs lenient, decoded ``_Frames``
``order``     the timestamp-order policy, its check and the stable sort
``raw``       file bytes: existence, gzip, UTF-8 BOM
``errors``    ``DataFormatError`` and the standard bad-row message
``names``     ``capture_name`` and ``attack_type_from_name``
"""

from __future__ import annotations

from canids.data.readers.api import FORMATS, read_capture
from canids.data.readers.ctt import CTT_COLUMNS
from canids.data.readers.detect import detect_format
from canids.data.readers.errors import DataFormatError
from canids.data.readers.names import CAPTURE_SUFFIXES, attack_type_from_name, capture_name
from canids.data.readers.order import DEFAULT_MAX_BACKWARDS_S, TIMESTAMP_ORDERS

__all__ = [
    "CAPTURE_SUFFIXES",
    "CTT_COLUMNS",
    "DEFAULT_MAX_BACKWARDS_S",
    "FORMATS",
    "TIMESTAMP_ORDERS",
    "DataFormatError",
    "attack_type_from_name",
    "capture_name",
    "detect_format",
    "read_capture",
]
