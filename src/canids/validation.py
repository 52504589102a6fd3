"""One way to check a document against a JSON Schema and say what is wrong.

Config files, job specs, dependency bundles, manifests and the dataset catalog are all
checked here, so every message has the same form, naming the source, the field, what was
expected and what was found::

    jobs/x.json: extra_args.epochs: expected an integer >= 1, got '5; rm -rf ~'

The validator is Draft 2020-12 with two stricter types: an "integer" is a JSON integer (not
``5.0``, not ``true``), and a "number" is finite (``NaN``, ``Infinity`` and ``1e999``, which
Python's JSON reader accepts, are refused before they can reach training).
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, Iterable, Sequence

import jsonschema

__all__ = ["SchemaError", "check", "coerce", "describe", "node_at", "schema_errors"]


class SchemaError(ValueError):
    """A document does not fit its schema; the message lists every problem with its field."""


def _is_integer(_checker: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(_checker: Any, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not isinstance(value, float) or math.isfinite(value)


@functools.lru_cache(maxsize=1)
def _validator_class() -> type:
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
    return jsonschema.validators.extend(base, type_checker=checker)


def field_name(path: Iterable[Any]) -> str:
    """``["extra_args", "epochs"]`` -> ``extra_args.epochs``; list indices as ``[i]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def show(value: Any) -> str:
    """A value as the user wrote it (strings quoted, so '5; rm -rf ~' stays visibly one string)."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)


def describe(node: dict) -> str:
    """What a schema node accepts, in words: ``x-expected`` if the node says, else from its keywords."""
    if "x-expected" in node:
        return str(node["x-expected"])
    if "const" in node:
        return json.dumps(node["const"])
    if "enum" in node:
        names = ", ".join(str(v) for v in node["enum"] if v is not None)
        return f"one of {names}" + (" (or null)" if None in node["enum"] else "")
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(describe(n) for n in node.get("oneOf", node.get("anyOf", [])))
    kinds = node.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    words = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string", "null": "null", "array": "a list", "object": "an object"}
    text = " or ".join(words.get(k, k) for k in kinds) or "a value"
    bounds = [f">= {node['minimum']}" if "minimum" in node else "", f"> {node['exclusiveMinimum']}" if "exclusiveMinimum" in node else "", f"<= {node['maximum']}" if "maximum" in node else "", f"< {node['exclusiveMaximum']}" if "exclusiveMaximum" in node else ""]
    bounds = [b for b in bounds if b]
    if bounds:
        text += " " + " and ".join(bounds)
    if node.get("minItems"):
        text = "a non-empty list" if kinds == ["array"] else text
    if "items" in node and isinstance(node["items"], dict) and kinds == ["array"]:
        text += " of " + _plural(describe(node["items"]))
    return text


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            return text[len(article):].replace("integer", "integers", 1).replace("number", "numbers", 1).replace("string", "strings", 1)
    return text


def node_at(schema: dict, path: Sequence[Any]) -> dict:
    """The schema node describing ``path`` (deepest reachable one)."""
    node = schema
    for part in path:
        if not isinstance(node, dict):
            break
        if isinstance(part, int):
            node = node.get("items", node)
        else:
            props = node.get("properties", {})
            if part in props:
                node = props[part]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            else:
                break
    return node if isinstance(node, dict) else {}


def schema_errors(data: Any, schema: dict, source: str, *, partial: bool = False, field: str = "") -> list[str]:
    """One message per problem: ``SOURCE: FIELD: expected FORM, got VALUE`` (sorted by field).

    ``partial`` skips required-field checks (a layer that overrides only some keys, such as
    ``--config`` on top of the defaults). ``field`` names where ``data`` sits in its document.
    """
    messages = []
    for err in _validator_class()(schema).iter_errors(data):
        where = field_name([field, *err.absolute_path] if field else err.absolute_path)
        if err.validator == "required":
            if partial:
                continue
            for key in (k for k in err.validator_value if k not in err.instance):
                form = describe(node_at(schema, [*err.absolute_path, key]))
                messages.append(f"{source}: {field_name([*err.absolute_path, key])}: missing required field; expected {form}")
            continue
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted(err.schema.get("properties", {}))
            for key in sorted(k for k in err.instance if k not in allowed):
                messages.append(f"{source}: {field_name([*err.absolute_path, key])}: unknown key {key!r}; allowed keys: {', '.join(allowed)}")
            continue
        if err.validator == "propertyNames" or "propertyNames" in err.absolute_schema_path:
            # jsonschema reports a bad key as the key's own failure (a pattern), at its object's path
            form = describe(err.schema.get("propertyNames", {}) if err.validator == "propertyNames" else err.schema)
            messages.append(f"{source}: {where}: invalid key {show(err.instance)}; expected {form}")
            continue
        if err.validator in ("oneOf", "anyOf") and isinstance(err.instance, list):
            duplicated = next((sub for sub in err.context if sub.validator == "uniqueItems"), None)
            if duplicated is not None:
                err = duplicated
        if err.validator == "uniqueItems":
            seen, dupes = [], []
            for item in err.instance:
                (dupes if item in seen else seen).append(item)
            messages.append(f"{source}: {where}: duplicate entries {show(dupes)}; expected each entry once")
            continue
        form = describe(node_at(schema, list(err.absolute_path)))
        messages.append(f"{source}: {where or '(top level)'}: expected {form}, got {show(err.instance)}")
    return sorted(set(messages))


def check(data: Any, schema: dict, source: str, *, partial: bool = False, error: type[Exception] = SchemaError, what: str = "document", field: str = "") -> None:
    """Raise ``error`` listing every problem of ``data`` (one line when there is one)."""
    messages = schema_errors(data, schema, source, partial=partial, field=field)
    if messages:
        raise error(messages[0] if len(messages) == 1 else f"invalid {what}:\n" + "\n".join(messages))


_INT = re.compile(r"^[+-]?\d+$")


def coerce(value: Any, node: dict) -> Any:
    """A value given as text (``--config`` nests scalars as strings; run names are text) as the type its schema node declares."""
    if isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        return {k: coerce(v, props.get(k, extra if isinstance(extra, dict) else {})) for k, v in value.items()}
    if isinstance(value, list):
        items = node.get("items") or next((alt.get("items") for alt in node.get("oneOf", []) + node.get("anyOf", []) if alt.get("items")), {})
        return [coerce(v, items) for v in value]
    if not isinstance(value, str):
        return value
    kinds = set(node.get("type", []) if isinstance(node.get("type"), list) else [node.get("type")])
    for alt in node.get("anyOf", []) + node.get("oneOf", []):
        kinds |= set(alt.get("type", []) if isinstance(alt.get("type"), list) else [alt.get("type")])
    if None in node.get("enum", []):
        kinds.add("null")
    text = value.strip()
    if "null" in kinds and text in ("null", "~", "None"):
        return None
    if "boolean" in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "integer" in kinds and _INT.match(text):
        return int(text)
    if "number" in kinds:
        try:
            return float(text)
        except ValueError:
            return value
    return value
