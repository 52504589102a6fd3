"""Result tables of a study: mean, spread and a 95 % confidence interval over seeds, and paired comparisons.

A study's points (``canids.study``) each leave ``ROOT/DATASET/VARIANT+RUN/evaluation/metrics.json``.
``study_rows`` groups them by dataset x split x model x variant x point (the run name without
its seed) and summarises each metric over the seeds: mean, standard deviation (n - 1), and a
95 % confidence interval from Student's t distribution (mean +- t(0.975, n - 1) * sd / sqrt(n)),
which is exact for normal per-seed scores and honest with the 3-10 seeds a study can afford (a
bootstrap needs more). A seed missing from a group (failed, or not run yet) is listed as
missing, never averaged away. ``paired`` compares two variants or points seed by seed (paired
t test). ``anchors`` reads published figures (docs/anchors.csv) to show beside ours.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from canids.shape import Layout
from canids.study import SEED, parse_run, run_name

__all__ = ["METRICS", "Group", "Result", "anchors", "collect", "paired", "render", "study_rows"]

#: The metrics a study table summarises (attack class; false alarms per hour of traffic).
METRICS = ("f1", "precision", "recall", "auroc", "false_alarms_per_hour")
#: Metrics that live in [0, 1]: their intervals are clipped to it.
BOUNDED = frozenset({"f1", "precision", "recall", "auroc", "accuracy", "fpr"})
#: Metrics that cannot be negative: their intervals start at 0 at the lowest.
NONNEGATIVE = frozenset({"false_alarms_per_hour"})


@dataclass
class Result:
    """One evaluation of one study point: where it came from and its metrics per split and model."""

    dataset: str
    variant: str
    point: str  # the run name without its seed ('' for the default point)
    seed: int | None
    splits: dict[str, dict[str, dict[str, Any]]]


def _seed_of(metrics: dict, root: Path, dataset: str, variant: str, run: str) -> int | None:
    pairs = dict(parse_run(run))
    if SEED in pairs:
        return int(pairs[SEED])
    recorded = (metrics.get("study") or {}).get("seed")
    if recorded is not None:
        return int(recorded)
    fusion = Path(Layout(str(root)).file(dataset, variant, "fusion", run=run))  # results written before metrics.json said
    try:
        return int(json.loads(fusion.read_text())["hyperparameters"]["seed"])
    except (OSError, ValueError, KeyError):
        return None


def collect(root: str | Path, paths: Iterable[str | Path] | None = None) -> list[Result]:
    """Every evaluation under an experiment root (or those of ``paths``, metrics.json files in it)."""
    root = Path(root)
    layout = Layout(str(root))
    out = []
    found = paths if paths is not None else root.glob(Layout(".").target("*", "*", "evaluation").removeprefix("./"))
    for path in sorted(map(Path, found)):
        key = layout.parse(str(path))
        if key is None:
            continue
        dataset, variant, _, run = key
        metrics = json.loads(path.read_text())
        point = run_name((p, v) for p, v in parse_run(run) if p != SEED)
        out.append(Result(dataset, variant or "", point, _seed_of(metrics, root, dataset, variant or "", run), metrics.get("splits", {})))
    return out


def _t975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


@dataclass
class Group:
    """One row of a study table: a metric of one model on one split, over the seeds of one point."""

    dataset: str
    split: str
    model: str
    variant: str
    point: str
    metric: str
    values: dict[int | None, float] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        vals = list(self.values.values())
        return sum(vals) / len(vals) if vals else math.nan

    @property
    def sd(self) -> float:
        vals = list(self.values.values())
        if len(vals) < 2:
            return math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))

    @property
    def ci95(self) -> tuple[float, float]:
        """Student's t interval, clipped to the metric's range (a score cannot leave [0, 1])."""
        if self.n < 2:
            return (math.nan, math.nan)
        half = _t975(self.n - 1) * self.sd / math.sqrt(self.n)
        low, high = self.mean - half, self.mean + half
        if self.metric in BOUNDED:
            low, high = max(low, 0.0), min(high, 1.0)
        elif self.metric in NONNEGATIVE:
            low = max(low, 0.0)
        return (low, high)

    def as_dict(self) -> dict:
        low, high = self.ci95
        return {"dataset": self.dataset, "split": self.split, "model": self.model, "variant": self.variant, "point": point_label(self.point), "metric": self.metric,
                "n": self.n, "mean": _num(self.mean), "sd": _num(self.sd), "ci95_low": _num(low), "ci95_high": _num(high),
                "seeds": sorted(s for s in self.values if s is not None), "missing_seeds": self.missing}


def point_label(point: str) -> str:
    """A point's name in a table: its sweep values, 'default' for none."""
    return point.lstrip("+") or "default"


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 6)


def study_rows(results: Iterable[Result], metrics: Iterable[str] = METRICS, models: Iterable[str] | None = None, expected: Iterable[tuple[str, str, str, int]] | None = None) -> list[Group]:
    """One ``Group`` per dataset x split x model x variant x point x metric.

    ``expected``: the study's (dataset, variant, point, seed) runs (``expected_runs``); a seed
    not among the results is listed as missing, a point with no result at all gets one row
    of its own, and results outside the study are left out. Without it, every seed found for
    a dataset is expected of each of its variants and points.
    """
    results = list(results)
    if expected is not None:
        expected = set(expected)
        wanted = {(d, v, p) for d, v, p, _ in expected}
        results = [r for r in results if (r.dataset, r.variant, r.point) in wanted]
        seeds_of: dict[tuple, set] = {}
        for d, v, p, seed in expected:
            seeds_of.setdefault((d, v, p), set()).add(seed)
    else:
        by_dataset: dict[str, set] = {}
        for r in results:
            if r.seed is not None:
                by_dataset.setdefault(r.dataset, set()).add(r.seed)
        seeds_of = {(r.dataset, r.variant, r.point): by_dataset.get(r.dataset, set()) for r in results}
    groups: dict[tuple, Group] = {}
    seen: dict[tuple, set] = {}
    for r in results:
        for split, per_model in r.splits.items():
            for model, values in per_model.items():
                if models is not None and model not in models or not isinstance(values, dict):
                    continue
                for metric in metrics:
                    key = (r.dataset, split, model, r.variant, r.point, metric)
                    group = groups.setdefault(key, Group(*key))
                    seen.setdefault(key, set()).add(r.seed)
                    value = values.get(metric)
                    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
                        group.values[r.seed] = float(value)
    for key, group in groups.items():
        group.missing = sorted(seeds_of.get((group.dataset, group.variant, group.point), set()) - seen[key] - {None})
    found = {(r.dataset, r.variant, r.point) for r in results}
    for (d, v, p), seeds in seeds_of.items():
        if (d, v, p) not in found:
            groups[(d, "-", "-", v, p, "-")] = Group(d, "-", "-", v, p, "-", missing=sorted(seeds))
    order = {m: i for i, m in enumerate(METRICS)}
    return sorted(groups.values(), key=lambda g: (g.dataset, g.split, g.model, g.variant, g.point, order.get(g.metric, 99), g.metric))


def paired(groups: list[Group], a: tuple[str, str], b: tuple[str, str]) -> list[dict]:
    """``a`` minus ``b`` ((variant, point) each), paired by seed: mean difference, 95 % CI, paired t test."""
    from scipy.stats import ttest_rel

    index = {(g.dataset, g.split, g.model, g.variant, g.point, g.metric): g for g in groups}
    out = []
    for (dataset, split, model, variant, point, metric), ga in index.items():
        if (variant, point) != a:
            continue
        gb = index.get((dataset, split, model, *b, metric))
        if gb is None:
            continue
        common = sorted(set(ga.values) & set(gb.values), key=lambda s: (s is None, s))
        diffs = [ga.values[s] - gb.values[s] for s in common]
        row = {"dataset": dataset, "split": split, "model": model, "metric": metric, "a": a[0] + a[1], "b": b[0] + b[1], "pairs": len(diffs)}
        if len(diffs) >= 2:
            mean = sum(diffs) / len(diffs)
            sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
            half = _t975(len(diffs) - 1) * sd / math.sqrt(len(diffs))
            p = float(ttest_rel([ga.values[s] for s in common], [gb.values[s] for s in common]).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
            row.update(mean_difference=_num(mean), ci95_low=_num(mean - half), ci95_high=_num(mean + half), p_value=_num(p))
        out.append(row)
    return out


def anchors(path: str | Path) -> list[dict]:
    """Published figures to show beside ours (docs/anchors.csv: source, citation, dataset, split, metric, value, ...)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- rendering

_COLUMNS = ("dataset", "split", "model", "variant", "point", "metric", "n", "mean", "sd", "ci95")


def _cells(g: Group, published: dict) -> list[str]:
    low, high = g.ci95
    fmt = (lambda x: "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}") if g.metric != "false_alarms_per_hour" else (lambda x: "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}")
    ci = "" if math.isnan(low) else f"[{fmt(low)}, {fmt(high)}]"
    n = f"{g.n}" + (f" (missing seeds {', '.join(map(str, g.missing))})" if g.missing else "")
    cells = [g.dataset, g.split, g.model, g.variant, point_label(g.point), g.metric, n, fmt(g.mean), fmt(g.sd), ci]
    if published is not None:
        rows = published.get((g.dataset, g.split, g.metric), [])
        cells.append("; ".join(f"{r['value']} ({r['source']}, {r['level']})" for r in rows))
    return cells


def render(groups: list[Group], fmt: str = "md", published: list[dict] | None = None) -> str:
    """The table as Markdown, CSV, LaTeX or JSON; ``published`` rows are matched by dataset, split and metric."""
    index: dict | None = None
    if published is not None:
        index = {}
        for row in published:
            index.setdefault((row["dataset"], row["split"], row["metric"]), []).append(row)
    if fmt == "json":
        rows = [g.as_dict() | ({"published": index.get((g.dataset, g.split, g.metric), [])} if index is not None else {}) for g in groups]
        return json.dumps({"confidence_interval": CI_NOTE, "rows": rows}, indent=2) + "\n"
    if fmt == "csv":  # numbers as numbers, for spreadsheets and pandas
        keys = ["dataset", "split", "model", "variant", "point", "metric", "n", "mean", "sd", "ci95_low", "ci95_high", "missing_seeds"]
        rows = []
        for g in groups:
            d = g.as_dict()
            d["missing_seeds"] = " ".join(map(str, d["missing_seeds"]))
            cells = ["" if d[k] is None else str(d[k]) for k in keys]
            if index is not None:
                cells.append("; ".join(f"{r['value']} ({r['source']})" for r in index.get((g.dataset, g.split, g.metric), [])))
            rows.append(cells)
        return _table([*keys, *(["published"] if index is not None else [])], rows, "csv", CI_NOTE)
    header = [*_COLUMNS, *(["published"] if index is not None else [])]
    text = _table(header, [_cells(g, index) for g in groups], fmt, CI_NOTE)
    if published and fmt == "md":
        shown = {(g.dataset, g.split, g.metric) for g in groups}
        datasets = {g.dataset for g in groups}
        other = [r for r in published if r["dataset"] in datasets and (r["dataset"], r["split"], r["metric"]) not in shown]
        if other:
            text += "\nPublished figures for these datasets on splits or metrics this table does not have:\n\n"
            text += "".join(f"- {r['dataset']} {r['split']} {r['metric']} = {r['value']} ({r['model']}, {r['level']} level, window {r['window_size'] or 'n/a'}; {r['citation']})\n" for r in other)
    return text


def render_paired(rows: list[dict], fmt: str = "md") -> str:
    """A paired comparison (``paired``) as Markdown, CSV, LaTeX or JSON."""
    if fmt == "json":
        return json.dumps({"comparison": PAIRED_NOTE, "rows": rows}, indent=2) + "\n"
    header = ["dataset", "split", "model", "metric", "a - b", "pairs", "mean difference", "ci95", "p"]
    body = []
    for r in rows:
        num = lambda key: "" if r.get(key) is None else f"{r[key]:.4f}"  # noqa: E731
        ci = f"[{num('ci95_low')}, {num('ci95_high')}]" if r.get("ci95_low") is not None else ""
        body.append([r["dataset"], r["split"], r["model"], r["metric"], f"{r['a']} - {r['b']}", str(r["pairs"]), num("mean_difference"), ci, "" if r.get("p_value") is None else f"{r['p_value']:.3g}"])
    return _table(header, body, fmt, PAIRED_NOTE)


CI_NOTE = "95 % confidence intervals: Student's t over seeds (mean +- t(0.975, n-1) * sd / sqrt(n)), clipped to [0, 1] for scores and at 0 for rates; sd with n-1"
PAIRED_NOTE = "paired by seed: mean of a - b, 95 % Student's t interval of the differences, two-sided paired t test p-value"


def _table(header: list[str], body: list[list[str]], fmt: str, note: str) -> str:
    if fmt == "csv":
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)
        return buf.getvalue()
    if fmt == "latex":
        esc = lambda s: s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")  # noqa: E731
        lines = [r"\begin{tabular}{" + "l" * len(header) + "}", r"\hline", " & ".join(esc(h) for h in header) + r" \\", r"\hline"]
        lines += [" & ".join(esc(c) for c in row) + r" \\" for row in body]
        lines += [r"\hline", r"\end{tabular}", "% " + esc(note)]
        return "\n".join(lines) + "\n"
    if fmt != "md":
        raise ValueError(f"table format {fmt!r}: expected one of {', '.join(FORMATS)}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines) + f"\n\n{note}.\n"


#: The formats ``render`` writes.
FORMATS = ("md", "csv", "latex", "json")
