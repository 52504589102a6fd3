"""Frozen dataclasses as configuration: declare a field once, get its default, type and schema.

``canids.settings`` declares every setting with ``setting(default, meaning, **bounds)``. From
those declarations this module builds typed objects out of plain config mappings (``build``:
missing keys keep their default, lists become tuples), turns them back into plain data
(``to_plain``, what manifests record), and writes their JSON Schema (``section_schema``:
type from the annotation, bounds and meaning from the declaration, default from an instance).
A section whose defaults differ by model size is a ``BySize`` of two instances.

Why not pydantic: the schema must be plain JSON Schema for the workflow's files and for
``canids.validation`` (one renderer for every document), and these hundred lines cover the
types the settings use (scalars, optionals, literals, tuples, string maps, nested sections).
Standard library only: the Snakefile imports this at parse time.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import field, fields, is_dataclass
from typing import Any, Callable, Literal, Mapping

from canids.shape import SIZES

__all__ = ["REQUIRED", "BySize", "build", "by_size", "section_schema", "setting", "to_plain"]

#: ``setting(REQUIRED, ...)``: no default; the configuration must say.
REQUIRED = dataclasses.MISSING


def setting(default: Any, meaning: str, *, schema: dict | Callable[[], dict] | None = None, choices: tuple | None = None, **bounds: Any) -> Any:
    """A configurable field: its default, what it means, and JSON-Schema bounds on its value.

    ``choices``: the allowed values (of each item, for a tuple field). ``schema``: a schema
    node (or a function making one) that replaces the one derived from the type.
    """
    metadata = {"doc": meaning, "bounds": bounds, "choices": choices, "schema": schema}
    if default is REQUIRED:
        return field(metadata=metadata)
    if is_dataclass(default) or isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class BySize:
    """A stage's settings per architecture size (``canids.shape.SIZES``); a variant picks its size's."""

    def __init__(self, **sections: Any) -> None:
        if set(sections) != set(SIZES):
            raise TypeError(f"BySize needs one section per size {SIZES}, got {sorted(sections)}")
        self._sections = {size: sections[size] for size in SIZES}

    def __getitem__(self, size: str) -> Any:
        return self._sections[size]

    def __getattr__(self, size: str) -> Any:
        try:
            return self.__dict__["_sections"][size]
        except KeyError:
            raise AttributeError(size) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BySize) and self._sections == other._sections

    def __hash__(self) -> int:
        return hash(tuple(self._sections.items()))

    def __repr__(self) -> str:
        return f"BySize({', '.join(f'{k}={v!r}' for k, v in self._sections.items())})"


def by_size(meaning: str, **sections: Any) -> Any:
    """A field holding a section per size, each size's defaults given as an instance."""
    return field(default_factory=lambda: BySize(**sections), metadata={"doc": meaning, "bounds": {}, "choices": None, "schema": None})


# --------------------------------------------------------------------------- typed <-> plain


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is REQUIRED and f.default_factory is REQUIRED


def defaults(cls: type) -> Any:
    """An instance holding every default (required fields, which have none, hold None)."""
    return cls(**{f.name: None for f in fields(cls) if _is_required(f)})


def _optional(hint: Any) -> tuple[bool, Any]:
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
    return False, hint


def _convert(hint: Any, value: Any) -> Any:
    """A validated plain value as the field's Python type (lists become tuples: settings are frozen)."""
    if value is None:
        return None
    _, hint = _optional(hint)
    if isinstance(value, list):
        return tuple(value)
    if hint is float and isinstance(value, int):
        return float(value)
    if typing.get_origin(hint) is dict:
        return dict(value)
    return value


def build(cls: type, data: Mapping[str, Any], default: Any = None) -> Any:
    """``cls`` from a plain mapping laid over ``default`` (missing keys keep the default's value)."""
    default = defaults(cls) if default is None else default
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        base = getattr(default, f.name)
        if f.name not in data:
            values[f.name] = base
        elif isinstance(base, BySize):
            given = data[f.name] or {}
            values[f.name] = BySize(**{size: build(type(base[size]), given.get(size) or {}, base[size]) for size in SIZES})
        elif is_dataclass(base) and isinstance(data[f.name], Mapping):
            values[f.name] = build(type(base), data[f.name], base)
        else:
            values[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**values)


def to_plain(obj: Any) -> Any:
    """Settings (or a section) as plain JSON-ready data."""
    if isinstance(obj, BySize):
        return {size: to_plain(obj[size]) for size in SIZES}
    if is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------- schema


def _type_schema(hint: Any, choices: tuple | None) -> dict:
    optional, hint = _optional(hint)
    origin = typing.get_origin(hint)
    if origin is Literal:
        node: dict = {"enum": list(typing.get_args(hint))}
    elif origin is tuple:
        node = {"type": "array", "items": _type_schema(typing.get_args(hint)[0], choices)}
        choices = None
    elif choices is not None:
        node = {"enum": list(choices)}
    elif origin is dict:
        node = {"type": "object", "additionalProperties": _type_schema(typing.get_args(hint)[1], None)}
    elif origin is typing.Union:
        node = {"anyOf": [_type_schema(a, None) for a in typing.get_args(hint)]}
    else:
        node = {t: {"type": name} for t, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))}.get(hint, {})
        node = dict(node)
    if optional:
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
        elif "type" in node:
            node["type"] = [node["type"], "null"]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def field_schema(cls: type, f: dataclasses.Field, default: Any) -> dict:
    """A field's JSON Schema: its type, bounds, default (unless required) and meaning."""
    meta = f.metadata
    if isinstance(default, BySize):
        node = {"type": "object", "additionalProperties": False, "properties": {size: section_schema(type(default[size]), default[size]) for size in SIZES}}
    elif is_dataclass(default):
        node = section_schema(type(default), default)
    else:
        override = meta.get("schema")
        node = dict(override() if callable(override) else override) if override else _type_schema(typing.get_type_hints(cls)[f.name], meta.get("choices"))
        bounds = dict(meta.get("bounds") or {})
        if "anyOf" in node and bounds:  # bounds apply to the non-null alternative
            first, *rest = node["anyOf"]
            node = {**node, "anyOf": [{**first, **bounds}, *rest]}
        else:
            node.update(bounds)
        if not _is_required(f):
            node["default"] = to_plain(default)
    node["description"] = meta.get("doc", "")
    return node


def section_schema(cls: type, default: Any = None) -> dict:
    """JSON Schema of a settings class, with the defaults of ``default`` (an instance)."""
    default = defaults(cls) if default is None else default
    props = {f.name: field_schema(cls, f, getattr(default, f.name)) for f in fields(cls)}
    required = [f.name for f in fields(cls) if _is_required(f)]
    return {"type": "object", "additionalProperties": False, "properties": props, **({"required": required} if required else {})}
