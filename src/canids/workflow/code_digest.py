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
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

from canids.shape import STAGES

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
        digest.update(module.encode() + b"\0" + _code_of(module).encode() + b"\0")
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


@lru_cache(maxsize=None)
def _imports(module: str) -> tuple[str, ...]:
    """``canids`` modules (and their parent packages) that ``module`` imports anywhere in its code."""
    found: set[str] = set()
    for node in ast.walk(_tree(module)):
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
    return tuple(sorted(m for m in found if _path(m) is not None))


@lru_cache(maxsize=None)
def _code_of(module: str) -> str:
    tree = _tree(module)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


@lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    path = _path(module)
    if path is None:
        raise ModuleNotFoundError(f"{module}: no such module under {_PACKAGE_DIR}")
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _path(module: str) -> Path | None:
    relative = Path(*module.split(".")[1:])
    for candidate in (_PACKAGE_DIR / relative / "__init__.py", _PACKAGE_DIR.joinpath(relative).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None
