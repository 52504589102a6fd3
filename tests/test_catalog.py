"""Dataset catalog: name resolution, safety, layout checks and duplicate detection.

Layouts are built in tmp_path so each rule is tested in isolation; one test checks that the
shipped config/datasets.yaml loads and points at the real data.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from canids.data.catalog import (
    STANDARD_SPLITS,
    TIMESTAMP_ORDERS,
    CatalogError,
    MissingDataError,
    check_name,
    load_catalog,
)
from canids.data.readers import DataFormatError

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("CAN_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data" / "can")
FIXTURE = REPO / "tests" / "fixtures" / "raw" / "DoS-1.csv"

CATALOG = """
version: 1
all: [alpha, beta]
datasets:
  alpha:
    description: a real-looking dataset
    splits: [train_01_attack_free, train_02_with_attacks, test_01_known_vehicle_known_attack]
  beta: {}
  gamma:
    path: elsewhere/gamma
  synthetic:
    generated: true
    path: "{experiment_root}/synthetic/raw"
"""


@pytest.fixture(autouse=True)
def _no_env_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not depend on the caller's environment."""
    monkeypatch.delenv("CAN_DATA_ROOT", raising=False)
    monkeypatch.delenv("CAN_EXPERIMENT_ROOT", raising=False)


def write_catalog(tmp_path: Path, text: str = CATALOG) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    return path


def add_capture(root: Path, split: str, name: str, content: bytes | None = None) -> Path:
    path = root / split / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(FIXTURE.read_bytes() if content is None else content)
    return path


def make_dataset(root: Path, splits=("train_01_attack_free", "train_02_with_attacks")) -> None:
    for i, split in enumerate(splits):
        add_capture(root, split, f"cap-{i}.csv", FIXTURE.read_bytes() + f"1672531300.0,001,,{0}\n".encode() * (i + 1))


# ---------------------------------------------------------------------- loading


def test_names_and_defaults(tmp_path: Path) -> None:
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path / "data", experiment_root=tmp_path / "exp")
    assert cat.names == ["alpha", "beta", "gamma", "synthetic"]
    beta = cat.get("beta")
    assert beta.root == tmp_path / "data" / "beta"
    assert beta.format == "ctt" and beta.splits == list(STANDARD_SPLITS) and not beta.generated
    assert beta.required_splits == ["train_01_attack_free", "train_02_with_attacks"]
    assert cat.get("gamma").root == tmp_path / "data" / "elsewhere" / "gamma"
    synthetic = cat.get("synthetic")
    assert synthetic.generated and synthetic.root == tmp_path / "exp" / "synthetic" / "raw"
    assert cat.get("alpha").description == "a real-looking dataset"
    assert all(cat.get(n).timestamp_order == "strict" for n in cat.names)


def test_all_expansion(tmp_path: Path) -> None:
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path)
    assert cat.expand("all") == ["alpha", "beta"]
    assert cat.expand(["gamma", "alpha", "gamma"]) == ["gamma", "alpha"]
    assert cat.expand(["synthetic", "all"]) == ["synthetic", "alpha", "beta"]
    assert cat.expand("gamma") == ["gamma"]


def test_empty_selection_is_an_error(tmp_path: Path) -> None:
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path)
    with pytest.raises(CatalogError, match="no datasets selected"):
        cat.expand([])


def test_unknown_dataset_lists_known_names(tmp_path: Path) -> None:
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path)
    with pytest.raises(CatalogError) as info:
        cat.get("delta")
    assert "unknown dataset 'delta'" in str(info.value)
    assert "alpha, beta, gamma, synthetic" in str(info.value)
    with pytest.raises(CatalogError, match="unknown dataset 'delta'"):
        cat.expand(["alpha", "delta"])


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../b", "x..y", ".hidden", "", "a b", "-x"])
def test_unsafe_names_rejected(tmp_path: Path, name: str) -> None:
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path)
    with pytest.raises(CatalogError, match="unsafe dataset name"):
        cat.get(name)
    with pytest.raises(CatalogError, match="unsafe dataset name"):
        cat.expand([name])


def test_check_name_accepts_real_names() -> None:
    for name in ("hcrl_ch", "set_01", "synthetic", "v1.5-extra"):
        assert check_name(name) == name


def test_unsafe_name_in_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"datasets.*\.\./x|\.\./x"):
        load_catalog(write_catalog(tmp_path, "datasets:\n  ../x: {}\n"), data_root=tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("datasets:\n  a:\n    format: csv\n", "datasets.a.format: expected one of ctt, hcrl_ch, hcrl_ch_txt, hcrl_sa, auto, got 'csv'"),
        ("datasets:\n  a:\n    splits: []\n", "datasets.a.splits: expected a non-empty list of strings, got []"),
        ("datasets:\n  a:\n    generated: maybe\n", "datasets.a.generated: expected true or false, got 'maybe'"),
        ("datasets:\n  a:\n    timestamp_order: sorted\n", "datasets.a.timestamp_order: expected one of strict, sort, got 'sorted'"),
        ("datasets:\n  a:\n    timestamp_order: true\n", "datasets.a.timestamp_order: expected one of strict, sort, got true"),
        ("datasets:\n  a:\n    colour: red\n", "datasets.a.colour: unknown key 'colour'; allowed keys: attack_families, description, format, generated, onboarding, path, required_splits, splits, timestamp_order"),
        ("datasets:\n  a: {}\nextra: 1\n", "extra: unknown key 'extra'; allowed keys: all, datasets, version"),
        ("all: []\ndatasets:\n  a: {}\n", "all: expected a non-empty list of strings, got []"),
        ("version: 1\n", "datasets: missing required field; expected an object"),
        ("datasets:\n  a:\n    attack_families: {replay-*: Replay Attack}\n", "datasets.a.attack_families.replay-*: expected a family name: lower-case letters, digits and '_', starting with a letter, got 'Replay Attack'"),
    ],
)
def test_schema_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write_catalog(tmp_path, text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path, data_root=tmp_path)
    assert str(info.value) == f"{path}: {message}"


def test_all_must_name_defined_datasets(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"all: \['zeta'\]"):
        load_catalog(write_catalog(tmp_path, "all: [zeta]\ndatasets:\n  a: {}\n"), data_root=tmp_path)


def test_unknown_path_placeholder(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="datasets.a.path: unknown placeholder"):
        load_catalog(write_catalog(tmp_path, "datasets:\n  a:\n    path: '{home}/a'\n"), data_root=tmp_path)


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="dataset catalog not found"):
        load_catalog(tmp_path / "nope.yaml")


# ------------------------------------------------------------------- data roots


def test_env_var_can_data_root_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAN_DATA_ROOT", str(tmp_path / "from-env"))
    monkeypatch.setenv("CAN_EXPERIMENT_ROOT", str(tmp_path / "exp-env"))
    cat = load_catalog(write_catalog(tmp_path))
    assert cat.get("alpha").root == tmp_path / "from-env" / "alpha"
    assert cat.get("synthetic").root == tmp_path / "exp-env" / "synthetic" / "raw"
    # an explicit argument wins over the environment
    assert load_catalog(write_catalog(tmp_path), data_root=tmp_path / "arg").get("alpha").root == tmp_path / "arg" / "alpha"


def test_default_roots_are_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = write_catalog(tmp_path)
    monkeypatch.chdir(tmp_path)
    cat = load_catalog(catalog)
    assert cat.data_root == tmp_path / "data" and cat.experiment_root == tmp_path / "experiment_runs"
    assert cat.get("alpha").root.is_absolute()


# ----------------------------------------------------------------------- layout


def test_missing_dataset_dir_names_path_and_layout(tmp_path: Path) -> None:
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path / "data")
    with pytest.raises(MissingDataError) as info:
        cat.get("alpha").capture_files()
    text = str(info.value)
    assert str(tmp_path / "data" / "alpha") in text
    assert "train_01_attack_free/<capture>.csv" in text
    assert "CAN_DATA_ROOT" in text and "data_root" in text


def test_missing_required_split_names_the_path(tmp_path: Path) -> None:
    root = tmp_path / "data" / "alpha"
    make_dataset(root, ("train_01_attack_free",))
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path / "data")
    with pytest.raises(MissingDataError) as info:
        cat.get("alpha").check_layout()
    assert str(root / "train_02_with_attacks") in str(info.value)
    assert "not found" in str(info.value)


def test_required_split_without_captures_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "data" / "alpha"
    make_dataset(root)
    for stale in (root / "train_02_with_attacks").iterdir():
        stale.rename(stale.with_suffix(".bak"))
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path / "data")
    with pytest.raises(MissingDataError, match="has no capture files"):
        cat.get("alpha").check_layout()


def test_missing_optional_split_is_skipped(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data" / "alpha")
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path / "data")
    layout = cat.get("alpha").check_layout()
    assert layout.present == ["train_01_attack_free", "train_02_with_attacks"]
    assert list(layout.skipped) == ["test_01_known_vehicle_known_attack"]


def test_a_skipped_split_is_reported_once_however_often_the_layout_is_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Building a DAG checks each dataset's layout once per rule that reads it; the warning
    about a skipped split must not repeat with it, while every check still returns it."""
    make_dataset(tmp_path / "data" / "alpha")
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path / "data")
    with caplog.at_level("WARNING", logger="canids.data.dataset"):
        layouts = [cat.get("alpha").check_layout() for _ in range(3)]
    assert all(list(layout.skipped) == ["test_01_known_vehicle_known_attack"] for layout in layouts)
    warnings = [r.getMessage() for r in caplog.records if "skipping optional split" in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path / "data" / "alpha") in warnings[0], warnings


def test_generated_dataset_message_says_generate(tmp_path: Path) -> None:
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path, experiment_root=tmp_path / "exp")
    with pytest.raises(MissingDataError, match="generated by the project"):
        cat.get("synthetic").check_layout()


# ------------------------------------------------------------------ capture files


def test_capture_files_sorted_and_byte_identical_duplicates_marked(tmp_path: Path) -> None:
    root = tmp_path / "data" / "alpha"
    free = add_capture(root, "train_01_attack_free", "attack-free-1.csv")
    add_capture(root, "train_01_attack_free", "accessory-2.csv", b"timestamp,arbitration_id,data_field,attack\n1.0,001,,0\n")
    add_capture(root, "train_02_with_attacks", "attack-free-1.csv")  # byte-identical copy
    add_capture(root, "train_02_with_attacks", "DoS-1.csv.gz", b"\x1f\x8bnot really")
    add_capture(root, "train_02_with_attacks", "notes.md", b"not a capture")
    add_capture(root, "train_02_with_attacks", ".hidden.csv", b"ignored")
    add_capture(root, "test_01_known_vehicle_known_attack", "fuzzing-1.parquet", b"PAR1...")
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path / "data")
    files = cat.get("alpha").capture_files()
    assert [(f.split, f.path.name) for f in files] == [
        ("train_01_attack_free", "accessory-2.csv"),
        ("train_01_attack_free", "attack-free-1.csv"),
        ("train_02_with_attacks", "DoS-1.csv.gz"),
        ("train_02_with_attacks", "attack-free-1.csv"),
        ("test_01_known_vehicle_known_attack", "fuzzing-1.parquet"),
    ]
    dups = [f for f in files if f.is_duplicate]
    assert len(dups) == 1 and dups[0].split == "train_02_with_attacks" and dups[0].duplicate_of == free
    assert files[1].sha256 == dups[0].sha256 and files[1].size == free.stat().st_size
    assert [f.name for f in files] == ["accessory-2", "attack-free-1", "DoS-1", "attack-free-1", "fuzzing-1"]


def test_dataset_read_uses_catalog_format(tmp_path: Path) -> None:
    root = tmp_path / "data" / "alpha"
    make_dataset(root)
    cat = load_catalog(write_catalog(tmp_path), data_root=tmp_path / "data")
    spec = cat.get("alpha")
    first = spec.capture_files()[0]
    cap = spec.read(first)
    assert cap.split == "train_01_attack_free" and cap.name == "cap-0" and cap.sha256 == first.sha256


JITTER_CSV = (
    b"timestamp,arbitration_id,data_field,attack\n"
    b"1.000,0C1,00,0\n1.003,0AA,FF,1\n1.001,0C2,00,0\n1.004,0C3,00,0\n"
)


def test_timestamp_order_key_is_loaded_and_passed_to_the_reader(tmp_path: Path) -> None:
    text = CATALOG.replace("  beta: {}\n", "  beta:\n    timestamp_order: sort\n")
    cat = load_catalog(write_catalog(tmp_path, text), data_root=tmp_path / "data")
    assert TIMESTAMP_ORDERS == ("strict", "sort")
    assert cat.get("beta").timestamp_order == "sort" and cat.get("alpha").timestamp_order == "strict"
    for name in ("alpha", "beta"):
        root = tmp_path / "data" / name
        add_capture(root, "train_01_attack_free", "accessory-1.csv")
        add_capture(root, "train_02_with_attacks", "fuzzing-1.csv", JITTER_CSV)
    beta = cat.get("beta")
    cap = beta.read(beta.capture_files()[1])
    assert list(cap.can_id) == [0xC1, 0xC2, 0xAA, 0xC3] and cap.n_attack == 1
    assert cap.meta["reordered_rows"] == 1
    alpha = cat.get("alpha")
    with pytest.raises(DataFormatError) as info:
        alpha.read(alpha.capture_files()[1])
    assert info.value.line == 4


# --------------------------------------------------------------------- real config


@pytest.mark.skipif(not (REAL_DATA / "hcrl_sa").is_dir(), reason="real CAN data not available")
def test_real_catalog_resolves_hcrl_sa(tmp_path: Path) -> None:
    cat = load_catalog(REPO / "config" / "datasets.yaml", data_root=REAL_DATA)
    assert cat.expand("all") == ["hcrl_ch", "hcrl_sa", "set_01", "set_02", "set_03", "set_04"]
    assert "synthetic" in cat.names and cat.get("synthetic").generated
    spec = cat.get("hcrl_sa")
    assert spec.root == REAL_DATA / "hcrl_sa" and spec.format == "ctt"
    layout = spec.check_layout()
    assert layout.present[:2] == ["train_01_attack_free", "train_02_with_attacks"]
    assert list(layout.skipped) == ["test_05_suppress", "test_06_masquerade"]  # hcrl_sa has none: reported, not silently dropped
    files = spec.capture_files()
    assert len(files) == 13
    dups = {f.path.name for f in files if f.is_duplicate}
    assert dups == {"attack-free-kia.csv", "attack-free-sonata.csv"}
    assert all(f.duplicate_of.parent.name == "train_01_attack_free" for f in files if f.is_duplicate)


def test_real_catalog_loads_without_data(tmp_path: Path) -> None:
    cat = load_catalog(REPO / "config" / "datasets.yaml", data_root=tmp_path, experiment_root=tmp_path / "exp")
    assert cat.names == ["hcrl_ch", "hcrl_sa", "set_01", "set_02", "set_03", "set_04", "synthetic"]
    for name in cat.all:
        spec = cat.get(name)
        assert spec.required_splits == ["train_01_attack_free", "train_02_with_attacks"]
        assert spec.splits == list(STANDARD_SPLITS)  # test_05_suppress and test_06_masquerade too, when present
    assert cat.get("synthetic").splits == list(STANDARD_SPLITS)
    orders = {name: cat.get(name).timestamp_order for name in cat.names}
    assert orders == {
        "hcrl_ch": "strict",
        "hcrl_sa": "strict",
        "set_01": "sort",
        "set_02": "sort",
        "set_03": "sort",
        "set_04": "sort",
        "synthetic": "strict",
    }
    assert cat.get("synthetic").root == tmp_path / "exp" / "synthetic" / "raw"


def test_copy_of_real_layout_with_missing_test_split(tmp_path: Path) -> None:
    """A partial copy (only the training splits) is usable: the test splits are just skipped."""
    if not (REAL_DATA / "set_01").is_dir():
        pytest.skip("real CAN data not available")
    root = tmp_path / "set_01"
    for split in ("train_01_attack_free", "train_02_with_attacks"):
        (root / split).mkdir(parents=True)
        shutil.copy(REAL_DATA / "set_01" / split / "accessory-1.csv", root / split / "accessory-1.csv")
    cat = load_catalog(REPO / "config" / "datasets.yaml", data_root=tmp_path)
    layout = cat.get("set_01").check_layout()
    assert len(layout.skipped) == 6
    files = cat.get("set_01").capture_files()
    assert [f.is_duplicate for f in files] == [False, True]


def test_attack_families_overrides_are_loaded_and_passed_to_the_reader(tmp_path: Path) -> None:
    text = CATALOG.replace("  beta: {}\n", "  beta:\n    attack_families: {'fuzzing-*': replay}\n")
    cat = load_catalog(write_catalog(tmp_path, text), data_root=tmp_path / "data")
    for name in ("alpha", "beta"):
        root = tmp_path / "data" / name
        add_capture(root, "train_01_attack_free", "accessory-1.csv")
        add_capture(root, "train_02_with_attacks", "fuzzing-1.csv", JITTER_CSV.replace(b"1.001", b"1.0035"))
    beta, alpha = cat.get("beta"), cat.get("alpha")
    assert beta.attack_families == {"fuzzing-*": "replay"} and alpha.attack_families == {}
    assert beta.read(beta.capture_files()[1]).attack_type == "replay"
    assert alpha.read(alpha.capture_files()[1]).attack_type == "fuzzing"
