"""The configuration layers Snakemake merges, each checked with a message naming its file.

Snakemake merges config/config.yaml, every ``--configfile`` (job specs are ``jobs/*.json``)
and ``--config`` into one dict. It only checks that the files parse (as JSON *or* YAML, and
its error does not name the file), and ``--config`` values nested in a mapping arrive as
strings (``--config preprocess='{window_size: 50}'`` gives ``"50"``). So before anything else
the workflow calls ``workflow_settings``, which

* reads every ``.json`` config file as a job spec: strict JSON (no YAML fallback, no
  duplicate keys, no NaN/Infinity), checked against the job-spec schema (``name``,
  ``datasets``, ``training_types`` required); other config files are checked for the keys
  they set;
* turns ``--config`` strings into the type their setting declares, then checks them;
* checks the merged result and returns it with the typed ``Settings`` and where each
  top-level key came from (``ConfigSources``), so later messages name the job spec.

Spec values never reach a shell: the rules use ``script:``, and typed fields are checked here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from canids.settings import Settings, load_settings
from canids.validation import check, coerce, show
from canids.workflow.schemas import config_schema, jobspec_schema

__all__ = ["ConfigSources", "JobSpecError", "load_json_file", "load_spec", "validate_spec", "workflow_settings"]


class JobSpecError(ValueError):
    """A job spec, a config layer or a dependency manifest is invalid; the message names the file and the field."""


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def load_json_file(path: str | os.PathLike, what: str = "job spec", label: str | None = None) -> Any:
    """Strict JSON (no YAML fallback, no duplicate keys, no NaN); errors name the file, line and column."""
    path = Path(path)
    label = label or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise JobSpecError(f"{label}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise JobSpecError(f"{label}: cannot read {what}: {err}") from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise JobSpecError(f"{label}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}; expected a {what} as a JSON object") from None
    except ValueError as err:
        raise JobSpecError(f"{label}: not valid JSON: {err}; expected a {what} with each key once and finite numbers") from None


def validate_spec(data: Any, source: str, *, partial: bool = False) -> None:
    """Raise ``JobSpecError`` listing every problem of a job spec (``partial``: of a config layer)."""
    if not isinstance(data, dict):
        raise JobSpecError(f"{source}: expected a JSON object with the keys of a job spec (name, datasets, training_types, ...), got {show(data)}")
    check(data, config_schema() if partial else jobspec_schema(), source, partial=partial, error=JobSpecError, what="job spec" if not partial else "configuration")


def load_spec(path: str | os.PathLike, label: str | None = None) -> dict:
    """Read and validate one job spec file (strict JSON, then the schema)."""
    data = load_json_file(path, label=label)
    validate_spec(data, label or str(path))
    return data


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


def _load_yaml(path: str | os.PathLike) -> dict:
    label = _label(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, yaml.YAMLError) as err:
        raise JobSpecError(f"{label}: cannot read config file: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise JobSpecError(f"{label}: expected a mapping of settings, got {show(data)}")
    return data


def workflow_settings(config: dict, configfiles: Iterable[str | os.PathLike], cli_config: Mapping | None = None) -> tuple[Settings, ConfigSources]:
    """Check every config layer, fix ``--config`` types in ``config`` (in place), and type the result.

    ``config`` is Snakemake's merged config: config/config.yaml, then each ``configfiles``
    entry, then ``cli_config`` (``--config``) on top.
    """
    from snakemake.utils import update_config

    sources = ConfigSources()
    for path in configfiles:
        label = _label(path)
        if str(path).endswith(".json"):
            data = load_spec(path, label)
        else:
            data = _load_yaml(path)
            validate_spec(data, label, partial=True)
        sources.layers.append((label, data))
    if cli_config:
        typed = coerce(dict(cli_config), config_schema())
        validate_spec(typed, "--config", partial=True)
        update_config(config, typed)
        sources.layers.append(("--config", typed))
    check(config, config_schema(), "configuration (config/config.yaml + --configfile + --config)", error=JobSpecError, what="configuration")
    check_sweep(config.get("sweep") or {}, sources.origin("sweep"))
    return load_settings(config), sources


def check_sweep(sweep: Mapping[str, Any], source: str) -> None:
    """Every swept path names one setting, and every value fits it (the message names the field)."""
    schema = config_schema()
    for path, values in sweep.items():
        node = schema
        for part in path.split("."):
            node = node.get("properties", {}).get(part)
            if node is None:
                break
        if node is None or "properties" in node:
            what = "a section, not one setting" if node is not None else "no such setting"
            raise JobSpecError(f"{source}: sweep.{path}: {what}; expected the path of one setting, such as curriculum.teacher.learning_rate (config/README.md lists them)")
        leaf = {k: v for k, v in node.items() if k not in ("default", "description")}
        for i, value in enumerate(values):
            check(value, leaf, source, error=JobSpecError, what="sweep value", field=f"sweep.{path}[{i}]")
