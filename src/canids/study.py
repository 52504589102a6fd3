"""Studies: several training seeds and a sweep of settings, each combination its own results.

A job spec's ``seeds`` (the training seed; data and splits stay fixed) and ``sweep`` (settings
paths, each with a list of values) make a study: every combination is a *point*. A point's
results live beside the default ones, the run named in the variant directory:

    ROOT/hcrl_sa/teacher/fusion/                                  the default run (no study)
    ROOT/hcrl_sa/teacher+training.seed=1/autoencoder/             seed 1
    ROOT/hcrl_sa/teacher+fusion.teacher.gamma=0.5+training.seed=1/fusion/

A stage's run name holds only the settings that reach it: its own section's, and those of the
stages it reads (``training.seed`` reaches every training stage). So sweeping a fusion setting
trains one VGAE and one GAT per seed and shares them between the points: equal run names are
one Snakemake job. A size's section (``curriculum.teacher.*``) reaches only variants of that
size and those distilled from them; ``distillation.*`` only distilled variants; ``preprocess.*`` the shared preprocessing
(``ROOT/DATASET/preprocess+preprocess.window_size=50``).

Standard library only (the Snakefile reads it at parse time).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from canids.shape import STAGES, TRAINING_STAGES, VARIANTS

__all__ = ["Point", "SEED", "owner", "parse_run", "points", "restrict", "run_name", "sweepable"]

#: The setting a seed of ``seeds`` sets.
SEED = "training.seed"
#: A run name's characters: it is part of a directory name and of a Snakemake wildcard. Never
#: a comma: Snakemake passes a job's wildcards to SLURM jobs as ``name=value,name=value``.
RUN_PATTERN = r"(\+[A-Za-z0-9_.=+-]+)?"
_VALUE = re.compile(r"^[A-Za-z0-9_.-]+$")


def owner(path: str) -> str | None:
    """The first stage a setting reaches (None: the setting cannot be swept)."""
    head = path.split(".", 1)[0]
    if head in STAGES and head != "evaluation":
        return head
    if head in ("training", "distillation"):
        return TRAINING_STAGES[0]
    return None


def sweepable(path: str) -> bool:
    return owner(path) is not None


def _reached_by(stage: str) -> set[str]:
    """``stage`` and every stage it reads, directly or not."""
    out, todo = set(), [stage]
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo += STAGES[name].reads
    return out


def reaches(path: str, stage: str, variant: str | None) -> bool:
    """Whether the setting at ``path`` changes what ``stage`` of ``variant`` makes.

    A distilled variant learns from its teacher's same stages, so its teacher's settings reach it too.
    """
    teacher = VARIANTS[variant].teacher if variant is not None else None
    return _reaches(path, stage, variant) or (teacher is not None and _reaches(path, stage, teacher))


def _reaches(path: str, stage: str, variant: str | None) -> bool:
    first = owner(path)
    if first is None or first not in _reached_by(stage):
        return False
    parts = path.split(".")
    if parts[0] in STAGES and STAGES[parts[0]].trains:  # a per-size section
        return variant is not None and len(parts) > 1 and VARIANTS[variant].size == parts[1]
    if parts[0] == "distillation":
        return variant is not None and VARIANTS[variant].teacher is not None
    return True


def _text(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, bool) or value is None else str(value)
    if not _VALUE.match(text):
        raise ValueError(f"sweep value {value!r}: a run name may hold only letters, digits, '_', '.' and '-'")
    return text


@dataclass(frozen=True)
class Point:
    """One combination of a study: the settings it sets (a seed is ``training.seed``).

    ``overrides`` are all of them; ``changes`` those that differ from the configuration's own
    values: only these name runs, so the point that equals the configuration (seed 0 when
    ``training.seed`` is 0) is the default run, at today's paths.
    """

    overrides: tuple[tuple[str, Any], ...]
    changes: tuple[tuple[str, Any], ...] = ()

    def run(self, stage: str, variant: str | None) -> str:
        """The run name of this point's ``stage`` result: '' when nothing it changes reaches it."""
        return run_name((path, value) for path, value in self.changes if reaches(path, stage, variant))

    @property
    def seed(self) -> Any:
        return dict(self.overrides).get(SEED)

    def label(self, with_seed: bool = False) -> str:
        """The point's sweep values (and seed), for tables: 'default' when none."""
        shown = [(p, v) for p, v in self.overrides if with_seed or p != SEED]
        return ",".join(f"{p}={_text(v)}" for p, v in shown) or "default"


def run_name(pairs) -> str:
    pairs = sorted(pairs)
    return "".join(f"+{path}={_text(value)}" for path, value in pairs)


def parse_run(run: str) -> list[tuple[str, str]]:
    """``+a=1+b=x`` -> [("a", "1"), ("b", "x")] (values as text; the settings give their types)."""
    if not run:
        return []
    return [tuple(pair.split("=", 1)) for pair in run.lstrip("+").split("+")]  # type: ignore[misc]


def restrict(run: str, stage: str, variant: str | None) -> str:
    """The part of a run name that reaches ``stage`` of ``variant`` (where an upstream result lives)."""
    return run_name((path, value) for path, value in parse_run(run) if reaches(path, stage, variant))


def points(seeds: tuple[int, ...] | None, sweep: dict[str, list], base: dict[str, Any] | None = None) -> list[Point]:
    """Every combination of the sweep's values and the seeds, in a stable order.

    ``base``: the configuration's own value of each swept path (``Settings.value``); a value
    equal to it changes nothing and does not name the run.
    """
    axes = [[(path, value) for value in values] for path, values in sorted(sweep.items())]
    if seeds:
        axes.append([(SEED, seed) for seed in seeds])
    if not axes:
        return [Point(())]
    base = base or {}
    out = []
    for combo in itertools.product(*axes):
        overrides = tuple(sorted(combo))
        out.append(Point(overrides, tuple((p, v) for p, v in overrides if p not in base or base[p] != v)))
    return out
