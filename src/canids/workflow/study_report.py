"""The study rule's job: a study's table in every format and its seed-spread figure.

The same table ``canids results --table --spec FILE`` prints, written where ``snakemake
--report`` shows it (``ROOT/studies/NAME/``, ``canids.shape.STUDY_FILES``). The figure
plots the per-seed F1 of the fused detector on every test split, per variant and sweep point.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Mapping

from canids.shape import VALIDATION, Layout
from canids.stages.plots import plot_seed_spread
from canids.util import atomic_write_text
from canids.workflow import tables

__all__ = ["write_study"]

#: The figure's model and metric: the detector the pipeline ships, its headline score.
SPREAD_MODEL, SPREAD_METRIC = "fusion", "f1"


def write_study(metric_files: Iterable[str], outputs: Mapping[str, str], expected: Iterable[tuple[str, str, str, int]], anchors: str | None = None) -> list[tables.Group]:
    """Write ``outputs`` (STUDY_FILES' artifacts) from the study's metrics.json files."""
    root = Layout.of_study_file(outputs["table_md"]).root
    groups = tables.study_rows(tables.collect(root, metric_files), expected=expected)
    published = tables.anchors(anchors) if anchors and Path(anchors).exists() else None
    for artifact, fmt in (("table_md", "md"), ("table_csv", "csv"), ("table_tex", "latex"), ("table_json", "json")):
        atomic_write_text(outputs[artifact], tables.render(groups, fmt, published))
    panels: dict[str, list] = {}
    for g in groups:
        if g.model == SPREAD_MODEL and g.metric == SPREAD_METRIC and g.split != VALIDATION:
            label = g.variant + ("" if not g.point else g.point)
            panels.setdefault(f"{g.dataset} / {g.split}", []).append((label, list(g.values.values()), g.ci95))
    plot_seed_spread(panels, f"{SPREAD_MODEL} {SPREAD_METRIC}", Path(outputs["seed_spread"]))
    missing = sum(len(g.missing) for g in groups if g.model == SPREAD_MODEL and g.metric == SPREAD_METRIC) + sum(len(g.missing) for g in groups if g.n == 0)
    print(f"[study] {len(groups)} table row(s), {missing} missing seed result(s)", file=sys.stderr)
    return groups
