"""One dataset on disk: its split directories, its capture files, and what is missing.

``DatasetSpec`` is a catalog entry with its paths resolved (canids.data.catalog makes them):
it checks the can-train-and-test layout, naming the exact directory expected when one is
missing, lists the capture files of each split with their sha256 (byte-identical copies
marked, so a capture is never counted in two roles), and reads a capture with the entry's
format and timestamp order.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from canids.data.frames import Capture
from canids.data.readers import capture_name, read_capture
from canids.data.suppress import Suppression, load_suppressions
from canids.shape import SPLITS, TRAIN_SPLITS
from canids.util import sha256_file

if TYPE_CHECKING:
    from canids.data.onboarding import OnboardingSource

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Log ``message`` the first time this process meets it: building a DAG checks every
    dataset's layout once per rule that reads it, and a dry run printed each skipped split
    a dozen times."""
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)

DATA_ROOT_ENV = "CAN_DATA_ROOT"
#: can-train-and-test split directories, in their canonical order (canids.shape).
STANDARD_SPLITS: tuple[str, ...] = SPLITS
#: Splits without which training cannot start; a missing test split is only skipped.
REQUIRED_SPLITS: tuple[str, ...] = TRAIN_SPLITS

#: Safe dataset / split names: they become directory names and workflow wildcards.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_NAME_RE = re.compile(NAME_PATTERN)



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
    #: name pattern -> attack family, tried before the name rules (``attack_type_from_name``)
    attack_families: dict[str, str] = field(default_factory=dict)
    #: test split -> where its vehicle's attack-free captures are (``canids.data.onboarding.OnboardingSource``)
    onboarding: dict[str, "OnboardingSource"] = field(default_factory=dict)

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
            elif not list_captures(directory):
                problem = f"split directory {directory} has no capture files ({_SUFFIX_TEXT})"
            if problem is None:
                present.append(split)
            elif split in self.required_splits:
                raise MissingDataError(self._missing_message(problem))
            else:
                skipped[split] = problem
                _warn_once(f"dataset {self.name}: skipping optional split {split}: {problem}")
        return Layout(present, skipped)

    def capture_files(self, digest: Callable[[Path], str] = sha256_file) -> list[CaptureFile]:
        """Every capture file of the present splits, sorted by (split order, name), with duplicates marked.

        Files are hashed (sha256 of their bytes, 1 MiB chunks); a file whose bytes were
        already seen in an earlier split (or earlier in the same split) gets
        ``duplicate_of`` = the first path with those bytes.
        """
        layout = self.check_layout()
        seen: dict[str, Path] = {}
        out: list[CaptureFile] = []
        for split in layout.present:
            for path in list_captures(self.split_dir(split)):
                sha = digest(path)
                out.append(CaptureFile(path, split, sha, path.stat().st_size, seen.get(sha)))
                seen.setdefault(sha, path)
        return out

    def read(self, capture: CaptureFile, *, strict: bool = True) -> Capture:
        """Read one of this dataset's capture files with the catalog's format and timestamp order.

        A capture whose suppression episodes the dataset records (``generator.json``, see
        ``canids.data.suppress``) carries them in ``meta["suppressed"]``, so its windows can
        be labelled although none of its frames is."""
        cap = read_capture(
            capture.path, self.read_format, split=capture.split, strict=strict, timestamp_order=self.timestamp_order,
            attack_families=self.attack_families, sha256=capture.sha256,
        )
        suppression = self.suppressions.get(capture.path.relative_to(self.root).as_posix())
        if suppression is not None:
            cap.meta["suppressed"] = suppression.to_meta()
        return cap

    @functools.cached_property
    def suppressions(self) -> dict[str, Suppression]:
        """Recorded suppression episodes by capture path relative to the root (``canids.data.suppress``)."""
        return load_suppressions(self.root)

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


def list_captures(directory: Path) -> list[Path]:
    """Capture files directly in ``directory``, sorted by name (hidden files ignored)."""
    files = [
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(_LISTED_SUFFIXES)
    ]
    return sorted(files, key=lambda p: p.name)


# ---------------------------------------------------------------------------- catalog
