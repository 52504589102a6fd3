"""Dependency manifests: pin upstream stage outputs instead of building them.

A job spec's ``dependency_manifests`` gives, per dataset, a template (``{dataset}``,
``{experiment_root}``) naming either one stage manifest (pins that stage) or a *dependency
bundle* (several stages of one dataset x variant, as ``canids export-manifest`` writes them;
``workflow/schemas/dependency_bundle.schema.json``). Every pinned manifest is checked for
dataset, stage and variant, and every artifact's sha256 is verified here, when the workflow
is parsed: a tampered or missing file stops ``snakemake -n`` with the manifest, the artifact
and both digests, and nothing is trained on it. Pinned stages must form one run
(``_check_chain``).
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from canids.settings import Settings
from canids.shape import STAGES, VARIANTS, dependencies, output_key
from canids.validation import check
from canids.workflow.config import JobSpecError, load_json_file
from canids.workflow.manifest import LoadedManifest, ManifestError, load_manifest, verify_artifacts
from canids.workflow.schemas import BUNDLE_KIND, bundle_schema

__all__ = ["Pin", "StageKey", "built_by_job", "check_chain", "check_template", "fill_template", "pinnable", "read_manifest", "resolve_pins", "verify_manifest"]

#: (stage, variant) of one stage output; a stage shared by all variants has variant None.
StageKey = tuple[str, "str | None"]
TEMPLATE_FIELDS = frozenset({"dataset", "experiment_root"})
_BUNDLE_FIELDS = frozenset({"dataset", "experiment_root", "variant"})


# --------------------------------------------------------------------------- templates


def check_template(template: str, where: str, allowed: frozenset[str] = TEMPLATE_FIELDS) -> set[str]:
    """The placeholders of a path template, refusing any not in ``allowed`` (the message names the field)."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise JobSpecError(f"{where}: malformed template {template!r} ({err}); expected a path with placeholders {_braces(allowed)}") from None
    bad = sorted(f for f in fields if f not in allowed)
    if bad:
        shown = ", ".join("{" + f + "}" for f in bad)
        raise JobSpecError(f"{where}: unknown placeholder(s) {shown} in {template!r}; expected only {_braces(allowed)}")
    return fields


def _braces(names: Iterable[str]) -> str:
    return ", ".join("{" + n + "}" for n in sorted(names))


def fill_template(template: str, base: Path, **values: str) -> Path:
    """Fill placeholders; a relative result is relative to ``base`` (``{experiment_root}/...`` to the cwd)."""
    path = Path(os.path.expanduser(template.format(**{k: v for k, v in values.items() if "{" + k + "}" in template})))
    if not path.is_absolute():
        path = (Path.cwd() if template.startswith("{experiment_root}") else base) / path
    return Path(os.path.abspath(path))


def manifest_templates(settings: Settings, datasets: Sequence[str], catalog_names: Sequence[str], origin: Callable[[str], str]) -> dict[str, tuple[str, str]]:
    """dataset -> (field, template) for every selected dataset that has a dependency manifest.

    ``default`` applies to each dataset without its own key; it must contain ``{dataset}``
    when it applies to more than one dataset (else they would all pin the same file).
    ``extra_args.dependency_manifest`` is the same as ``dependency_manifests.default``.
    """
    entries = {k: (f"{origin('dependency_manifests')}: dependency_manifests.{k}", v) for k, v in settings.dependency_manifests.items()}
    alias = settings.extra_args.get("dependency_manifest")
    if alias:
        where = f"{origin('extra_args')}: extra_args.dependency_manifest"
        if "default" in entries and entries["default"][1] != alias:
            raise JobSpecError(f"{where}: {alias!r} conflicts with dependency_manifests.default {entries['default'][1]!r}; expected one of the two")
        entries.setdefault("default", (where, alias))
    for key, (where, template) in entries.items():
        if key != "default" and key not in catalog_names:
            raise JobSpecError(f"{where}: unknown dataset {key!r}; expected \"default\" or one of {', '.join(catalog_names)}")
        check_template(template, where)
    out = {d: entries[d] for d in datasets if d in entries}
    by_default = [d for d in datasets if d not in entries]
    if "default" in entries and by_default:
        where, template = entries["default"]
        if len(by_default) > 1 and "dataset" not in check_template(template, where):
            raise JobSpecError(
                f"{where}: template {template!r} has no {{dataset}} placeholder but applies to {len(by_default)} datasets "
                f"({', '.join(by_default)}); expected a template with {{dataset}}, e.g. '/project/manifests/{{dataset}}_manifest.json', "
                f"or one key per dataset"
            )
        out.update({d: entries["default"] for d in by_default})
    return out


# --------------------------------------------------------------------------- which outputs may be pinned


@dataclass
class Pin:
    """A pinned stage output: a verified manifest that replaces the workflow's own for (dataset, stage, variant)."""

    dataset: str
    stage: str
    variant: str | None
    manifest: LoadedManifest
    via: str

    def path(self, artifact: str = "manifest") -> str:
        """The manifest, or one of its artifacts (``checkpoint``), as an absolute path."""
        if artifact == "manifest":
            return str(self.manifest.path)
        return str(self.manifest.artifact(artifact))


def built_by_job(variants: Sequence[str], training_types: Sequence[str]) -> set[StageKey]:
    return {output_key(s, v) for v in variants for s in training_types}


def pinnable(variants: Sequence[str], training_types: Sequence[str]) -> set[StageKey]:
    """Stage outputs the job reads but does not build itself: the only ones a manifest may pin."""
    built = built_by_job(variants, training_types)
    closure: set[StageKey] = set()
    stack = list(built)
    while stack:
        for dep in dependencies(*stack.pop()):
            if dep not in closure:
                closure.add(dep)
                stack.append(dep)
    # a stage that reads one this job builds, directly or not, is rebuilt with it (onboarding after a retrained fusion)
    def reads_built(key: StageKey) -> bool:
        return any(dep in built or reads_built(dep) for dep in dependencies(*key))

    return {key for key in closure - built if not reads_built(key)}


def _describe(keys: Iterable[StageKey]) -> str:
    return ", ".join(sorted(s if v is None else f"{v}/{s}" for s, v in keys)) or "nothing"


def read_manifest(path: Path, where: str, **expect: Any) -> LoadedManifest:
    try:
        return load_manifest(path, verify=False, **expect)
    except ManifestError as err:
        raise JobSpecError(f"{where}: {err}") from None


def verify_manifest(manifest: LoadedManifest, where: str) -> None:
    try:
        verify_artifacts(manifest)
    except ManifestError as err:
        raise JobSpecError(f"{where}: {err}") from None


def _allowed_variants(variants: Sequence[str]) -> list[str]:
    """The job's variants and the teachers they distil from."""
    teachers = [VARIANTS[v].teacher for v in variants if VARIANTS[v].teacher]
    return list(dict.fromkeys([*variants, *teachers]))


# --------------------------------------------------------------------------- reading pins


def _stage_manifest_pin(path: Path, dataset: str, wanted: set[StageKey], where: str) -> list[Pin]:
    """A single stage manifest pins that one stage (after checking it is one this job reads)."""
    m = read_manifest(path, where, dataset=dataset)
    stage, variant = m.data["stage"], m.data["variant"]
    key = output_key(stage, variant)
    if key not in wanted:
        what = stage if key[1] is None else f"{variant}/{stage}"
        raise JobSpecError(f"{where}: manifest {path} is for stage {what!r}, which this job does not read or builds itself; expected a manifest for one of: {_describe(wanted)}")
    verify_manifest(m, where)
    return [Pin(dataset, stage, key[1], m, where)]


def _bundle_pins(path: Path, data: Any, dataset: str, wanted: set[StageKey], variants: Sequence[str], root: str, where: str) -> list[Pin]:
    """A bundle pins each of its stages that this job reads; its other stages are ignored (not read)."""
    check(data, bundle_schema(), f"{where}: bundle {path}", error=JobSpecError, what="dependency bundle")
    if data["dataset"] != dataset:
        raise JobSpecError(f"{where}: bundle {path} is for dataset {data['dataset']!r}, expected dataset {dataset!r}")
    variant = data["variant"]
    allowed = _allowed_variants(variants)
    if variant not in allowed:
        raise JobSpecError(f"{where}: bundle {path} is for variant {variant!r}, but this job builds {', '.join(variants)}; expected a bundle for one of: {', '.join(allowed)}")
    pins = []
    for stage, template in data["manifests"].items():
        key = output_key(stage, variant)
        if key not in wanted:
            continue
        entry = f"{where}: bundle {path}: manifests.{stage}"
        check_template(template, entry, _BUNDLE_FIELDS)
        target = fill_template(template, path.parent, dataset=dataset, experiment_root=root, variant=variant)
        if not target.exists():
            raise JobSpecError(f"{entry}: manifest not found: {target} (from {template!r}); expected the {stage} manifest of a finished run")
        m = read_manifest(target, entry, stage=stage, dataset=dataset, variant=key[1])
        pinned_digest = (data.get("manifest_sha256") or {}).get(stage)
        if pinned_digest and pinned_digest != m.sha256:
            raise JobSpecError(f"{entry}: manifest {target} does not match the bundle: expected sha256 {pinned_digest}, found {m.sha256}; refusing to use it")
        verify_manifest(m, entry)
        pins.append(Pin(dataset, stage, key[1], m, entry))
    if not pins:
        raise JobSpecError(f"{where}: bundle {path} pins nothing this job reads (it has {', '.join(data['manifests'])} of {variant}); expected one of: {_describe(wanted)}")
    return pins


def _pins_from_file(path: Path, dataset: str, wanted: set[StageKey], variants: Sequence[str], root: str, where: str) -> list[Pin]:
    if not path.exists():
        raise JobSpecError(f"{where}: manifest for dataset {dataset!r} not found: {path}; expected a stage manifest or a dependency bundle (kind {BUNDLE_KIND!r})")
    data = load_json_file(path, "manifest")
    if isinstance(data, dict) and (data.get("kind") == BUNDLE_KIND or "manifests" in data):
        return _bundle_pins(path, data, dataset, wanted, variants, root, where)
    return _stage_manifest_pin(path, dataset, wanted, where)


def check_chain(pins: dict[tuple[str, str, str | None], Pin], needed: set[StageKey]) -> None:
    """Pinned stages must form one run: each pinned stage was trained on the pinned upstream it lists.

    A pinned stage whose (same-variant) upstream training stage this job would rebuild is
    refused too: downstream stages would then mix models that were never trained together.
    A stage that trains nothing (preprocess) may be rebuilt: it is deterministic from the raw
    data and settings.
    """
    for pin in pins.values():
        for ref in pin.manifest.data["upstream"]:
            key = output_key(ref["stage"], ref["variant"])
            if key[1] not in (None, pin.variant):
                continue  # a distillation teacher: not part of this chain
            other = pins.get((pin.dataset, *key))
            if other is not None and other.manifest.sha256 != ref["sha256"]:
                raise JobSpecError(
                    f"{pin.via}: {pin.manifest.path} was trained on {key[0]} manifest sha256 {ref['sha256']}, "
                    f"but {other.via} pins {other.manifest.path} with sha256 {other.manifest.sha256}; expected manifests of one run"
                )
            if other is None and key in needed and STAGES[key[0]].trains:
                raise JobSpecError(
                    f"{pin.via}: pins {pin.stage} ({pin.manifest.path}) but this job would retrain its upstream {key[0]}; "
                    f"expected {key[0]} pinned too (use a dependency bundle) or {pin.stage} not pinned"
                )


def resolve_pins(settings: Settings, *, datasets: Sequence[str], catalog_names: Sequence[str], root: str, origin: Callable[[str], str]) -> dict[tuple[str, str, str | None], Pin]:
    """(dataset, stage, variant) -> verified Pin, for every dependency manifest of the job."""
    templates = manifest_templates(settings, datasets, catalog_names, origin)
    if not templates:
        return {}
    variants = settings.selected_variants()
    wanted = pinnable(variants, settings.training_types)
    pins: dict[tuple[str, str, str | None], Pin] = {}
    for dataset, (where, template) in templates.items():
        path = fill_template(template, Path.cwd(), dataset=dataset, experiment_root=root)
        for pin in _pins_from_file(path, dataset, wanted, variants, root, where):
            pins[(dataset, pin.stage, pin.variant)] = pin
    check_chain(pins, built_by_job(variants, settings.training_types) | wanted)
    return pins
