"""``read_capture``: one entry point that checks arguments, picks a reader and builds the ``Capture``.

The per-format readers only turn bytes into validated columns (``_Frames``); everything
that is the same for every format (argument checks, detection, the reader registry,
timestamp sorting, name, attack type, checksum) happens here, once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from canids.data.frames import Capture
from canids.data.readers.checks import _Frames
from canids.data.readers.ctt import _read_ctt
from canids.data.readers.detect import detect_format
from canids.data.readers.hcrl import _read_hcrl_ch, _read_hcrl_ch_txt, _read_hcrl_sa
from collections.abc import Mapping

from canids.data.readers.names import attack_family, capture_name
from canids.data.readers.order import DEFAULT_MAX_BACKWARDS_S, _Order, _order_policy, _sort_by_time
from canids.data.readers.raw import _check_exists

#: Format names accepted by ``read_capture``; ``None`` or ``"auto"`` means detect.
FORMATS: tuple[str, ...] = ("ctt", "hcrl_ch", "hcrl_ch_txt", "hcrl_sa")


def read_capture(
    path: str | Path,
    fmt: str | None = None,
    *,
    split: str = "",
    strict: bool = True,
    timestamp_order: str = "strict",
    max_backwards_s: float = DEFAULT_MAX_BACKWARDS_S,
    attack_families: Mapping[str, str] | None = None,
    sha256: str | None = None,
) -> Capture:
    """Read one raw capture file into a ``Capture``.

    Args:
        path: the file (``.csv``, ``.csv.gz``, ``.parquet``, ``.txt``).
        fmt: one of ``FORMATS``; ``None`` or ``"auto"`` detects it (``detect_format``).
        split: split directory the file belongs to, recorded on the capture.
        strict: raise ``DataFormatError`` at the first bad row (default). With
            ``strict=False`` bad rows are skipped and counted in ``skipped_rows``
            (per-reason counts in ``meta["skipped_by_reason"]``).
        timestamp_order: ``"strict"`` (default): a frame whose timestamp goes back in
            time is a bad row (error in strict mode, dropped in lenient mode).
            ``"sort"``: frames going back by at most ``max_backwards_s`` are kept and the
            capture is stable-sorted by timestamp; ``meta["reordered_rows"]`` counts the
            rows that were out of order (earlier than some frame before them). A larger
            backward jump is still a bad row.
        max_backwards_s: tolerated backward jump in seconds with ``timestamp_order="sort"``
            (ignored with ``"strict"``); ``math.inf`` sorts whatever the jump.
        attack_families: the catalog's per-dataset name patterns -> attack family, tried
            before the name rules (``attack_type_from_name``).
        sha256: the file's digest when the caller has just computed it (a dataset's file
            list hashes every capture to find duplicates; hashing the bytes again cost 3 %
            of preprocessing); None hashes the bytes read.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown ``fmt`` or ``timestamp_order``, or a negative/NaN ``max_backwards_s``.
        DataFormatError: bad content; also in lenient mode when no frame is left.
    """
    path = Path(path)
    order = _order_policy(timestamp_order, max_backwards_s)
    _check_exists(path)
    if fmt in (None, "auto"):
        fmt = detect_format(path)
    if fmt not in _READERS:
        raise ValueError(f"unknown capture format {fmt!r} for {path}; expected one of {', '.join(FORMATS)} or 'auto'")
    raw = path.read_bytes()
    frames = _READERS[fmt](path, raw, strict, order)
    meta: dict = {"format": fmt}
    if frames.skipped:
        meta["skipped_by_reason"] = frames.skipped_by_reason
    if order.sort:
        meta["reordered_rows"] = _sort_by_time(frames)
    name = capture_name(path)
    return Capture(
        timestamp=frames.timestamp,
        can_id=frames.can_id,
        dlc=frames.dlc,
        payload=frames.payload,
        label=frames.label,
        name=name,
        split=split,
        attack_type=attack_family(name, bool(frames.label.any()), attack_families),
        source=str(path),
        sha256=sha256 or hashlib.sha256(raw).hexdigest(),
        skipped_rows=frames.skipped,
        meta=meta,
    )


_READERS: dict[str, Callable[[Path, bytes, bool, _Order], _Frames]] = {
    "ctt": _read_ctt,
    "hcrl_ch": _read_hcrl_ch,
    "hcrl_ch_txt": _read_hcrl_ch_txt,
    "hcrl_sa": _read_hcrl_sa,
}
