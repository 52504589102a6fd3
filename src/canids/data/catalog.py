"""The dataset catalog: which dataset names exist and where their captures live on disk.

Why a catalog instead of paths in every rule: a job spec says ``datasets: all`` or
``[hcrl_sa]``, and every stage must agree on what that means, where the files are, which
split directories to expect, and which files are byte-identical copies (can-train-and-test
ships ``train_02_with_attacks/attack-free-*.csv`` as copies of ``train_01`` files; counting
them twice leaks identical windows between training and validation).

Paths resolve against two roots so one catalog works on a laptop and on a cluster:

* ``data_root``: the ``data_root`` argument, else ``$CAN_DATA_ROOT``, else ``data`` (relative
  to the current directory). Real datasets default to ``{data_root}/<name>``.
* ``experiment_root``: the argument, else ``$CAN_EXPERIMENT_ROOT``, else ``experiment_runs``.
  Generated datasets (``synthetic``) live under it.

Dataset names are used in file paths and Snakemake wildcards, so they are checked against
``NAME_PATTERN`` and may never contain ``..``.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from canids.data.dataset import (
    DATA_ROOT_ENV,
    NAME_PATTERN,
    REQUIRED_SPLITS,
    STANDARD_SPLITS,
    CaptureFile,
    CatalogError,
    DatasetSpec,
    Layout,
    MissingDataError,
    check_name,
)
from canids.data.onboarding import ONBOARDING_SCHEMA, check_sources, onboarding_files, parse_onboarding
from canids.data.readers import FORMATS, TIMESTAMP_ORDERS
from canids.data.readers.names import FAMILY_PATTERN
from canids.util import sha256_file
from canids.validation import check

__all__ = [
    "CATALOG_FORMATS",
    "NAME_PATTERN",
    "REQUIRED_SPLITS",
    "STANDARD_SPLITS",
    "TIMESTAMP_ORDERS",
    "CaptureFile",
    "Catalog",
    "CatalogError",
    "DatasetSpec",
    "Layout",
    "MissingDataError",
    "check_name",
    "load_catalog",
]

#: ``format`` values a catalog entry may use (``auto`` = detect per file).
CATALOG_FORMATS: tuple[str, ...] = (*FORMATS, "auto")

EXPERIMENT_ROOT_ENV = "CAN_EXPERIMENT_ROOT"
_PLACEHOLDERS = frozenset({"data_root", "experiment_root"})


# --------------------------------------------------------------------------- schema

# same rule as check_name in one pattern: the look-ahead forbids '..' anywhere
_NAME_SCHEMA = {"type": "string", "pattern": r"^(?!.*\.\.)" + NAME_PATTERN[1:]}
_SPLIT_LIST = {"type": "array", "items": _NAME_SCHEMA, "uniqueItems": True}

CATALOG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["datasets"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": 1},
        "all": {"type": "array", "items": _NAME_SCHEMA, "minItems": 1, "uniqueItems": True},
        "datasets": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": _NAME_SCHEMA,
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "format": {"enum": list(CATALOG_FORMATS)},
                    "timestamp_order": {"enum": list(TIMESTAMP_ORDERS)},
                    "path": {"type": "string", "minLength": 1},
                    "splits": {**_SPLIT_LIST, "minItems": 1},
                    "required_splits": _SPLIT_LIST,
                    "generated": {"type": "boolean"},
                    "description": {"type": "string"},
                    "attack_families": {
                        "type": "object",
                        "propertyNames": {"type": "string", "minLength": 1},
                        "additionalProperties": {"type": "string", "pattern": FAMILY_PATTERN, "x-expected": "a family name: lower-case letters, digits and '_', starting with a letter"},
                    },
                    "onboarding": ONBOARDING_SCHEMA,
                },
            },
        },
    },
}


# ------------------------------------------------------------------------ datatypes


@dataclass
class Catalog:
    """All dataset entries of one catalog file, with roots resolved."""

    datasets: dict[str, DatasetSpec]
    all: list[str]
    source: Path
    data_root: Path
    experiment_root: Path

    @property
    def names(self) -> list[str]:
        """Dataset names in catalog order."""
        return list(self.datasets)

    def get(self, name: str) -> DatasetSpec:
        """The entry for ``name``; ``CatalogError`` for unsafe or unknown names (listing known ones)."""
        check_name(name)
        try:
            return self.datasets[name]
        except KeyError:
            raise CatalogError(
                f"unknown dataset {name!r} (catalog {self.source}); known datasets: {', '.join(self.names)}"
            ) from None

    def expand(self, datasets: str | Sequence[str]) -> list[str]:
        """Dataset selection -> list of names: ``"all"`` means the catalog's ``all:`` list.

        Accepts ``"all"``, one name, or a list of names (which may itself contain ``"all"``);
        duplicates are removed keeping the first occurrence. An empty selection is an error
        because a job that trains on nothing is always a mistake.
        """
        items: Iterable[object] = [datasets] if isinstance(datasets, str) else datasets
        out: list[str] = []
        for item in items:
            names = self.all if item == "all" else [self.get(item).name]  # type: ignore[arg-type]
            out.extend(n for n in names if n not in out)
        if not out:
            raise CatalogError(
                f"no datasets selected; use 'all' ({', '.join(self.all)}) or a list of: {', '.join(self.names)}"
            )
        return out

    def onboarding_files(self, name: str, digest: Callable[[Path], str] = sha256_file) -> dict[str, tuple[DatasetSpec, list[CaptureFile]]]:
        """Per test split of ``name`` with a declared vehicle: the dataset the captures belong to
        (its format and timestamp order read them) and the captures (``MissingDataError`` naming
        the directory when there are none)."""
        spec = self.get(name)
        out = {}
        for split, source in spec.onboarding.items():
            source_spec = self.get(source.dataset)
            out[split] = (source_spec, onboarding_files(spec, source_spec, source, digest))
        return out


def _resolve_root(explicit: str | os.PathLike | None, env: str, default: str, arg: str) -> tuple[Path, str]:
    """(absolute root, human-readable origin) with precedence argument > environment > default."""
    if explicit is not None:
        value, origin = str(explicit), f"from the {arg} argument"
    elif os.environ.get(env):
        value, origin = os.environ[env], f"from ${env}"
    else:
        value, origin = default, f"default '{default}' relative to {Path.cwd()}; set ${env} to change it"
    root = Path(value).expanduser().absolute()
    return root, f"{arg} = {root} ({origin})"


def _validate(doc: object, source: Path) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise CatalogError(f"{source}: expected a mapping with a 'datasets' key, got {type(doc).__name__}")
    check(doc, CATALOG_SCHEMA, str(source), error=CatalogError, what="dataset catalog")
    return doc


def _expand_path(template: str, name: str, data_root: Path, experiment_root: Path) -> Path:
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    unknown = fields - _PLACEHOLDERS
    if unknown:
        raise CatalogError(
            f"datasets.{name}.path: unknown placeholder(s) {sorted(unknown)} in {template!r}; "
            f"allowed: {{data_root}}, {{experiment_root}}"
        )
    path = Path(template.format(data_root=data_root, experiment_root=experiment_root)).expanduser()
    return path if path.is_absolute() else data_root / path


def _spec(name: str, entry: dict[str, Any], data_root: Path, experiment_root: Path, origins: dict[str, str]) -> DatasetSpec:
    splits = list(entry.get("splits", STANDARD_SPLITS))
    required = list(entry.get("required_splits", [s for s in REQUIRED_SPLITS if s in splits]))
    stray = [s for s in required if s not in splits]
    if stray:
        raise CatalogError(f"datasets.{name}.required_splits: {stray} are not listed in datasets.{name}.splits")
    template = entry.get("path", f"{{data_root}}/{name}")
    root = _expand_path(template, name, data_root, experiment_root)
    if "{experiment_root}" in template:
        via = origins["experiment_root"]
    elif "{data_root}" in template or not Path(template).expanduser().is_absolute():
        via = origins["data_root"]
    else:
        via = "an absolute path"
    origin = f"{root}, from path {template!r} with {via}"
    return DatasetSpec(
        name=name,
        root=root,
        format=entry.get("format", "ctt"),
        splits=splits,
        generated=bool(entry.get("generated", False)),
        description=str(entry.get("description", "")).strip(),
        required_splits=required,
        root_origin=origin,
        timestamp_order=entry.get("timestamp_order", "strict"),
        attack_families=dict(entry.get("attack_families", {})),
        onboarding=parse_onboarding(name, entry.get("onboarding", {}), splits),
    )


def load_catalog(
    path: str | os.PathLike = "config/datasets.yaml",
    *,
    data_root: str | os.PathLike | None = None,
    experiment_root: str | os.PathLike | None = None,
) -> Catalog:
    """Load and validate a dataset catalog, resolving every dataset's root directory.

    ``data_root``: argument, else ``$CAN_DATA_ROOT``, else ``data`` (relative to the current
    directory). ``experiment_root``: argument, else ``$CAN_EXPERIMENT_ROOT``, else
    ``experiment_runs``. Both are made absolute here so a later ``chdir`` cannot change
    what the catalog points at. Structural problems raise ``CatalogError`` naming the key.
    """
    source = Path(path)
    try:
        doc = yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise CatalogError(f"dataset catalog not found: {source.absolute()}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source}: not valid YAML: {exc}") from exc
    doc = _validate(doc, source)
    data, data_origin = _resolve_root(data_root, DATA_ROOT_ENV, "data", "data_root")
    exp, exp_origin = _resolve_root(experiment_root, EXPERIMENT_ROOT_ENV, "experiment_runs", "experiment_root")
    origins = {"data_root": data_origin, "experiment_root": exp_origin}
    specs = {name: _spec(name, entry or {}, data, exp, origins) for name, entry in doc["datasets"].items()}
    all_names = list(doc.get("all", [n for n, s in specs.items() if not s.generated]))
    check_sources(specs, {name: spec.onboarding for name, spec in specs.items()}, str(source))
    undefined = [n for n in all_names if n not in specs]
    if undefined:
        raise CatalogError(f"{source}: all: {undefined} are not defined under datasets (known: {', '.join(specs)})")
    return Catalog(specs, all_names, source, data, exp)
