"""Which attack-free captures describe the vehicle of each unseen-vehicle test split.

A dataset's catalog entry may say, per test split whose vehicle the models never saw, where
captures of that vehicle's normal traffic are (``onboarding:`` in config/datasets.yaml)::

    set_01:
      onboarding:
        test_04_unknown_vehicle_unknown_attack:
          dataset: set_02                    # default: the same dataset
          directory: train_01_attack_free    # default; never a test split
          captures: ["accessory-*"]          # optional name patterns; default: every capture

Preprocessing turns them into one graph set per split (``canids.shape.onboarding_set``) and
the onboarding stage recalibrates the detector on them (``canids.stages.onboarding``). Test
captures never onboard a vehicle: a ``directory`` naming a test split is refused when the
catalog loads, and a capture holding a labelled attack frame is refused before any job runs.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from canids.data.dataset import CaptureFile, CatalogError, DatasetSpec, MissingDataError, check_name, list_captures
from canids.data.readers import capture_name
from canids.shape import ATTACK_FREE_SPLIT, TEST_SPLITS, onboarding_set
from canids.util import sha256_file

__all__ = ["ONBOARDING_SCHEMA", "OnboardingSource", "attack_frames_message", "check_sources", "onboarding_files", "parse_onboarding"]

#: The ``onboarding:`` value of a catalog entry (``canids.data.catalog.CATALOG_SCHEMA``).
ONBOARDING_SCHEMA = {
    "type": "object",
    "propertyNames": {"enum": list(TEST_SPLITS)},
    "additionalProperties": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "dataset": {"type": "string", "minLength": 1},
            "directory": {"type": "string", "minLength": 1},
            "captures": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        },
    },
}


@dataclass(frozen=True)
class OnboardingSource:
    """Where the attack-free captures of one test split's vehicle are."""

    split: str
    dataset: str
    directory: str = ATTACK_FREE_SPLIT
    captures: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The field that declared it, for error messages."""
        return f"onboarding.{self.split}"


def parse_onboarding(name: str, entry: dict, splits: list[str]) -> dict[str, OnboardingSource]:
    """The ``onboarding:`` of dataset ``name`` (already schema-checked), per test split."""
    out = {}
    for split, source in (entry or {}).items():
        where = f"datasets.{name}.onboarding.{split}"
        if split not in splits:
            raise CatalogError(f"{where}: {split} is not one of datasets.{name}.splits ({', '.join(splits)})")
        directory = check_name(source.get("directory", ATTACK_FREE_SPLIT), "onboarding directory")
        if directory in TEST_SPLITS:
            raise CatalogError(f"{where}.directory: {directory} is a test split; test captures never onboard a vehicle (expected an attack-free directory such as {ATTACK_FREE_SPLIT})")
        out[split] = OnboardingSource(split, check_name(source.get("dataset", name)), directory, tuple(source.get("captures", ())))
    return out


def onboarding_files(spec: DatasetSpec, source_spec: DatasetSpec, source: OnboardingSource, digest: Callable[[Path], str] = sha256_file) -> list[CaptureFile]:
    """The captures ``source`` names, in name order; ``MissingDataError`` naming the directory when there are none."""
    directory = source_spec.root / source.directory
    where = f"datasets.{spec.name}.{source.key}"
    if not directory.is_dir():
        raise MissingDataError(f"{where}: onboarding directory {directory} not found")
    files = list_captures(directory)
    if source.captures:
        files = [p for p in files if any(fnmatch.fnmatch(capture_name(p).lower(), pattern.lower()) for pattern in source.captures)]
    if not files:
        wanted = f" matching {list(source.captures)}" if source.captures else ""
        raise MissingDataError(f"{where}: no capture files{wanted} in onboarding directory {directory}")
    return [CaptureFile(path, onboarding_set(source.split), digest(path), path.stat().st_size) for path in files]


def check_sources(datasets: dict[str, DatasetSpec], source_of: dict[str, dict[str, OnboardingSource]], catalog: str) -> None:
    """Every onboarding source names a dataset of the catalog (``CatalogError`` naming the field)."""
    for name, sources in source_of.items():
        for source in sources.values():
            if source.dataset not in datasets:
                raise CatalogError(f"{catalog}: datasets.{name}.{source.key}.dataset: unknown dataset {source.dataset!r}; known datasets: {', '.join(datasets)}")


def attack_frames_message(path: str | Path, n_attack: int, where: str = "") -> str:
    """Why an onboarding capture is refused (the dry run, preprocessing and ``canids onboard`` say it alike);
    ``where``: the catalog field that named it."""
    named = f" for {where}" if where else ""
    return f"{path}: onboarding capture{named} holds {n_attack} labelled attack frames; onboarding captures must be attack-free (test captures never onboard a vehicle)"
