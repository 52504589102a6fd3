"""Whether a stage result is current: its manifest agrees with what this configuration would make.

Snakemake decides what to rebuild from file times and from its own records in the working
directory's ``.snakemake/metadata``. Neither travels with an experiment root: a root copied to
another machine, used from another ``--directory`` or from a fresh clone has no records, so a
model trained with other settings looked current. Here the manifests decide. A stage result is
current when its manifest records

* the settings this configuration resolves for it (``canids.settings.stage_settings``),
* the code digest of the package code its stage runs now (``canids.workflow.code_digest``),
* the sha256 of the upstream manifests it would read now (so a rebuilt upstream, or one
  rebuilt by another run, makes it stale), and, for preprocessing, the fingerprint of the raw
  captures,

and every artifact it pins still has its recorded sha256 (a truncated checkpoint or a
flipped byte makes it stale, before any downstream output is deleted). Pinned stages
(dependency manifests) are exempt: a pin means "use this as it is", and pins are verified
when they are resolved. A manifest written before a field was recorded is stale once.

``plan`` returns every stale stage result a set of targets needs, with the reasons, in the
order the stages run; the workflow forces Snakemake to rebuild exactly those (everything
downstream follows) and prints why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from canids.settings import stage_settings, to_plain
from canids.shape import STAGES, Layout, dependencies
from canids.study import restrict
from canids.util import FileDigests
from canids.workflow.code_digest import stage_code_digest
from canids.workflow.dag import Pipeline
from canids.workflow.manifest import fingerprint

__all__ = ["Currency", "Key", "Stale", "settings_diff"]

#: One stage result: (dataset, variant or None, stage, run name).
Key = tuple[str, "str | None", str, str]

#: Hyperparameters a stage records that are outcomes, not inputs (batch size the tuner chose).
_OUTCOMES = frozenset({"batch_size_used", "decision_rule"})
#: How many differing settings a reason spells out.
_SHOWN = 4


@dataclass(frozen=True)
class Stale:
    """A stage result that exists but is not current, and why."""

    dataset: str
    variant: str | None
    stage: str
    run: str
    manifest: str
    reasons: tuple[str, ...]

    def describe(self, root: str) -> str:
        where = self.manifest[len(root) + 1 :] if self.manifest.startswith(root + "/") else self.manifest
        return f"{Path(where).parent}: {'; '.join(self.reasons)}"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flat(sub, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def settings_diff(recorded: dict, wanted: dict) -> list[str]:
    """``epochs 25 -> 3`` for every setting whose recorded value differs from the wanted one."""
    old, new = _flat(recorded), _flat(wanted)
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key, "<unset>") != new.get(key, "<unset>"):
            changes.append(f"{key} {json.dumps(old.get(key, '<unset>'))} -> {json.dumps(new.get(key, '<unset>'))}")
    return changes


@dataclass
class Currency:
    """Plans what a run must rebuild, from the manifests under the experiment root."""

    pipeline: Pipeline
    digests: FileDigests
    _memo: dict[Key, tuple[str, ...] | None] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        return self.pipeline.layout

    # ------------------------------------------------------------------ planning
    def needed(self, targets: Iterable[str]) -> list[Key]:
        """Every stage output the targets need and this root builds (not pinned), upstream first."""
        wanted: list[Key] = []
        for target in targets:
            key = self.layout.parse(target)
            if key is not None:
                self._closure(key, wanted)
        return wanted

    def plan(self, targets: Iterable[str]) -> list[Stale]:
        """Stale stage results the targets need (upstream first): what must be rebuilt, with why."""
        stale = []
        for key in self.needed(targets):
            reasons = self.reasons(*key)
            if reasons:
                dataset, variant, stage, run = key
                stale.append(Stale(*key, self.layout.file(dataset, variant, stage, run=run), reasons))
        return stale

    def _closure(self, key: Key, out: list) -> None:
        dataset, variant, stage, run = key
        for dep_stage, dep_variant in dependencies(stage, variant):
            if self.pipeline.pin(dataset, dep_variant, dep_stage) is None and not self._teacher_elsewhere(dep_variant, variant):
                self._closure((dataset, dep_variant, dep_stage, restrict(run, dep_stage, dep_variant)), out)
        if key not in out:
            out.append(key)

    def _teacher_elsewhere(self, dep_variant: str | None, variant: str | None) -> bool:
        """A distillation teacher named by ``teacher_path`` lives outside this root's layout."""
        return dep_variant != variant and dep_variant is not None and bool(self.pipeline.settings.distillation.teacher_path)

    # ------------------------------------------------------------------ one stage
    def reasons(self, dataset: str, variant: str | None, stage: str, run: str = "") -> tuple[str, ...]:
        """Why the existing result of this stage is not current; () when current, pinned or absent."""
        key = (dataset, variant if STAGES[stage].per_variant else None, stage, run)
        if key not in self._memo:
            self._memo[key] = self._reasons(*key)
        return self._memo[key] or ()

    def rebuilt(self, dataset: str, variant: str | None, stage: str, run: str = "") -> bool:
        """Whether this run (re)builds the stage: its manifest is missing or it is stale."""
        if self.pipeline.pin(dataset, variant, stage) is not None:
            return False
        return not Path(self.layout.file(dataset, variant, stage, run=run)).exists() or bool(self.reasons(dataset, variant, stage, run))

    def _reasons(self, dataset: str, variant: str | None, stage: str, run: str) -> tuple[str, ...] | None:
        if self.pipeline.pin(dataset, variant, stage) is not None:
            return None
        path = Path(self.layout.file(dataset, variant, stage, run=run))
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
                raise ValueError("not a manifest")
        except (OSError, ValueError) as err:
            return (f"manifest unreadable ({err})",)
        reasons: list[str] = []
        reasons += self._artifacts(path, data)
        changes = settings_diff({k: v for k, v in (data.get("hyperparameters") or {}).items() if k not in _OUTCOMES}, stage_settings(self.pipeline.settings.at(run), stage, variant))
        if changes:
            more = f" (+{len(changes) - _SHOWN} more)" if len(changes) > _SHOWN else ""
            reasons.append("settings changed: " + ", ".join(changes[:_SHOWN]) + more)
        code = stage_code_digest(stage)
        if "code_digest" not in data:
            reasons.append("manifest written before code digests were recorded")
        elif data["code_digest"] != code:
            reasons.append(f"code changed ({data['code_digest']} -> {code})")
        reasons += self._upstream(dataset, variant, stage, run, data)
        if stage == "preprocess":
            reasons += self._raw_data(dataset, data)
        return tuple(reasons)

    def _artifacts(self, manifest: Path, data: dict) -> list[str]:
        base = manifest.parent.resolve()
        for name, entry in data["artifacts"].items():
            target = (manifest.parent / str(entry.get("path", ""))).resolve()
            if not target.is_relative_to(base):
                return [f"artifact {name!r} lies outside the stage directory"]
            if not target.is_file():
                return [f"artifact {name!r} missing ({target.name})"]
            if self.digests.sha256(target) != entry.get("sha256"):
                return [f"artifact {name!r} ({target.name}) does not match its manifest (corrupted or replaced)"]
        return []

    def _upstream(self, dataset: str, variant: str | None, stage: str, run: str, data: dict) -> list[str]:
        refs = {(r.get("stage"), r.get("variant")): r.get("sha256") for r in data.get("upstream") or []}
        reasons = []
        for dep_stage, dep_variant in dependencies(stage, variant):
            if dep_variant != variant and dep_variant is not None:  # a distillation teacher
                paths = self.pipeline.teacher(dataset, variant, stage, run=run)
                current = Path(paths[0]) if paths else None
            else:
                current = Path(self.pipeline.upstream(dataset, dep_variant, dep_stage, run=run))
            label = dep_stage if dep_variant in (None, variant) else f"{dep_variant}/{dep_stage}"
            pinned = self.pipeline.pin(dataset, dep_variant, dep_stage) is not None
            if not pinned and not self._teacher_elsewhere(dep_variant, variant) and self.rebuilt(dataset, dep_variant, dep_stage, restrict(run, dep_stage, dep_variant)):
                reasons.append(f"upstream {label} is rebuilt")
            elif current is None or not current.exists():
                reasons.append(f"upstream {label} missing")
            elif refs.get((dep_stage, dep_variant)) != self.digests.sha256(current):
                reasons.append(f"upstream {label} is not the one it was made from")
        return reasons

    def _raw_data(self, dataset: str, data: dict) -> list[str]:
        spec = self.pipeline.catalog.get(dataset)
        if spec.generated and not Path(self.layout.generated_receipt(dataset)).exists():
            return ["raw data is regenerated"]
        files = [{"name": Path(f.path).name, "split": f.split, "sha256": f.sha256} for f in spec.capture_files(self.digests.sha256)]
        onboarding = self.pipeline.catalog.onboarding_files(dataset, self.digests.sha256)
        files += [{"name": f.path.name, "split": f.split, "sha256": f.sha256} for _, listed in onboarding.values() for f in listed]
        recorded = data.get("data_fingerprint") or {}
        if fingerprint(files, spec.attack_families)["sha256"] == recorded.get("sha256"):
            return []
        if recorded.get("attack_families", {}) != spec.attack_families:
            return ["the catalog's attack_families changed"]
        return ["raw captures changed"]

    # ------------------------------------------------------------------ generated raw data
    def generator_reasons(self, dataset: str) -> tuple[str, ...]:
        """Why a generated dataset's files are not what the current ``synthetic`` settings make."""
        from canids.data.synthetic import GENERATOR_VERSION

        receipt = Path(self.layout.generated_receipt(dataset))
        if not receipt.exists():
            return ()
        try:
            made = json.loads(receipt.read_text())
        except (OSError, ValueError) as err:
            return (f"generator receipt unreadable ({err})",)
        wanted = {**to_plain(self.pipeline.settings.synthetic), "version": GENERATOR_VERSION}
        changes = settings_diff({k: made.get(k) for k in wanted}, wanted)
        if changes:
            return ("settings changed: " + ", ".join(changes),)
        for entry in made.get("files", []):
            path = receipt.parent / entry["path"]
            if not path.is_file() or self.digests.sha256(path) != entry["sha256"]:
                return (f"generated capture {entry['path']} missing or changed",)
        return ()
