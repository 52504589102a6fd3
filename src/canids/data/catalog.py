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

import logging
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import jsonschema
import yaml

from canids.data.frames import Capture
from canids.data.readers import FORMATS, TIMESTAMP_ORDERS, capture_name, read_capture
from canids.util import sha256_file

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

log = logging.getLogger(__name__)

#: can-train-and-test split directories, in their canonical order.
STANDARD_SPLITS: tuple[str, ...] = (
    "train_01_attack_free",
    "train_02_with_attacks",
    "test_01_known_vehicle_known_attack",
    "test_02_unknown_vehicle_known_attack",
    "test_03_known_vehicle_unknown_attack",
    "test_04_unknown_vehicle_unknown_attack",
    "test_05_suppress",
    "test_06_masquerade",
)

#: Splits without which training cannot start; a missing test split is only skipped.
REQUIRED_SPLITS: tuple[str, ...] = ("train_01_attack_free", "train_02_with_attacks")

#: ``format`` values a catalog entry may use (``auto`` = detect per file).
CATALOG_FORMATS: tuple[str, ...] = (*FORMATS, "auto")

#: Safe dataset / split names: they become directory names and workflow wildcards.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_NAME_RE = re.compile(NAME_PATTERN)

DATA_ROOT_ENV = "CAN_DATA_ROOT"
EXPERIMENT_ROOT_ENV = "CAN_EXPERIMENT_ROOT"
_PLACEHOLDERS = frozenset({"data_root", "experiment_root"})


class CatalogError(ValueError):
    """Bad catalog file, unknown or unsafe dataset name, or an empty selection."""


class MissingDataError(CatalogError):
    """A dataset's directory, or one of its required split directories, is missing or empty."""


def check_name(name: object, what: str = "dataset") -> str:
    """Return ``name`` if it is a safe dataset/split name, else raise ``CatalogError``.

    Names end up in paths (``<data_root>/<name>``) and wildcards, so ``../x`` or ``/abs``
    must never get that far.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise CatalogError(
            f"unsafe {what} name {name!r}: names must match {NAME_PATTERN} and must not contain '..'"
        )
    return name


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
                },
            },
        },
    },
}


# ------------------------------------------------------------------------ datatypes


@dataclass(frozen=True)
class CaptureFile:
    """One raw capture file of a dataset split.

    ``duplicate_of`` is set when the same bytes were already listed earlier (by split
    order, then name): such a file must be counted once, never in two roles.
    """

    path: Path
    split: str
    sha256: str
    size: int
    duplicate_of: Path | None = None

    @property
    def name(self) -> str:
        """Capture name (file stem without ``.csv``/``.csv.gz``/``.parquet``/``.txt``)."""
        return capture_name(self.path)

    @property
    def is_duplicate(self) -> bool:
        return self.duplicate_of is not None


@dataclass(frozen=True)
class Layout:
    """What ``check_layout`` found: split dirs with captures, and optional ones skipped (with why)."""

    present: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class DatasetSpec:
    """One catalog entry with its paths resolved.

    Attributes:
        name: catalog name (safe for paths).
        root: the dataset directory holding one directory per split.
        format: reader format for its files (``auto`` detects per file).
        timestamp_order: ``read_capture``'s ``timestamp_order`` for its files: ``strict``
            (default; a decreasing timestamp is a bad row) or ``sort`` (small backward
            jumps are sorted, see ``canids.data.readers``).
        splits: split directories the dataset may have, in canonical order.
        generated: produced by the project (``synthetic``), not downloaded.
        description: free text for humans.
        required_splits: splits that must exist and hold captures.
        root_origin: how ``root`` was derived (for error messages).
    """

    name: str
    root: Path
    format: str = "ctt"
    splits: list[str] = field(default_factory=lambda: list(STANDARD_SPLITS))
    generated: bool = False
    description: str = ""
    required_splits: list[str] = field(default_factory=lambda: list(REQUIRED_SPLITS))
    root_origin: str = ""
    timestamp_order: str = "strict"

    @property
    def read_format(self) -> str | None:
        """``fmt`` argument for ``read_capture`` (``None`` = detect)."""
        return None if self.format == "auto" else self.format

    def split_dir(self, split: str) -> Path:
        return self.root / check_name(split, "split")

    def check_layout(self) -> Layout:
        """Verify the directory layout; raise ``MissingDataError`` naming the exact path expected.

        Required splits must exist and hold at least one capture file. A listed optional
        split (a test split) that is absent or empty is skipped and reported (logged and
        returned in ``Layout.skipped``), because real dataset copies are often partial.
        """
        if not self.root.is_dir():
            what = "file, not a directory" if self.root.exists() else "not found"
            raise MissingDataError(self._missing_message(f"dataset directory {self.root} ({what})"))
        present: list[str] = []
        skipped: dict[str, str] = {}
        for split in self.splits:
            directory = self.split_dir(split)
            problem = None
            if not directory.is_dir():
                problem = f"split directory {directory} not found"
            elif not _list_captures(directory):
                problem = f"split directory {directory} has no capture files ({_SUFFIX_TEXT})"
            if problem is None:
                present.append(split)
            elif split in self.required_splits:
                raise MissingDataError(self._missing_message(problem))
            else:
                skipped[split] = problem
                log.warning("dataset %s: skipping optional split %s: %s", self.name, split, problem)
        return Layout(present, skipped)

    def capture_files(self) -> list[CaptureFile]:
        """Every capture file of the present splits, sorted by (split order, name), with duplicates marked.

        Files are hashed (sha256 of their bytes, 1 MiB chunks); a file whose bytes were
        already seen in an earlier split (or earlier in the same split) gets
        ``duplicate_of`` = the first path with those bytes.
        """
        layout = self.check_layout()
        seen: dict[str, Path] = {}
        out: list[CaptureFile] = []
        for split in layout.present:
            for path in _list_captures(self.split_dir(split)):
                digest = sha256_file(path)
                out.append(CaptureFile(path, split, digest, path.stat().st_size, seen.get(digest)))
                seen.setdefault(digest, path)
        return out

    def read(self, capture: CaptureFile, *, strict: bool = True) -> Capture:
        """Read one of this dataset's capture files with the catalog's format and timestamp order."""
        return read_capture(
            capture.path, self.read_format, split=capture.split, strict=strict, timestamp_order=self.timestamp_order
        )

    def _missing_message(self, problem: str) -> str:
        lines = [f"dataset {self.name!r}: {problem}.", "Expected the can-train-and-test layout:", f"  {self.root}/"]
        width = max(len(s) for s in self.splits) + len("/<capture>.csv")
        for split in self.splits:
            tag = "(required)" if split in self.required_splits else "(optional)"
            lines.append(f"    {(split + '/<capture>.csv').ljust(width)}  {tag}")
        lines.append(f"  (captures may be {_SUFFIX_TEXT})")
        if self.generated:
            lines.append(
                f"{self.name!r} is generated by the project: run the workflow step that generates it "
                f"(canids.data.synthetic.generate) before using it; its path is {self.root_origin}."
            )
        else:
            lines.append(
                f"Root: {self.root_origin}. Set {DATA_ROOT_ENV} (or pass data_root) to the folder that "
                f"contains {self.name}/, or set datasets.{self.name}.path in the dataset catalog."
            )
        return "\n".join(lines)


#: File endings listed as captures (a subset of ``readers.CAPTURE_SUFFIXES``).
_LISTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".txt")
_SUFFIX_TEXT = ", ".join(f"*{s}" for s in _LISTED_SUFFIXES)


def _list_captures(directory: Path) -> list[Path]:
    """Capture files directly in ``directory``, sorted by name (hidden files ignored)."""
    files = [
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(_LISTED_SUFFIXES)
    ]
    return sorted(files, key=lambda p: p.name)


# ---------------------------------------------------------------------------- catalog


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
    validator = jsonschema.Draft202012Validator(CATALOG_SCHEMA)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        details = "\n".join(
            f"  {'.'.join(str(p) for p in e.absolute_path) or '<top level>'}: {e.message}" for e in errors
        )
        raise CatalogError(f"{source}: invalid dataset catalog:\n{details}")
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
    undefined = [n for n in all_names if n not in specs]
    if undefined:
        raise CatalogError(f"{source}: all: {undefined} are not defined under datasets (known: {', '.join(specs)})")
    return Catalog(specs, all_names, source, data, exp)
