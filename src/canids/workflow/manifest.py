"""Stage manifests: JSON that pins an artifact by sha256 with its inputs and settings.

A manifest is the contract between stages. It is validated against
``workflow/schemas/manifest.schema.json`` when written and when read, and a downstream
stage verifies every upstream artifact's digest before it starts: a checkpoint that was
swapped, truncated or tampered with is refused with both digests in the message, and
nothing is trained on it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from canids import __version__
from canids.util import atomic_write_json, sha256_file
from canids.validation import check
from canids.workflow.code_digest import stage_code_digest
from canids.workflow.schemas import manifest_schema

SCHEMA_VERSION = 1
_TRACKED_PACKAGES = ("torch", "torch_geometric", "lightning", "numpy", "pandas", "snakemake", "snakemake-executor-plugin-slurm")


class ManifestError(ValueError):
    """A manifest is missing, malformed, for the wrong dataset/stage, or its artifact does not match."""


def validate_manifest(data: dict, source: str = "manifest") -> None:
    check(data, manifest_schema(), source, error=ManifestError, what="manifest")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """Package version plus the git commit of the checkout (``None`` outside a git checkout)."""
    repo = Path(__file__).resolve().parents[3]
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True).stdout.strip() or None
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": __version__, "git_commit": commit, "git_dirty": dirty}


def artifact_entry(manifest_path: Path, artifact: Path, sha256: str | None = None) -> dict:
    """How a manifest pins one artifact; ``sha256`` when the writer hashed the bytes as it wrote them."""
    return {"path": os.path.relpath(artifact, manifest_path.parent), "sha256": sha256 or sha256_file(artifact), "size_bytes": artifact.stat().st_size}


def fingerprint(files: list[dict], attack_families: Mapping[str, str] | None = None) -> dict:
    """One digest over the raw data files (path-independent: sorted digests + split names)
    and the catalog's ``attack_families`` overrides, which change the graphs' labels of family."""
    h = hashlib.sha256()
    for entry in sorted(files, key=lambda e: (e.get("split", ""), e.get("name", ""), e["sha256"])):
        h.update(f"{entry.get('split', '')}/{entry.get('name', '')}:{entry['sha256']}\n".encode())
    out = {"n_files": len(files), "files": files}
    if attack_families:
        h.update(json.dumps(dict(attack_families), sort_keys=True).encode())
        out["attack_families"] = dict(attack_families)
    return {"sha256": h.hexdigest(), **out}


@dataclass
class LoadedManifest:
    path: Path
    data: dict
    sha256: str

    def artifact(self, name: str) -> Path:
        """An artifact's path: inside the manifest's directory, or refused."""
        try:
            entry = self.data["artifacts"][name]
        except KeyError:
            raise ManifestError(f"{self.path}: no artifact named '{name}' (has: {', '.join(self.data['artifacts'])})") from None
        return _inside(self.path, name, entry["path"])

    def upstream_ref(self) -> dict:
        return {"stage": self.data["stage"], "variant": self.data["variant"], "path": str(self.path), "sha256": self.sha256}


def write_manifest(path: Path, *, dataset: str, stage: str, variant: str | None, artifacts: dict[str, Path], hyperparameters: dict, upstream: list[LoadedManifest], data_fingerprint: dict, wall_time_s: float, metrics: dict, digests: Mapping[str, str] | None = None) -> dict:
    """Hash the artifacts, validate, and write the manifest atomically (always last).

    ``digests``: sha256 of artifacts (by name) their writer computed from the bytes it wrote
    (the graph shards), so that they are not read back to be hashed a second time."""
    path = Path(path)
    data = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "stage": stage,
        "variant": variant,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "artifacts": {name: artifact_entry(path, Path(p), (digests or {}).get(name)) for name, p in artifacts.items()},
        "hyperparameters": hyperparameters,
        "upstream": [m.upstream_ref() for m in upstream],
        "data_fingerprint": data_fingerprint,
        "code_version": code_version(),
        "code_digest": stage_code_digest(stage),
        "package_versions": package_versions(),
        "wall_time_s": round(float(wall_time_s), 3),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "host": platform.node(),
        "metrics": json_safe(metrics),
    }
    validate_manifest(data, str(path))
    atomic_write_json(path, data)
    return data


def load_manifest(path: str | Path, *, stage: str | None = None, dataset: str | None = None, variant: str | None = None, verify: bool = True) -> LoadedManifest:
    """Read, validate and (by default) verify every artifact digest of a manifest.

    Raises ``ManifestError`` naming the manifest, the artifact and both digests on a mismatch,
    and naming the expected value when the manifest is for another stage, dataset or variant.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from None
    validate_manifest(data, str(path))
    for key, expected in (("stage", stage), ("dataset", dataset), ("variant", variant)):
        if expected is not None and data[key] != expected:
            raise ManifestError(f"{path}: manifest is for {key} '{data[key]}', expected {key} '{expected}'")
    loaded = LoadedManifest(path=path, data=data, sha256=hashlib.sha256(raw).hexdigest())
    if verify:
        verify_artifacts(loaded)
    return loaded


def _inside(manifest_path: Path, name: str, relative: str) -> Path:
    """``relative`` resolved against the manifest's directory; a path that leaves it is refused.

    A manifest is a contract about its own directory: ``../../etc/passwd``, an absolute path
    or a symlink out of the directory would make ``verify`` read, and a stage load, a file
    the manifest does not own.
    """
    base = manifest_path.parent.resolve()
    target = (manifest_path.parent / relative).resolve()
    if Path(relative).is_absolute() or not target.is_relative_to(base):
        raise ManifestError(f"{manifest_path}: artifact '{name}' path {relative!r} leads outside the manifest's directory ({target}); expected a path inside {base}")
    return target


def verify_artifacts(manifest: LoadedManifest) -> None:
    for name, entry in manifest.data["artifacts"].items():
        artifact = _inside(manifest.path, name, entry["path"])
        if not artifact.exists():
            raise ManifestError(f"{manifest.path}: artifact '{name}' missing: {artifact} (expected sha256 {entry['sha256']})")
        actual = sha256_file(artifact)
        if actual != entry["sha256"]:
            raise ManifestError(f"{manifest.path}: artifact '{name}' ({artifact}) does not match its manifest: expected sha256 {entry['sha256']}, found {actual}; refusing to use it")


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None and numpy scalars with Python numbers."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    return obj
