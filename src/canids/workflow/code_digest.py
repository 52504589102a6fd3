"""A digest of the package code each stage runs, so that Snakemake re-runs a stage when it changes.

Snakemake re-runs a rule when its own script changes, but it knows nothing of the package
that script imports, and a fix to the VGAE or to the graph features changes every result
downstream. So each rule carries, as a param, a digest of the modules its stage can execute,
and Snakemake's ``params`` rerun trigger re-runs it (and, through the changed outputs,
everything after it) when that code changes.

The digest is precise in both directions:

- which modules: the stage's entry module (``Stage.code`` in canids.shape) and everything it
  imports from ``canids``, found by reading the import statements (not by importing
  anything), so editing the fusion stage re-runs fusion and evaluation but not the
  autoencoder;
- which changes: each module's syntax tree with its docstrings removed (the parser already
  drops comments and layout), so editing documentation or formatting re-runs nothing.

Parsing and normalising the ~40 modules of a stage costs about 0.4 s, paid by every stage job
and every dry run. What a module's source contributes (its normalised digest and its imports)
depends only on its bytes, so it is cached by the sha256 of those bytes under
``$XDG_CACHE_HOME/canids/code`` (or ``~/.cache``; ``CANIDS_CODE_CACHE`` overrides, an empty
value turns the cache off): content-addressed entries never go stale, and an unwritable cache
only costs the parse.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from canids.shape import STAGES
from canids.util import atomic_write_text

PACKAGE = "canids"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]

#: Rules that are not pipeline stages, and the module each runs.
RULE_ENTRIES: dict[str, str] = {"generate_synthetic": "canids.data.synthetic"}
#: Every rule's entry module: the stage's own (``canids.shape``), or one of ``RULE_ENTRIES``.
ENTRIES: dict[str, str] = {**RULE_ENTRIES, **{name: stage.code for name, stage in STAGES.items()}}


def stage_code_digest(rule: str) -> str:
    """sha256 (hex, 16 chars) of the code ``rule`` runs; equal digests mean equal code."""
    if rule not in ENTRIES:
        raise KeyError(f"no code entry for rule {rule!r}; expected one of {sorted(ENTRIES)}")
    digest = hashlib.sha256()
    for module in module_closure((ENTRIES[rule],)):
        digest.update(module.encode() + b"\0" + _summary(module)["code"].encode() + b"\0")
    return digest.hexdigest()[:16]


def module_closure(entries: tuple[str, ...]) -> list[str]:
    """The entry modules and every ``canids`` module they import, directly or not."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_imports(module))
    return sorted(seen)


def _imports(module: str) -> tuple[str, ...]:
    """``canids`` modules (and their parent packages) that ``module`` imports anywhere in its code."""
    return tuple(m for m in _summary(module)["imports"] if _path(m) is not None)


@lru_cache(maxsize=None)
def _summary(module: str) -> dict:
    """``{"code": digest of the normalised syntax tree, "imports": canids names imported}``, cached by content."""
    path = _path(module)
    if path is None:
        raise ModuleNotFoundError(f"{module}: no such module under {_PACKAGE_DIR}")
    source = path.read_bytes()
    cache = _cache_dir()
    entry = cache / f"{hashlib.sha256(source).hexdigest()}.json" if cache else None
    if entry is not None:
        try:
            cached = json.loads(entry.read_text(encoding="utf-8"))
            if isinstance(cached, dict) and set(cached) == {"code", "imports"}:
                return cached
        except (OSError, ValueError):
            pass
    tree = ast.parse(source.decode("utf-8"), filename=str(path))
    summary = {"imports": _imported_names(tree), "code": hashlib.sha256(_code_of(tree).encode()).hexdigest()}
    if entry is not None:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(entry, json.dumps(summary))
        except OSError:
            pass  # a read-only or full cache only costs the parse next time
    return summary


def _cache_dir() -> Path | None:
    configured = os.environ.get("CANIDS_CODE_CACHE")
    if configured is not None:
        return Path(configured) if configured else None
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "canids" / "code"


def _imported_names(tree: ast.Module) -> list[str]:
    """Every ``canids`` module or package name the code imports (existing or not)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from canids.models import gat`` imports the module canids.models.gat
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                parts = name.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return sorted(found)


def _code_of(tree: ast.Module) -> str:
    """The syntax tree without docstrings, as text (the parser already dropped comments and layout)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def _path(module: str) -> Path | None:
    relative = Path(*module.split(".")[1:])
    for candidate in (_PACKAGE_DIR / relative / "__init__.py", _PACKAGE_DIR.joinpath(relative).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None
