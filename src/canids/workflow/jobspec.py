"""Job specs and dependency manifests: the users' interface on top of the Snakemake DAG.

A job spec (``jobs/*.json``) is a Snakemake config file: ``snakemake --configfile jobs/X.json``
merges it on top of config/config.yaml. Snakemake itself only checks that the file parses (as
JSON *or YAML*, and its error does not name the file), so this module validates every spec
when the workflow is parsed, before any job, with messages that name the file, the field and
the expected form::

    jobs/x.json: extra_args.epochs: expected an integer >= 1, got '5; rm -rf ~'

Spec values never reach a shell: the rules use ``script:``, and typed fields are checked here.

``dependency_manifests`` pins upstream artifacts instead of building them. Per dataset, a
template (``{dataset}``, ``{experiment_root}``) names either one stage manifest (pins that
stage) or a *dependency bundle* (``workflow/schemas/dependency_bundle.schema.json``: several
stages of one dataset x variant, as written by ``canids export-manifest``). Every pinned
manifest is checked for dataset, stage and variant and every artifact's sha256 is verified
here, at parse time, so a tampered or missing file stops ``snakemake -n`` with the manifest,
the artifact and both digests, and nothing is trained on it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import jsonschema

from canids.data.catalog import check_name
from canids.util import atomic_write_json
from canids.workflow.manifest import LoadedManifest, ManifestError, load_manifest, schema_dir, verify_artifacts
from canids.workflow.settings import TRAINING_STAGES, VARIANTS

__all__ = [
    "BUNDLE_KIND",
    "PINNABLE_STAGES",
    "ConfigSources",
    "JobSpecError",
    "Pin",
    "check_job_specs",
    "export_bundle",
    "load_spec",
    "pinnable",
    "resolve_pins",
    "selected_datasets",
    "validate_spec",
]

BUNDLE_KIND = "canids-dependency-bundle"
#: What each stage reads, in the workflow's rules (same variant; preprocess has none).
UPSTREAM: dict[str, tuple[str, ...]] = {
    "preprocess": (),
    "autoencoder": ("preprocess",),
    "curriculum": ("preprocess", "autoencoder"),
    "fusion": ("preprocess", "autoencoder", "curriculum"),
    "evaluation": ("preprocess", "autoencoder", "curriculum", "fusion"),
}
#: Stages whose manifests can stand in for the workflow's own outputs (evaluation feeds nothing).
PINNABLE_STAGES = ("preprocess", "autoencoder", "curriculum", "fusion")
_TEMPLATE_FIELDS = frozenset({"dataset", "experiment_root"})
_BUNDLE_FIELDS = frozenset({"dataset", "experiment_root", "variant"})

#: (stage, variant) of one stage output; preprocess is shared by all variants (variant None).
StageKey = tuple[str, "str | None"]


class JobSpecError(ValueError):
    """A job spec or a dependency manifest is invalid; the message names the file and the field."""


# --------------------------------------------------------------------------- schema checks


@functools.lru_cache(maxsize=None)
def _schema(name: str) -> dict:
    return json.loads((schema_dir() / name).read_text())


@functools.lru_cache(maxsize=1)
def _strict_validator_class() -> type:
    """Draft 2020-12 where "integer" means a JSON integer: not 5.0 and not true (typed overrides)."""
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine("integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool))
    return jsonschema.validators.extend(base, type_checker=checker)


def _strict_validator(schema: dict) -> jsonschema.protocols.Validator:
    return _strict_validator_class()(schema)


def _field(path: Iterable[Any]) -> str:
    """``["extra_args", "epochs"]`` -> ``extra_args.epochs``; list indices as ``[i]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any) -> str:
    """A value as the user wrote it (strings quoted, so '5; rm -rf ~' stays visibly one string)."""
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _expected(schema: dict, path: Sequence[Any]) -> str | None:
    """The ``x-expected`` wording of the schema node that describes ``path`` (deepest one that has it)."""
    node, found = schema, schema.get("x-expected")
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            props = node.get("properties", {})
            node = props[part] if part in props else node.get("additionalProperties", {})
        if not isinstance(node, dict):
            break
        found = node.get("x-expected", found) if node else found
    return found


def schema_errors(data: Any, schema: dict, source: str, *, partial: bool = False) -> list[str]:
    """One message per problem: ``SOURCE: FIELD: expected FORM, got VALUE`` (sorted by field).

    ``partial`` skips required-field checks (a ``--config`` layer overrides only some keys).
    """
    messages = []
    for err in _strict_validator(schema).iter_errors(data):
        where = _field(err.absolute_path)
        if err.validator == "required":
            if partial:
                continue
            missing = [k for k in err.validator_value if k not in err.instance]
            for key in missing:
                form = _expected(schema, [*err.absolute_path, key]) or "a value"
                messages.append(f"{source}: {_field([*err.absolute_path, key])}: missing required field; expected {form}")
            continue
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted(err.schema.get("properties", {}))
            for key in sorted(k for k in err.instance if k not in allowed):
                messages.append(f"{source}: {_field([*err.absolute_path, key])}: unknown key {key!r}; allowed keys: {', '.join(allowed)}")
            continue
        if err.validator == "propertyNames":
            messages.append(f"{source}: {where}: invalid key {_show(err.instance)}; expected a dataset name or \"default\"")
            continue
        form = _expected(schema, list(err.absolute_path)) or err.message
        messages.append(f"{source}: {where or '(top level)'}: expected {form}, got {_show(err.instance)}")
    return sorted(set(messages))


def validate_spec(data: Any, source: str, *, partial: bool = False) -> None:
    """Raise ``JobSpecError`` listing every problem of a job spec (or of a ``--config`` layer)."""
    if not isinstance(data, dict):
        raise JobSpecError(f"{source}: expected a JSON object with the keys of a job spec (name, datasets, training_types, ...), got {_show(data)}")
    messages = schema_errors(data, _schema("jobspec.schema.json"), source, partial=partial)
    if messages:
        raise JobSpecError("invalid job spec:\n" + "\n".join(messages) if len(messages) > 1 else messages[0])


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def load_json_file(path: str | os.PathLike, what: str = "job spec", label: str | None = None) -> Any:
    """Strict JSON (no YAML fallback, no duplicate keys); errors name the file, line and column."""
    path = Path(path)
    label = label or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobSpecError(f"{label}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise JobSpecError(f"{label}: cannot read {what}: {err}") from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as err:
        raise JobSpecError(f"{label}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}; expected a {what} as a JSON object") from None
    except ValueError as err:
        raise JobSpecError(f"{label}: not valid JSON: {err}; expected a {what} with each key once") from None


def load_spec(path: str | os.PathLike, label: str | None = None) -> dict:
    """Read and validate one job spec file (strict JSON, then the schema)."""
    data = load_json_file(path, label=label)
    validate_spec(data, label or str(path))
    return data


# --------------------------------------------------------------------------- where a key came from


@dataclass
class ConfigSources:
    """The config layers Snakemake merged (in order), to say which file set a key in a message."""

    layers: list[tuple[str, Mapping]] = field(default_factory=list)
    default: str = "config/config.yaml"

    def origin(self, key: str) -> str:
        for label, data in reversed(self.layers):
            if key in data:
                return label
        return self.default


def _label(path: str | os.PathLike) -> str:
    """A configfile as the user would name it: relative to the working directory when under it."""
    path = Path(path)
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_job_specs(config: Mapping, configfiles: Iterable[str | os.PathLike], cli_config: Mapping | None = None) -> ConfigSources:
    """Validate every ``--configfile`` and the ``--config`` overrides, before Snakemake's schema check.

    ``.json`` config files are job specs: strict JSON, required ``name``/``datasets``/
    ``training_types``. Other config files (YAML) and ``--config`` are checked the same way
    but only for the keys they set. Returns where each key came from, for later messages.
    """
    sources = ConfigSources()
    for path in configfiles:
        label = _label(path)
        if str(path).endswith(".json"):
            data = load_spec(path, label)
        else:
            data = _load_other(path)
            validate_spec(data, label, partial=True)
        sources.layers.append((label, data))
    if cli_config:
        validate_spec(dict(cli_config), "--config", partial=True)
        sources.layers.append(("--config", cli_config))
    return sources


def _load_other(path: str | os.PathLike) -> dict:
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- datasets and templates


def selected_datasets(config: Mapping, catalog, origin: Callable[[str], str]) -> list[str]:
    """The spec's datasets, each checked against the catalog (the message names the field)."""
    value = config.get("datasets")
    items = [value] if isinstance(value, str) else list(value or [])
    known = ", ".join(catalog.names)
    if not items:
        raise JobSpecError(f"{origin('datasets')}: datasets: expected \"all\" or a non-empty list of dataset names from {catalog.source} ({known}), got []")
    for i, item in enumerate(items):
        if item != "all" and item not in catalog.names:
            raise JobSpecError(f"{origin('datasets')}: datasets[{i}]: unknown dataset {_show(item)}; expected \"all\" or one of {known} (catalog {catalog.source})")
    return catalog.expand(value)


def _template_fields(template: str, where: str, allowed: frozenset[str]) -> set[str]:
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


def manifest_templates(config: Mapping, datasets: Sequence[str], catalog_names: Sequence[str], origin: Callable[[str], str]) -> dict[str, tuple[str, str]]:
    """dataset -> (field, template) for every selected dataset that has a dependency manifest.

    ``default`` applies to each dataset without its own key; it must contain ``{dataset}``
    when it applies to more than one dataset (else they would all pin the same file).
    ``extra_args.dependency_manifest`` is the same as ``dependency_manifests.default``.
    """
    entries = {k: (f"{origin('dependency_manifests')}: dependency_manifests.{k}", v) for k, v in (config.get("dependency_manifests") or {}).items()}
    alias = (config.get("extra_args") or {}).get("dependency_manifest")
    if alias:
        where = f"{origin('extra_args')}: extra_args.dependency_manifest"
        if "default" in entries and entries["default"][1] != alias:
            raise JobSpecError(f"{where}: {alias!r} conflicts with dependency_manifests.default {entries['default'][1]!r}; expected one of the two")
        entries.setdefault("default", (where, alias))
    for key, (where, template) in entries.items():
        if key != "default" and key not in catalog_names:
            raise JobSpecError(f"{where}: unknown dataset {key!r}; expected \"default\" or one of {', '.join(catalog_names)}")
        _template_fields(template, where, _TEMPLATE_FIELDS)
    out = {d: entries[d] for d in datasets if d in entries}
    by_default = [d for d in datasets if d not in entries]
    if "default" in entries and by_default:
        where, template = entries["default"]
        if len(by_default) > 1 and "dataset" not in _template_fields(template, where, _TEMPLATE_FIELDS):
            raise JobSpecError(
                f"{where}: template {template!r} has no {{dataset}} placeholder but applies to {len(by_default)} datasets "
                f"({', '.join(by_default)}); expected a template with {{dataset}}, e.g. '/project/manifests/{{dataset}}_manifest.json', "
                f"or one key per dataset"
            )
        out.update({d: entries["default"] for d in by_default})
    return out


def _fill(template: str, base: Path, **values: str) -> Path:
    """Fill placeholders; a relative result is relative to ``base`` (``{experiment_root}/...`` to the cwd)."""
    path = Path(os.path.expanduser(template.format(**{k: v for k, v in values.items() if "{" + k + "}" in template})))
    if not path.is_absolute():
        path = (Path.cwd() if template.startswith("{experiment_root}") else base) / path
    return Path(os.path.abspath(path))


# --------------------------------------------------------------------------- pins


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


def _deps(key: StageKey) -> list[StageKey]:
    stage, variant = key
    deps: list[StageKey] = [(u, None if u == "preprocess" else variant) for u in UPSTREAM[stage]]
    if variant == "student_kd" and stage in TRAINING_STAGES:
        deps.append((stage, "teacher"))
    return deps


def built_by_job(variants: Sequence[str], training_types: Sequence[str]) -> set[StageKey]:
    return {(s, None if s == "preprocess" else v) for v in variants for s in training_types}


def pinnable(variants: Sequence[str], training_types: Sequence[str]) -> set[StageKey]:
    """Stage outputs the job reads but does not build itself: the only ones a manifest may pin."""
    built = built_by_job(variants, training_types)
    closure: set[StageKey] = set()
    stack = list(built)
    while stack:
        for dep in _deps(stack.pop()):
            if dep not in closure:
                closure.add(dep)
                stack.append(dep)
    return closure - built


def _describe(keys: Iterable[StageKey]) -> str:
    return ", ".join(sorted(s if v is None else f"{v}/{s}" for s, v in keys)) or "nothing"


def _load(path: Path, where: str, **expect: Any) -> LoadedManifest:
    try:
        return load_manifest(path, verify=False, **expect)
    except ManifestError as err:
        raise JobSpecError(f"{where}: {err}") from None


def _verify(manifest: LoadedManifest, where: str) -> None:
    try:
        verify_artifacts(manifest)
    except ManifestError as err:
        raise JobSpecError(f"{where}: {err}") from None


def _allowed_variants(variants: Sequence[str]) -> list[str]:
    return list(variants) + (["teacher"] if "student_kd" in variants and "teacher" not in variants else [])


def _stage_manifest_pin(path: Path, dataset: str, wanted: set[StageKey], where: str) -> list[Pin]:
    """A single stage manifest pins that one stage (after checking it is one this job reads)."""
    m = _load(path, where, dataset=dataset)
    stage, variant = m.data["stage"], m.data["variant"]
    key: StageKey = (stage, None if stage == "preprocess" else variant)
    if key not in wanted:
        what = stage if key[1] is None else f"{variant}/{stage}"
        raise JobSpecError(f"{where}: manifest {path} is for stage {what!r}, which this job does not read or builds itself; expected a manifest for one of: {_describe(wanted)}")
    _verify(m, where)
    return [Pin(dataset, stage, key[1], m, where)]


def _bundle_pins(path: Path, data: Any, dataset: str, wanted: set[StageKey], variants: Sequence[str], root: str, where: str) -> list[Pin]:
    """A bundle pins each of its stages that this job reads; its other stages are ignored (not read)."""
    messages = schema_errors(data, _schema("dependency_bundle.schema.json"), f"{where}: bundle {path}")
    if messages:
        raise JobSpecError("\n".join(messages))
    if data["dataset"] != dataset:
        raise JobSpecError(f"{where}: bundle {path} is for dataset {data['dataset']!r}, expected dataset {dataset!r}")
    variant = data["variant"]
    if variant not in _allowed_variants(variants):
        raise JobSpecError(f"{where}: bundle {path} is for variant {variant!r}, but this job builds {', '.join(variants)}; expected a bundle for one of: {', '.join(_allowed_variants(variants))}")
    pins = []
    for stage, template in data["manifests"].items():
        key: StageKey = (stage, None if stage == "preprocess" else variant)
        if key not in wanted:
            continue
        entry = f"{where}: bundle {path}: manifests.{stage}"
        _template_fields(template, entry, _BUNDLE_FIELDS)
        target = _fill(template, path.parent, dataset=dataset, experiment_root=root, variant=variant)
        if not target.exists():
            raise JobSpecError(f"{entry}: manifest not found: {target} (from {template!r}); expected the {stage} manifest of a finished run")
        m = _load(target, entry, stage=stage, dataset=dataset, variant=key[1])
        pinned_digest = (data.get("manifest_sha256") or {}).get(stage)
        if pinned_digest and pinned_digest != m.sha256:
            raise JobSpecError(f"{entry}: manifest {target} does not match the bundle: expected sha256 {pinned_digest}, found {m.sha256}; refusing to use it")
        _verify(m, entry)
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


def _check_chain(pins: dict[tuple[str, str, str | None], Pin], needed: set[StageKey]) -> None:
    """Pinned stages must form one run: each pinned stage was trained on the pinned upstream it lists.

    A pinned stage whose (same-variant) upstream training stage this job would rebuild is
    refused too: downstream stages would then mix models that were never trained together.
    Preprocessing may be rebuilt (it is deterministic from the raw data and settings).
    """
    for pin in pins.values():
        for ref in pin.manifest.data["upstream"]:
            key: StageKey = (ref["stage"], None if ref["stage"] == "preprocess" else ref["variant"])
            if key[1] not in (None, pin.variant):
                continue  # a distillation teacher: not part of this chain
            other = pins.get((pin.dataset, *key))
            if other is not None and other.manifest.sha256 != ref["sha256"]:
                raise JobSpecError(
                    f"{pin.via}: {pin.manifest.path} was trained on {key[0]} manifest sha256 {ref['sha256']}, "
                    f"but {other.via} pins {other.manifest.path} with sha256 {other.manifest.sha256}; expected manifests of one run"
                )
            if other is None and key in needed and key[0] != "preprocess":
                raise JobSpecError(
                    f"{pin.via}: pins {pin.stage} ({pin.manifest.path}) but this job would retrain its upstream {key[0]}; "
                    f"expected {key[0]} pinned too (use a dependency bundle) or {pin.stage} not pinned"
                )


def resolve_pins(config: Mapping, *, datasets: Sequence[str], catalog_names: Sequence[str], variants: Sequence[str], root: str, origin: Callable[[str], str]) -> dict[tuple[str, str, str | None], Pin]:
    """(dataset, stage, variant) -> verified Pin, for every dependency manifest of the spec."""
    training_types = list(config.get("training_types") or [])
    templates = manifest_templates(config, datasets, catalog_names, origin)
    if not templates:
        return {}
    wanted = pinnable(variants, training_types)
    pins: dict[tuple[str, str, str | None], Pin] = {}
    for dataset, (where, template) in templates.items():
        path = _fill(template, Path.cwd(), dataset=dataset, experiment_root=root)
        for pin in _pins_from_file(path, dataset, wanted, variants, root, where):
            pins[(dataset, pin.stage, pin.variant)] = pin
    _check_chain(pins, built_by_job(variants, training_types) | wanted)
    return pins


# --------------------------------------------------------------------------- export


def export_bundle(root: str | os.PathLike, dataset: str, variant: str, out: str | os.PathLike, *, relative_to_root: bool = False) -> dict:
    """Write a dependency bundle pinning the finished stages of ``root/dataset/variant``.

    Every stage manifest is verified first (artifacts' sha256, one coherent chain), and the
    bundle records each manifest's own sha256, so it pins exactly this run. Paths are absolute
    (reusable from any experiment root on this file system) or, with ``relative_to_root``,
    ``{experiment_root}/...`` (reusable after moving or copying the whole root elsewhere).
    """
    check_name(dataset)
    if variant not in VARIANTS:
        raise JobSpecError(f"--variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    base = Path(os.path.abspath(root))
    found = {"preprocess": base / dataset / "preprocess" / "manifest.json", **{s: base / dataset / variant / s / "manifest.json" for s in TRAINING_STAGES}}
    pins: dict[tuple[str, str, str | None], Pin] = {}
    for stage, path in found.items():
        if path.exists():
            key_variant = None if stage == "preprocess" else variant
            m = _load(path, f"export {dataset}/{variant}", stage=stage, dataset=dataset, variant=key_variant)
            _verify(m, f"export {dataset}/{variant}")
            pins[(dataset, stage, key_variant)] = Pin(dataset, stage, key_variant, m, str(path))
    if not pins:
        raise JobSpecError(f"export {dataset}/{variant}: no finished stage under {base}; looked for {', '.join(map(str, found.values()))}")
    _check_chain(pins, set())

    def spell(path: Path) -> str:
        if relative_to_root and path.is_relative_to(base):
            return "{experiment_root}/" + path.relative_to(base).as_posix()
        return str(path)

    bundle = {
        "kind": BUNDLE_KIND,
        "schema_version": 1,
        "dataset": dataset,
        "variant": variant,
        "manifests": {pin.stage: spell(pin.manifest.path) for pin in pins.values()},
        "manifest_sha256": {pin.stage: pin.manifest.sha256 for pin in pins.values()},
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "exported_from": str(base),
    }
    problems = schema_errors(bundle, _schema("dependency_bundle.schema.json"), str(out))
    if problems:  # a bug here, not a user error
        raise AssertionError("\n".join(problems))
    atomic_write_json(Path(out), bundle)
    return bundle
