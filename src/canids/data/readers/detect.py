"""Format detection: which reader a file needs, from its extension and first lines.

Detection exists so users can point the catalog at original HCRL downloads without
converting them or naming the format. It reads only the first 64 KiB (decompressed, BOM
removed) and never parses the whole file.
"""

from __future__ import annotations

from pathlib import Path

from canids.data.readers.ctt import CTT_COLUMNS, _is_ctt_header
from canids.data.readers.decode import _HEX_ID
from canids.data.readers.errors import DataFormatError, _shorten
from canids.data.readers.raw import _PARQUET_MAGIC, _check_exists, _head_bytes


def _first_lines(head: bytes, count: int) -> list[str]:
    """Up to ``count`` non-blank lines from the start of ``head`` (the last may be cut off)."""
    text = head.decode("ascii", errors="replace")
    out: list[str] = []
    for line in text.split("\n", 64 * count):
        line = line.strip()
        if line:
            out.append(line)
            if len(out) == count:
                break
    return out


def _looks_hcrl_row(line: str) -> tuple[bool, bool, str]:
    """(is an HCRL comma row, has a flag column, flag value) for one sniffed line."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) < 3 or not _is_float(parts[0]) or not _HEX_ID.fullmatch(parts[1]):
        return False, False, ""
    if not parts[2].isdigit() or int(parts[2]) > 8:
        return False, False, ""
    dlc = int(parts[2])
    if len(parts) == dlc + 4:
        return True, True, parts[-1].upper()
    return (len(parts) == dlc + 3), False, ""


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def detect_format(path: str | Path) -> str:
    """Name of the format of ``path`` (one of ``FORMATS``), from its extension and first lines.

    Detection exists so users can point the catalog at original HCRL downloads without
    converting them. Rules: ``.parquet`` -> ``ctt``; a can-train-and-test header -> ``ctt``;
    lines starting ``Timestamp:`` -> ``hcrl_ch_txt``; headerless ``ts,id,dlc,bytes...`` rows
    -> ``hcrl_ch`` when every sniffed row ends in an R/T flag and the file is not ``.txt``,
    else ``hcrl_sa``. Raises ``FileNotFoundError`` for a missing file and
    ``DataFormatError`` for an empty or unrecognised one.
    """
    path = Path(path)
    _check_exists(path)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == _PARQUET_MAGIC or path.name.lower().endswith(".parquet"):
        return "ctt"
    lines = _first_lines(_head_bytes(path), 5)
    if not lines:
        raise DataFormatError(f"{path}: empty file, no frames", path=path)
    first = lines[0]
    if _is_ctt_header(first):
        return "ctt"
    if first.lower().startswith("timestamp:"):
        return "hcrl_ch_txt"
    rows = [_looks_hcrl_row(line) for line in lines[:-1] or lines]  # last sniffed line may be cut
    if rows and all(ok for ok, _, _ in rows):
        is_txt = path.name.lower().endswith((".txt", ".txt.gz"))
        if all(flag and value in ("R", "T") for _, flag, value in rows) and not is_txt:
            return "hcrl_ch"
        return "hcrl_sa"
    raise DataFormatError(
        f"{path}, line 1: unrecognised CAN capture format, first line {_shorten(first)!r}; expected one of: "
        f"a can-train-and-test header '{','.join(CTT_COLUMNS)}' (ctt), "
        "'Timestamp: <s> ID: <hex> <rtr> DLC: <n> <bytes>' (hcrl_ch_txt), or headerless "
        "'timestamp,CAN ID,DLC,byte0..,flag' rows (hcrl_ch / hcrl_sa)",
        path=path,
        line=1,
        value=first,
    )
