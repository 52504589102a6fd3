"""Raw CAN readers: every format, detection, and every kind of bad input.

Each kind of bad input has its own test so a regression names exactly which check broke;
errors must name file, line, offending value and what was expected, because a user with
a 2 GB capture cannot bisect it by hand.
"""

from __future__ import annotations

import csv
import os
import gzip
import hashlib
import math
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from canids.data.readers import (
    DataFormatError,
    attack_type_from_name,
    capture_name,
    detect_format,
    read_capture,
)
from canids.data.readers.ctt import _read_ctt_exact, _read_ctt_fast
from canids.data.readers.order import _order_policy

FIXTURES = Path(__file__).parent / "fixtures" / "raw"
REAL_DATA = Path(os.environ.get("CAN_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data" / "can")
CTT_HEADER = "timestamp,arbitration_id,data_field,attack\n"
COLUMNS = ("timestamp", "can_id", "dlc", "payload", "label")
UTF8_BOM = b"\xef\xbb\xbf"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def ctt(tmp_path: Path, *rows: str, name: str = "cap.csv") -> Path:
    return write(tmp_path, name, CTT_HEADER + "".join(r + "\n" for r in rows))


GOOD = [
    "1.000,0C1,1C030040A0F0E0D0,0",
    "1.001,000,0000000000000000,1",
    "1.002,2B0,FF7F00051C,0",
]


def ctt_counts(path: Path) -> tuple[int, int]:
    """(data rows, rows labelled attack) of a can-train-and-test CSV, counted with the csv module."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return len(rows), sum(row["attack"].strip().upper() in ("1", "T") for row in rows)


def hcrl_counts(path: Path) -> tuple[int, int]:
    """(rows, rows flagged T or 1) of a headerless HCRL comma file; a flag is the field after the DLC bytes."""
    with open(path, newline="") as handle:
        rows = [[field.strip() for field in row] for row in csv.reader(handle) if row]
    flags = [row[3 + int(row[2])] for row in rows if len(row) == 4 + int(row[2])]
    return len(rows), sum(flag.upper() in ("T", "1") for flag in flags)


def out_of_order(timestamps: list[float]) -> int:
    """How many timestamps are earlier than some timestamp before them."""
    count, latest = 0, -math.inf
    for ts in timestamps:
        count += ts < latest
        latest = max(latest, ts)
    return count


def first_field_times(rows: list[str]) -> list[float]:
    return [float(row.split(",")[0]) for row in rows]


def assert_message(err: DataFormatError, path: Path, line: int, value: str) -> None:
    """The message must let a user find and fix the row without reading the code."""
    text = str(err)
    assert err.path == str(path) and str(path) in text
    assert err.line == line and f"line {line}" in text
    assert err.value == value and repr(value) in text
    assert "expected" in text


# ------------------------------------------------------------------------ fixtures


def test_ctt_fixture() -> None:
    path = FIXTURES / "DoS-1.csv"
    n_rows, n_attack = ctt_counts(path)
    cap = read_capture(path, split="train_02_with_attacks")
    assert len(cap) == n_rows and cap.n_attack == n_attack
    assert 0 < n_attack < n_rows
    assert cap.name == "DoS-1" and cap.attack_type == "dos" and cap.split == "train_02_with_attacks"
    assert cap.source == str(path)
    assert cap.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert cap.timestamp.dtype == np.float64 and cap.can_id.dtype == np.int32
    assert cap.dlc.dtype == np.uint8 and cap.payload.dtype == np.uint8 and cap.label.dtype == np.uint8
    assert cap.payload.shape == (n_rows, 8)
    # row 3: 000200000000 (6 bytes) -> zero-padded past the DLC
    assert cap.dlc[2] == 6 and list(cap.payload[2]) == [0, 2, 0, 0, 0, 0, 0, 0]
    assert cap.can_id[2] == 0x184
    # lower-case hex is accepted
    assert list(cap.payload[14]) == [0x10, 0x38, 0xB1, 0x32, 0x13, 0xEF, 0x76, 0x96]
    # an empty data_field is a DLC 0 frame, not an error
    assert cap.dlc[11] == 0 and not cap.payload[11].any() and cap.can_id[11] == 0x3E9
    assert cap.skipped_rows == 0
    assert np.all(np.diff(cap.timestamp) >= 0)  # equal timestamps (rows 20, 21) are fine


def test_ctt_gzip_and_parquet_match_csv(tmp_path: Path) -> None:
    src = FIXTURES / "DoS-1.csv"
    ref = read_capture(src)
    gz = tmp_path / "DoS-1.csv.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    table = pacsv.read_csv(src, convert_options=pacsv.ConvertOptions(
        column_types={"arbitration_id": pa.string(), "data_field": pa.string()}, strings_can_be_null=False))
    pqf = tmp_path / "DoS-1.parquet"
    pq.write_table(table, pqf)
    for path in (gz, pqf):
        assert detect_format(path) == "ctt"
        cap = read_capture(path)
        assert cap.name == "DoS-1"
        assert cap.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        for col in COLUMNS:
            np.testing.assert_array_equal(getattr(cap, col), getattr(ref, col))


def test_parquet_bad_row_names_row(tmp_path: Path) -> None:
    table = pa.table({
        "timestamp": [1.0, 2.0, 3.0],
        "arbitration_id": ["0C1", "XYZ", "0C1"],
        "data_field": ["00", "00", "00"],
        "attack": [0, 0, 0],
    })
    path = tmp_path / "cap.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert info.value.line == 2 and "row 2" in str(info.value) and info.value.value == "XYZ"


def test_hcrl_ch_fixture_with_shifted_short_rows() -> None:
    path = FIXTURES / "DoS_dataset_sample.csv"
    assert detect_format(path) == "hcrl_ch"
    n_rows, n_attack = hcrl_counts(path)
    cap = read_capture(path)
    assert len(cap) == n_rows and cap.n_attack == n_attack
    assert 0 < n_attack < n_rows
    assert cap.attack_type == "dos" and cap.name == "DoS_dataset_sample"
    # 1478198376.389636,02b0,5,ff,7f,00,05,49,R : flag sits at DATA[5]
    assert cap.can_id[1] == 0x2B0 and cap.dlc[1] == 5 and cap.label[1] == 0
    assert list(cap.payload[1]) == [0xFF, 0x7F, 0x00, 0x05, 0x49, 0, 0, 0]
    # 05f0,2,01,00,R
    assert cap.dlc[17] == 2 and list(cap.payload[17]) == [1, 0, 0, 0, 0, 0, 0, 0]
    assert cap.label[2] == 1 and cap.can_id[2] == 0


def test_hcrl_ch_txt_fixture() -> None:
    path = FIXTURES / "normal_run_data_sample.txt"
    assert detect_format(path) == "hcrl_ch_txt"
    n_rows = sum(1 for line in path.read_text().splitlines() if line.strip())
    cap = read_capture(path)
    assert len(cap) == n_rows and cap.n_attack == 0 and cap.attack_type == "normal"
    assert cap.can_id[0] == 0x350 and list(cap.payload[0]) == [0x05, 0x28, 0x84, 0x66, 0x6D, 0, 0, 0xA2]
    assert cap.dlc[11] == 5 and list(cap.payload[11]) == [0xFF, 0x7F, 0, 5, 0x49, 0, 0, 0]
    assert cap.dlc[28] == 0 and not cap.payload[28].any()


def test_hcrl_sa_fixture_with_flags() -> None:
    path = FIXTURES / "Flooding_sonata_sample.txt"
    assert detect_format(path) == "hcrl_sa"
    n_rows, n_attack = hcrl_counts(path)
    cap = read_capture(path)
    assert len(cap) == n_rows and cap.n_attack == n_attack and cap.attack_type == "dos"
    assert 0 < n_attack < n_rows
    assert cap.dlc[2] == 5 and list(cap.payload[2]) == [0xFF, 0x7F, 0, 5, 0x1C, 0, 0, 0]
    assert cap.label[2] == 0 and cap.label[4] == 1


def test_hcrl_sa_fixture_without_flags_is_all_normal() -> None:
    path = FIXTURES / "Free_driving_sonata_sample.txt"
    assert detect_format(path) == "hcrl_sa"
    n_rows, n_flagged = hcrl_counts(path)
    assert n_flagged == 0  # no flag column: every frame is normal
    cap = read_capture(path)
    assert len(cap) == n_rows and cap.n_attack == 0 and cap.attack_type == "normal"
    assert cap.dlc[21] == 0 and cap.can_id[21] == 0
    assert cap.dlc[8] == 2 and list(cap.payload[8][:3]) == [1, 0, 0]


def test_hcrl_sa_accepts_numeric_flags_and_spaces(tmp_path: Path) -> None:
    path = write(tmp_path, "Fuzzy_sample.txt", "1.0, 0110, 2, d0, 1c, 0\n1.1, 0000, 1, ff, 1\n")
    cap = read_capture(path, "hcrl_sa")
    assert list(cap.label) == [0, 1] and list(cap.dlc) == [2, 1] and cap.attack_type == "fuzzing"


def test_explicit_format_and_auto(tmp_path: Path) -> None:
    path = FIXTURES / "DoS-1.csv"
    n_rows, _ = ctt_counts(path)
    assert len(read_capture(path, "ctt")) == len(read_capture(path, "auto")) == n_rows
    with pytest.raises(ValueError, match="unknown capture format"):
        read_capture(path, "candump")


def test_crlf_blank_lines_and_r_t_labels(tmp_path: Path) -> None:
    text = CTT_HEADER.replace("\n", "\r\n") + "1.0,0C1,00,0\r\n\r\n1.1,0C2,0102,T\r\n1.2,0C3,,R\r\n"
    cap = read_capture(write(tmp_path, "cap.csv", text))
    assert list(cap.label) == [0, 1, 0] and list(cap.can_id) == [0xC1, 0xC2, 0xC3]


# ------------------------------------------------------------- UTF-8 byte-order mark


def with_and_without_bom(tmp_path: Path, name: str, data: bytes, compress: bool) -> tuple[Path, Path]:
    """The same capture written twice, the second with a UTF-8 BOM in front (then gzipped if asked)."""
    pack = gzip.compress if compress else bytes
    suffix = ".gz" if compress else ""
    plain, bom = tmp_path / "plain" / (name + suffix), tmp_path / "bom" / (name + suffix)
    for path, content in ((plain, data), (bom, UTF8_BOM + data)):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(pack(content))
    return plain, bom


@pytest.mark.parametrize("compress", [False, True], ids=["csv", "csv.gz"])
def test_ctt_with_utf8_bom_reads_as_without(tmp_path: Path, compress: bool) -> None:
    """Excel's "CSV UTF-8" starts the file with a BOM; it must not reach the header check."""
    plain, bom = with_and_without_bom(tmp_path, "cap.csv", (CTT_HEADER + "".join(r + "\n" for r in GOOD)).encode(), compress)
    assert detect_format(bom) == detect_format(plain) == "ctt"
    ref = read_capture(plain)
    for fmt in (None, "ctt"):
        cap = read_capture(bom, fmt)
        assert len(cap) == len(GOOD) and cap.skipped_rows == 0 and cap.meta == ref.meta
        for col in COLUMNS:
            np.testing.assert_array_equal(getattr(cap, col), getattr(ref, col))


@pytest.mark.parametrize("compress", [False, True], ids=["csv", "csv.gz"])
def test_ctt_with_utf8_bom_bad_row_keeps_its_line_number(tmp_path: Path, compress: bool) -> None:
    """The line-exact path must see the BOM-free header too, and count lines as without it."""
    rows = [GOOD[0], "1.0005,0G1,00,0", *GOOD[1:]]
    plain, bom = with_and_without_bom(tmp_path, "cap.csv", (CTT_HEADER + "".join(r + "\n" for r in rows)).encode(), compress)
    with pytest.raises(DataFormatError) as info:
        read_capture(bom)
    assert_message(info.value, bom, 3, "0G1")
    ref, cap = read_capture(plain, strict=False), read_capture(bom, strict=False)
    assert cap.skipped_rows == ref.skipped_rows == 1 and cap.meta == ref.meta
    for col in COLUMNS:
        np.testing.assert_array_equal(getattr(cap, col), getattr(ref, col))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize(
    "fixture",
    ["DoS-1.csv", "DoS_dataset_sample.csv", "normal_run_data_sample.txt", "Flooding_sonata_sample.txt", "Free_driving_sonata_sample.txt"],
)
def test_every_text_format_ignores_a_utf8_bom(tmp_path: Path, fixture: str, compress: bool) -> None:
    plain, bom = with_and_without_bom(tmp_path, fixture, (FIXTURES / fixture).read_bytes(), compress)
    fmt = detect_format(plain)
    assert detect_format(bom) == fmt
    ref = read_capture(plain)
    for cap in (read_capture(bom), read_capture(bom, fmt)):
        assert cap.skipped_rows == 0 and cap.meta == ref.meta
        for col in COLUMNS:
            np.testing.assert_array_equal(getattr(cap, col), getattr(ref, col))


# -------------------------------------------------------------- format detection


def test_detect_unknown_format(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(DataFormatError, match="unrecognised CAN capture format") as info:
        detect_format(path)
    assert info.value.line == 1 and "ctt" in str(info.value)


def test_detect_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        detect_format(tmp_path / "nope.csv")


# ---------------------------------------------------------------- bad ctt input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="capture file not found"):
        read_capture(tmp_path / "missing.csv", "ctt")


@pytest.mark.parametrize("strict", [True, False])
def test_empty_file_is_an_error_even_in_lenient_mode(tmp_path: Path, strict: bool) -> None:
    path = write(tmp_path, "empty.csv", "")
    with pytest.raises(DataFormatError, match="no frames"):
        read_capture(path, strict=strict)
    with pytest.raises(DataFormatError, match="no frames"):
        read_capture(path, "ctt", strict=strict)


@pytest.mark.parametrize("strict", [True, False])
def test_header_only_file_has_no_frames(tmp_path: Path, strict: bool) -> None:
    with pytest.raises(DataFormatError, match="no frames"):
        read_capture(write(tmp_path, "h.csv", CTT_HEADER), strict=strict)


def test_wrong_header(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "time,id,data,label\n1.0,0C1,00,0\n")
    with pytest.raises(DataFormatError, match="bad header") as info:
        read_capture(path, "ctt")
    assert info.value.line == 1


def test_wrong_column_count(tmp_path: Path) -> None:
    path = ctt(tmp_path, GOOD[0], "1.0005,0C1,00,0,extra", *GOOD[1:])
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert_message(info.value, path, 3, "1.0005,0C1,00,0,extra")
    assert "4 comma-separated fields" in str(info.value) and "got 5" in str(info.value)


def test_too_few_columns(tmp_path: Path) -> None:
    path = ctt(tmp_path, *GOOD, "1.003,0C1")
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert_message(info.value, path, 5, "1.003,0C1")


def test_bad_hex_id(tmp_path: Path) -> None:
    path = ctt(tmp_path, GOOD[0], "1.0005,0G1,00,0", *GOOD[1:])
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert_message(info.value, path, 3, "0G1")
    assert "arbitration_id" in str(info.value) and "hex" in str(info.value)


def test_id_too_large(tmp_path: Path) -> None:
    path = ctt(tmp_path, "1.0,FFFFFFFF,00,0")
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert_message(info.value, path, 2, "FFFFFFFF")


def test_bad_hex_payload(tmp_path: Path) -> None:
    path = ctt(tmp_path, *GOOD, "1.003,0C1,00ZZ0000,0")
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert_message(info.value, path, 5, "00ZZ0000")
    assert "data_field" in str(info.value)


def test_odd_number_of_payload_digits(tmp_path: Path) -> None:
    path = ctt(tmp_path, "1.0,0C1,123,0")
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert_message(info.value, path, 2, "123")


def test_payload_longer_than_8_bytes(tmp_path: Path) -> None:
    path = ctt(tmp_path, GOOD[0], "1.0005,0C1,000102030405060708,0", *GOOD[1:])
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert_message(info.value, path, 3, "000102030405060708")
    assert "at most 8 payload bytes" in str(info.value)


def test_non_numeric_timestamp(tmp_path: Path) -> None:
    path = ctt(tmp_path, GOOD[0], "abc,0C1,00,0", *GOOD[1:])
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert_message(info.value, path, 3, "abc")
    assert "timestamp" in str(info.value)


def test_non_finite_timestamp(tmp_path: Path) -> None:
    path = ctt(tmp_path, "inf,0C1,00,0")
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert info.value.line == 2


def test_bad_label(tmp_path: Path) -> None:
    path = ctt(tmp_path, *GOOD, "1.003,0C1,00,2")
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert_message(info.value, path, 5, "2")
    assert "0 or 1" in str(info.value)


def test_decreasing_timestamp_strict_names_line(tmp_path: Path) -> None:
    path = ctt(tmp_path, "1.000,0C1,00,0", "1.002,0C2,00,1", "1.001,0C3,00,0", "1.003,0C4,00,0")
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert_message(info.value, path, 4, "1.001")
    assert "1.002" in str(info.value) and "line 3" in str(info.value)


def test_decreasing_timestamp_lenient_drops_out_of_order_row(tmp_path: Path) -> None:
    path = ctt(tmp_path, "1.000,0C1,00,0", "1.002,0C2,00,1", "1.001,0C3,00,0", "1.003,0C4,00,0")
    cap = read_capture(path, strict=False)
    assert list(cap.can_id) == [0xC1, 0xC2, 0xC4]
    assert cap.skipped_rows == 1
    assert cap.meta["skipped_by_reason"] == {"timestamp (goes back in time)": 1}


# ------------------------------------------------------------- timestamp order

# An injected frame stamped ahead of the two normal frames that follow it (2 ms and 1 ms
# back), then two frames with equal timestamps (not out of order, kept in file order).
JITTER = [
    "1.000,0C1,00,0",
    "1.003,0AA,FF,1",
    "1.001,0C2,00,0",
    "1.002,0C3,00,0",
    "1.004,0C4,00,0",
    "1.004,0C5,00,0",
]


def test_timestamp_order_default_is_strict(tmp_path: Path) -> None:
    path = ctt(tmp_path, *JITTER)
    for kwargs in ({}, {"timestamp_order": "strict"}):
        with pytest.raises(DataFormatError) as info:
            read_capture(path, **kwargs)
        assert_message(info.value, path, 4, "1.001")
        assert "must not decrease" in str(info.value)
    cap = read_capture(path, strict=False)
    assert cap.skipped_rows == out_of_order(first_field_times(JITTER)) == 2
    assert "reordered_rows" not in cap.meta


def test_timestamp_order_sort_keeps_every_frame_in_time_order(tmp_path: Path) -> None:
    path = ctt(tmp_path, *JITTER)
    cap = read_capture(path, timestamp_order="sort")
    assert list(cap.timestamp) == [1.000, 1.001, 1.002, 1.003, 1.004, 1.004]
    assert list(cap.can_id) == [0xC1, 0xC2, 0xC3, 0xAA, 0xC4, 0xC5]  # stable: equal stamps keep file order
    assert list(cap.label) == [0, 0, 0, 1, 0, 0] and list(cap.payload[3]) == [0xFF] + [0] * 7
    assert list(cap.dlc) == [1] * 6
    assert cap.meta["reordered_rows"] == out_of_order(first_field_times(JITTER)) == 2 and cap.skipped_rows == 0
    assert cap.timestamp.flags.writeable and cap.payload.flags.c_contiguous


def test_timestamp_order_sort_uses_the_fast_path(tmp_path: Path) -> None:
    """Jitter must not push a ctt file onto the slow line-exact path."""
    raw = ctt(tmp_path, *JITTER).read_bytes()
    assert _read_ctt_fast(raw) is None  # strict: the exact path explains the error
    assert _read_ctt_fast(raw, _order_policy("sort", 0.01)) is not None


def test_timestamp_order_sort_in_order_file_reports_zero(tmp_path: Path) -> None:
    cap = read_capture(ctt(tmp_path, *GOOD), timestamp_order="sort")
    assert cap.meta["reordered_rows"] == 0 and list(cap.can_id) == [0xC1, 0x000, 0x2B0]


def test_timestamp_order_sort_large_jump_is_still_an_error(tmp_path: Path) -> None:
    path = ctt(tmp_path, "1.000,0C1,00,0", "1.500,0C2,00,0", "1.001,0C3,00,0", "1.501,0C4,00,0")
    with pytest.raises(DataFormatError) as info:
        read_capture(path, timestamp_order="sort")
    assert_message(info.value, path, 4, "1.001")
    text = str(info.value)
    assert "line 3" in text and "1.5" in text and "at most 0.01 s" in text
    cap = read_capture(path, timestamp_order="sort", strict=False)  # lenient drops only the big jump
    assert list(cap.can_id) == [0xC1, 0xC2, 0xC4] and cap.skipped_rows == 1
    assert cap.meta["skipped_by_reason"] == {"timestamp (goes back in time)": 1}
    assert cap.meta["reordered_rows"] == 0
    cap = read_capture(path, timestamp_order="sort", max_backwards_s=math.inf)
    assert list(cap.can_id) == [0xC1, 0xC3, 0xC2, 0xC4] and cap.meta["reordered_rows"] == 1


def test_timestamp_order_sort_tolerance_is_configurable(tmp_path: Path) -> None:
    path = ctt(tmp_path, *JITTER)
    with pytest.raises(DataFormatError) as info:
        read_capture(path, timestamp_order="sort", max_backwards_s=0.0015)
    assert_message(info.value, path, 4, "1.001")  # 2 ms back; the 1 ms jump at line 5 is tolerated
    assert len(read_capture(path, timestamp_order="sort", max_backwards_s=0.0025)) == len(JITTER)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timestamp_order": "sorted"}, "unknown timestamp_order 'sorted'"),
        ({"timestamp_order": "sort", "max_backwards_s": -1}, "max_backwards_s"),
        ({"timestamp_order": "sort", "max_backwards_s": float("nan")}, "max_backwards_s"),
    ],
)
def test_timestamp_order_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        read_capture(ctt(tmp_path, *GOOD), **kwargs)


def test_timestamp_order_sort_parquet_and_hcrl(tmp_path: Path) -> None:
    as_text = pacsv.ConvertOptions(column_types={"data_field": pa.string()})
    table = pacsv.read_csv(ctt(tmp_path, *JITTER), convert_options=as_text)
    pq.write_table(table, tmp_path / "cap.parquet")
    cap = read_capture(tmp_path / "cap.parquet", timestamp_order="sort")
    assert list(cap.can_id) == [0xC1, 0xC2, 0xC3, 0xAA, 0xC4, 0xC5]
    assert cap.meta["reordered_rows"] == out_of_order(first_field_times(JITTER))
    hcrl_rows = ["2.005,02b0,2,ff,7f,T", "2.000,0316,1,05,R", "2.010,02b0,0,R"]
    path = write(tmp_path, "DoS_dataset.csv", "".join(row + "\n" for row in hcrl_rows))
    with pytest.raises(DataFormatError) as info:
        read_capture(path, "hcrl_ch")
    assert info.value.line == 2
    cap = read_capture(path, "hcrl_ch", timestamp_order="sort")
    assert list(cap.can_id) == [0x316, 0x2B0, 0x2B0] and list(cap.label) == [0, 1, 0]
    assert cap.meta["reordered_rows"] == out_of_order(first_field_times(hcrl_rows)) == 1


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", CTT_HEADER + "1.0,0C1,00,0\n\n\n1.1,0C1,0,0\n")
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert info.value.line == 5


def test_lenient_skips_and_counts_every_bad_row(tmp_path: Path) -> None:
    rows = [  # (row, is valid)
        ("1.000,0C1,00,0", True),
        ("1.001,0G1,00,0", False),  # bad id
        ("1.002,0C1,0,0", False),  # odd payload
        ("abc,0C1,00,0", False),  # bad timestamp
        ("1.003,0C1,00", False),  # too few fields
        ("1.004,0C1,00,7", False),  # bad label
        ("1.005,0C2,0102,1", True),
    ]
    path = ctt(tmp_path, *(row for row, _ in rows))
    n_bad = sum(not valid for _, valid in rows)
    cap = read_capture(path, strict=False)
    assert list(cap.can_id) == [0xC1, 0xC2] and list(cap.label) == [0, 1]
    assert cap.skipped_rows == n_bad == 5
    assert sum(cap.meta["skipped_by_reason"].values()) == n_bad


def test_lenient_with_no_valid_row_is_an_error(tmp_path: Path) -> None:
    path = ctt(tmp_path, "x,0C1,00,0", "y,0C1,00,0")
    with pytest.raises(DataFormatError, match="no frames left"):
        read_capture(path, strict=False)


def test_non_ascii_garbage_is_reported(tmp_path: Path) -> None:
    path = ctt(tmp_path, "1.0,0C1,00\u00e9\u00e9,0")
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert info.value.line == 2 and "data_field" in str(info.value)


def test_error_survives_pickling(tmp_path: Path) -> None:
    path = ctt(tmp_path, "abc,0C1,00,0")
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.path, copy.line, copy.value, str(copy)) == (info.value.path, 2, "abc", str(info.value))


# ---------------------------------------------------------------- bad hcrl input


def test_hcrl_dlc_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path, "DoS_dataset.csv", "1.0,0316,8,05,21,68,09,21,21,00,6f,R\n1.1,0316,9,05,21,68,09,21,21,00,6f,00,R\n")
    with pytest.raises(DataFormatError) as info:
        read_capture(path, "hcrl_ch")
    assert_message(info.value, path, 2, "9")
    assert "DLC" in str(info.value) and "0..8" in str(info.value)


def test_hcrl_wrong_column_count_for_dlc(tmp_path: Path) -> None:
    # DLC says 5 but the row has 8 bytes: the flag is not where DLC puts it
    path = write(tmp_path, "DoS_dataset.csv", "1.0,02b0,5,ff,7f,00,05,49,00,00,00,R\n")
    with pytest.raises(DataFormatError) as info:
        read_capture(path, "hcrl_ch")
    assert info.value.line == 1 and "4 + DLC" in str(info.value)


def test_hcrl_bad_byte_hex(tmp_path: Path) -> None:
    path = write(tmp_path, "DoS_dataset.csv", "1.0,02b0,5,ff,7f,0x,05,49,R\n")
    with pytest.raises(DataFormatError) as info:
        read_capture(path, "hcrl_ch")
    assert info.value.line == 1 and "data byte" in str(info.value)


def test_hcrl_bad_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "DoS_dataset.csv", "1.0,02b0,2,ff,7f,R\n1.1,02b0,2,ff,7f,X\n")
    with pytest.raises(DataFormatError) as info:
        read_capture(path, "hcrl_ch")
    assert_message(info.value, path, 2, "X")


def test_hcrl_decreasing_timestamp(tmp_path: Path) -> None:
    rows = ["2.0,02b0,2,ff,7f,R", "1.0,02b0,2,ff,7f,R", "3.0,02b0,2,ff,7f,T"]
    path = write(tmp_path, "DoS_dataset.csv", "".join(row + "\n" for row in rows))
    with pytest.raises(DataFormatError) as info:
        read_capture(path, "hcrl_ch")
    assert info.value.line == 2
    cap = read_capture(path, "hcrl_ch", strict=False)
    n_back = out_of_order(first_field_times(rows))
    assert len(cap) == len(rows) - n_back and cap.skipped_rows == n_back == 1


def test_hcrl_ch_txt_malformed_line(tmp_path: Path) -> None:
    good = "Timestamp: 1479121434.850202        ID: 0350    000    DLC: 8    05 28 84 66 6d 00 00 a2\n"
    path = write(tmp_path, "normal_run_data.txt", good + "garbage line\n")
    with pytest.raises(DataFormatError) as info:
        read_capture(path, "hcrl_ch_txt")
    assert_message(info.value, path, 2, "garbage line")
    cap = read_capture(path, "hcrl_ch_txt", strict=False)
    assert len(cap) == 1 and cap.skipped_rows == 1


def test_hcrl_ch_txt_byte_count_must_match_dlc(tmp_path: Path) -> None:
    path = write(tmp_path, "normal_run_data.txt", "Timestamp: 1.0 ID: 0350 000 DLC: 3 05 28\n")
    with pytest.raises(DataFormatError) as info:
        read_capture(path, "hcrl_ch_txt")
    assert info.value.line == 1 and info.value.value == "05 28" and "got 2" in str(info.value)


def test_hcrl_sa_missing_flag_in_attack_file(tmp_path: Path) -> None:
    path = write(tmp_path, "Flooding.txt", "1.0,0000,1,00,T\n1.1,0000,1,00\n")
    with pytest.raises(DataFormatError) as info:
        read_capture(path, "hcrl_sa")
    assert info.value.line == 2


# --------------------------------------------------------------------- names


#: Every capture stem of can-train-and-test v1.5 (numbers stripped) and of its HCRL repacks,
#: with the family it must get; a wrong family makes per-attack recall and anything
#: balanced by attack family wrong for that capture.
CTT_STEMS = {
    "DoS": "dos",
    "accessory": "normal",  # attack-free, recorded in accessory mode
    "attack-free": "normal",
    "double": "double",
    "force-neutral": "force_neutral",
    "fuzzing": "fuzzing",
    "interval": "interval",
    "masquerade-timed": "masquerade_timed",
    "masquerade-untimed": "masquerade_untimed",
    "rpm": "rpm",
    "rpm-accessory": "rpm",
    "speed": "speed",
    "speed-accessory": "speed",  # a speed attack in accessory mode, not attack-free traffic
    "standstill": "standstill",
    "suppress": "suppress",
    "systematic": "systematic",
    "valid_systematic": "valid_systematic",
    "targeted_payload_fuzzing": "targeted_payload_fuzzing",
    "untargeted_payload_fuzzing": "untargeted_payload_fuzzing",
    "triple": "triple",
}
HCRL_STEMS = {
    **{f"attack-free-{car}": "normal" for car in ("kia", "sonata")},
    **{f"DoS-{part}": "dos" for part in ("kia", "sonata", "spark", "train", "test")},
    **{f"fuzzing-{part}": "fuzzing" for part in ("kia", "sonata", "Spark", "train", "test")},
    **{f"gear-{part}": "gear" for part in ("train", "test")},
    **{f"rpm-{part}": "rpm" for part in ("train", "test")},
    **{f"malfunction-{car}": "malfunction" for car in ("kia", "sonata", "spark")},
}


@pytest.mark.parametrize(("stem", "family"), sorted({**CTT_STEMS, **HCRL_STEMS}.items()))
def test_every_published_capture_stem_gets_its_family(stem: str, family: str) -> None:
    assert attack_type_from_name(stem) == family
    assert attack_type_from_name(f"{stem}-3") == family  # numbered copies, as shipped
    assert attack_type_from_name(f"{stem}-12.csv.gz") == family


@pytest.mark.parametrize(
    ("stem", "family"),
    [
        ("DoS_dataset", "dos"),
        ("Flooding_dataset_KIA", "dos"),
        ("Fuzzy_dataset", "fuzzing"),
        ("RPM_dataset", "rpm"),
        ("gear_dataset", "gear"),
        ("speed-spoof-1", "speed"),
        ("spoofing-1", "spoofing"),
        ("masquerade-2", "masquerade"),
        ("normal_run_data", "normal"),
        ("Free_driving_sonata", "normal"),
        ("replay-2", "replay"),  # unknown names keep their first token
        ("1234", "unknown"),
        ("dosage-1", "dosage"),  # whole tokens: 'dosage' is not DoS
    ],
)
def test_other_dataset_spellings_and_unknown_names(stem: str, family: str) -> None:
    assert attack_type_from_name(stem) == family


def test_catalog_overrides_win_over_the_name_rules() -> None:
    overrides = {"masquerade-[12]": "masquerade_untimed", "odd*": "replay"}
    assert attack_type_from_name("masquerade-1", overrides) == "masquerade_untimed"
    assert attack_type_from_name("Masquerade-2.csv", overrides) == "masquerade_untimed"  # case-insensitive
    assert attack_type_from_name("masquerade-3", overrides) == "masquerade"
    assert attack_type_from_name("odd_capture", overrides) == "replay"


def test_a_capture_with_labelled_attack_frames_is_never_normal(tmp_path) -> None:
    path = tmp_path / "accessory-7.csv"
    path.write_text("timestamp,arbitration_id,data_field,attack\n1672531200.0,0A0,00,0\n1672531200.1,0A0,01,1\n")
    assert read_capture(path, "ctt").attack_type == "unknown"
    assert read_capture(path, "ctt", attack_families={"accessory-7": "speed"}).attack_type == "speed"
    path.write_text("timestamp,arbitration_id,data_field,attack\n1672531200.0,0A0,00,0\n1672531200.1,0A0,01,0\n")
    assert read_capture(path, "ctt").attack_type == "normal"


def test_capture_name_strips_known_suffixes() -> None:
    assert capture_name("a/DoS-3.csv.gz") == "DoS-3"
    assert capture_name("DoS-3.parquet") == "DoS-3"
    assert capture_name("normal_run_data.txt") == "normal_run_data"
    assert capture_name("DoS-3.csv") == "DoS-3"


# ------------------------------------------------------------------- real data


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="real CAN data not available")
def test_real_hcrl_sa_capture() -> None:
    path = REAL_DATA / "hcrl_sa" / "test_02_unknown_vehicle_known_attack" / "fuzzing-Spark.csv"
    n_rows, n_attack = ctt_counts(path)
    cap = read_capture(path, split="test_02_unknown_vehicle_known_attack")
    assert len(cap) == n_rows and cap.attack_type == "fuzzing"
    assert cap.n_attack == n_attack and 0 < cap.n_attack < len(cap)
    assert np.all(np.diff(cap.timestamp) >= 0)
    assert set(np.unique(cap.dlc)) <= set(range(9))


@pytest.mark.skipif(not (REAL_DATA / "set_01").is_dir(), reason="real CAN data not available")
def test_real_set_01_injected_frames_stamped_ahead_read_with_sort() -> None:
    """can-train-and-test stamps injected frames slightly ahead: strict fails, sort keeps every attack frame."""
    path = REAL_DATA / "set_01" / "train_02_with_attacks" / "targeted_payload_fuzzing-2.csv"
    n_rows, n_attack = ctt_counts(path)
    first_back_line, n_back, largest_back = None, 0, 0.0
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)  # header
        latest = -math.inf
        for row in reader:
            ts = float(row[0])
            if ts < latest:
                n_back += 1
                largest_back = max(largest_back, latest - ts)
                first_back_line = first_back_line or reader.line_num
            latest = max(latest, ts)
    assert n_back > 0 and largest_back <= 0.01  # jitter only: sort must keep every frame
    with pytest.raises(DataFormatError) as info:
        read_capture(path)
    assert info.value.line == first_back_line
    cap = read_capture(path, split="train_02_with_attacks", timestamp_order="sort")
    assert len(cap) == n_rows and cap.n_attack == n_attack and cap.skipped_rows == 0
    assert cap.meta["reordered_rows"] == n_back
    assert np.all(np.diff(cap.timestamp) >= 0)


def test_fast_and_line_exact_ctt_paths_agree() -> None:
    """The typed pyarrow path and the line-exact fallback must decode identically."""
    raw = (FIXTURES / "DoS-1.csv").read_bytes()
    fast = _read_ctt_fast(raw)
    exact = _read_ctt_exact(FIXTURES / "DoS-1.csv", raw, True)
    assert fast is not None
    for col in COLUMNS:
        np.testing.assert_array_equal(getattr(fast, col), getattr(exact, col))
