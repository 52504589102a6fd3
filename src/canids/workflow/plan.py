"""What a workflow run will rebuild, decided from the manifests and applied to Snakemake.

Called from the rules' input functions (``workflow/rules/common.smk``), once, in the main
Snakemake process, while Snakemake builds its DAG: then the requested targets are known and
Snakemake has not yet decided what to run. It asks ``canids.workflow.currency`` which stage
results the targets need that exist but are not current, prints each with its reasons, and
marks their manifests forced in the DAG being built (what ``--forcerun FILE`` does; everything
downstream follows). Snakemake's own rerun triggers are turned off: they read
``.snakemake/metadata`` of the working directory, which does not travel with the experiment
root. File times, which Snakemake still compares and a copy of the root scrambles, are put
in order for the results that are current: their outputs get the time of their newest
input (upstream first), so only the manifests decide.

This reaches into Snakemake's DAG (``workflow.dag.forcefiles``), which has no public hook
between parsing and planning; ``tests/test_currency.py`` fails if a Snakemake release changes it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from canids.data.onboarding import attack_frames_message
from canids.shape import STAGES, TRAIN_SPLITS

from canids.util import FileDigests
from canids.workflow.currency import Currency, Stale
from canids.workflow.dag import Pipeline
from canids.workflow.locks import LockHeld, StageLocks
from canids.workflow.previous import keep, put_back

__all__ = ["DIGEST_CACHE", "apply_plan", "plan_once", "requested_targets"]

#: Remembered file digests under the experiment root (canids.util.FileDigests).
DIGEST_CACHE = ".canids/digests.json"


def requested_targets(workflow: Any, pipeline: Pipeline) -> list[str]:
    """The files this invocation asks for: the command line's targets, else the default ones."""
    asked = [t for t in (workflow.dag_settings.targets or ()) if "/" in t or t.endswith(".json")]
    return asked or pipeline.targets()


_PLANNED: dict[int, list[Stale]] = {}


def plan_once(workflow: Any, pipeline: Pipeline) -> None:
    """``apply_plan`` the first time an input function runs in the main process's DAG build."""
    if id(workflow) in _PLANNED or not workflow.is_main_process or getattr(workflow, "_dag", None) is None:
        return
    _PLANNED[id(workflow)] = apply_plan(workflow, pipeline)


def _outputs(pipeline: Pipeline, dataset: str, variant: str | None, stage: str, run: str) -> list[Path]:
    """What Snakemake compares with the inputs' times: the outputs, and the benchmark file if any."""
    files = [Path(pipeline.layout.file(dataset, variant, stage, name, run)) for name in ["manifest", *STAGES[stage].artifacts]]
    benchmark = Path(pipeline.layout.benchmark(dataset, variant, stage, run))
    return files + ([benchmark] if benchmark.exists() else [])


def _order_times(pipeline: Pipeline, currency: Currency, targets: list[str]) -> None:
    """Give every current result's outputs at least the time of its newest input, upstream first.

    Snakemake reruns a job whose input is newer than its oldest output; after a copy of the
    root, or when another run rebuilt an input identical in content, times disagree with the
    manifests, which have the last word. A read-only root is left as it is.
    """
    for dataset, variant, stage, run in currency.needed(targets):
        if currency.rebuilt(dataset, variant, stage, run):
            continue
        outputs = _outputs(pipeline, dataset, variant, stage, run)
        teacher = pipeline.teacher(dataset, variant, stage, run=run) if variant else []
        generated = [pipeline.layout.generated_receipt(dataset)] if not STAGES[stage].reads and pipeline.catalog.get(dataset).generated else []
        inputs = [Path(p) for p in [*pipeline.inputs(dataset, variant, stage, run).values(), *teacher, *generated]]
        try:
            newest_input = max((p.stat().st_mtime_ns for p in inputs if p.exists()), default=0)
            if all(o.exists() for o in outputs) and min(o.stat().st_mtime_ns for o in outputs) < newest_input:
                for o in outputs:
                    os.utime(o, ns=(newest_input, newest_input))
        except OSError:
            return


def apply_plan(workflow: Any, pipeline: Pipeline) -> list[Stale]:
    """Force the rebuild of every stale stage result the targets need; say why; return them."""
    # digests are remembered under a root that exists: planning never creates the root itself
    currency = Currency(pipeline, FileDigests(f"{pipeline.root}/{DIGEST_CACHE}" if Path(pipeline.root).is_dir() else None))
    targets = requested_targets(workflow, pipeline)
    needed = currency.needed(targets)
    for key in needed:
        if put_back(pipeline.layout, *key):
            print(f"canids: put back the kept result of {'/'.join(p for p in key if p)} (canids.workflow.previous)", file=sys.stderr)
    stale = currency.plan(targets)
    forced = {s.manifest for s in stale}
    for dataset in {k[0] for t in targets if (k := pipeline.layout.parse(t))}:
        if pipeline.catalog.get(dataset).generated:
            reasons = currency.generator_reasons(dataset)
            if reasons:
                forced.add(pipeline.layout.generated_receipt(dataset))
                print(f"canids: {dataset} raw data is regenerated: {'; '.join(reasons)}", file=sys.stderr)
    currency.digests.save()
    _order_times(pipeline, currency, targets)
    if stale:
        print(f"canids: {len(stale)} stage result(s) under {pipeline.root} are not current and will be rebuilt:", file=sys.stderr)
        for s in stale:
            print(f"  {s.describe(pipeline.root)}", file=sys.stderr)
    _check_windows(pipeline, currency, needed)
    _check_onboarding(pipeline, currency, needed)
    _say_study(pipeline, needed)
    _check_array_jobs(workflow, currency, needed)
    if workflow.executor_plugin is not None and not workflow.dryrun:  # a run that executes jobs (not -n, --report, --lint)
        _guard(pipeline, currency, needed, stale)
    workflow.dag_settings.rerun_triggers = frozenset()
    # a job killed mid-way leaves outputs Snakemake marks incomplete; its manifest, written last,
    # is missing or the previous result's, so rebuilding them is always right (--rerun-incomplete)
    workflow.dag_settings.force_incomplete = True
    workflow.dag.forcefiles.update(forced)
    return stale


class PlanError(ValueError):
    """A run that cannot succeed, refused before any job with what was expected."""


def _check_onboarding(pipeline: Pipeline, currency: Currency, needed: list) -> None:
    """Refuse onboarding captures that hold labelled attack frames, naming the file, before any job.

    Each capture is read once; its count is remembered with the file digests."""
    for dataset in dict.fromkeys(key[0] for key in needed):
        if pipeline.catalog.get(dataset).generated:
            continue  # the generator writes them attack-free, after planning; preprocessing still checks
        for split, (source_spec, files) in pipeline.catalog.onboarding_files(dataset, currency.digests.sha256).items():
            for f in files:
                attack = currency.digests.remember(f.path, "attack_frames", lambda path, spec=source_spec, capture=f: int(spec.read(capture, strict=False).n_attack))
                if attack:
                    raise PlanError(attack_frames_message(f.path, attack, f"datasets.{dataset}.onboarding.{split}"))
    currency.digests.save()


def _say_study(pipeline: Pipeline, needed: list) -> None:
    """For a study: its points, the distinct stage results they need, and how many are shared."""
    points = pipeline.settings.points()
    if len(points) < 2:
        return
    stages = dict.fromkeys((d, v, s) for d, v, s, _ in needed)
    uses = [(d, v, s, p.run(s, v)) for p in points for d, v, s in stages]
    counts: dict = {}
    for key in uses:
        counts[key] = counts.get(key, 0) + 1
    shared = sum(1 for n in counts.values() if n > 1)
    seeds = len(pipeline.settings.seeds or ()) or 1
    print(f"canids: study of {len(points)} points ({len(pipeline.settings.sweep)} swept setting(s) x {seeds} seed(s)): {len(counts)} distinct stage results for {len(uses)} uses; {shared} of them shared by several points", file=sys.stderr)


def _check_array_jobs(workflow: Any, currency: Currency, needed: list) -> None:
    """Refuse SLURM job arrays with a ``--jobs`` limit below the jobs to run.

    snakemake-executor-plugin-slurm (2.x, issue #473) drops the jobs of an array-selected rule
    when the scheduler offers fewer of them than are ready: they hold their ``--jobs`` slots
    forever and the run hangs. With ``--jobs`` at least the number of jobs, every ready job is
    always offered at once.
    """
    arrays = getattr(getattr(workflow, "executor_settings", None), "array_jobs", None)
    limit = getattr(getattr(workflow, "resource_settings", None), "nodes", None)
    if not arrays or limit is None:
        return
    jobs = sum(1 for key in needed if currency.rebuilt(*key)) + 2  # + the generator and the study table
    if limit < jobs:
        raise PlanError(
            f"--slurm-array-jobs {arrays} with --jobs {limit}: this run has up to {jobs} jobs; expected --jobs {jobs} or more "
            "(with fewer, snakemake-executor-plugin-slurm drops array jobs it is offered in part and the run hangs: its issue #473)"
        )


def _check_windows(pipeline: Pipeline, currency: Currency, needed: list) -> None:
    """Refuse a window size longer than every training capture: preprocessing could build no graph."""
    size = pipeline.settings.preprocess.window_size
    for dataset, variant, stage, run in needed:
        if STAGES[stage].reads or not currency.rebuilt(dataset, variant, stage, run):
            continue
        spec = pipeline.catalog.get(dataset)
        if spec.generated:
            continue  # its captures do not exist yet; preprocessing refuses an empty result itself
        frames = {f"{f.split}/{Path(f.path).name}": currency.digests.lines(f.path) for f in spec.capture_files(currency.digests.sha256) if f.split in TRAIN_SPLITS}
        longest = max(frames, key=frames.get, default=None)
        if longest is not None and frames[longest] < size:
            raise PlanError(
                f"preprocess.window_size {size} is longer than every training capture of dataset {dataset!r} "
                f"(the longest, {longest}, has at most {frames[longest]} frames): no window could be built; "
                f"expected a window_size of at most {frames[longest]}"
            )
    currency.digests.save()


def _guard(pipeline: Pipeline, currency: Currency, needed: list, stale: list[Stale]) -> None:
    """Before any job: lock every result this run writes, keep every complete one it replaces."""
    locks = StageLocks(Path(pipeline.root))
    try:
        for key in needed:
            if currency.rebuilt(*key):
                locks.acquire(*key)
    except LockHeld:
        locks.release()
        raise
    locks.refresh_in_background()
    for s in stale:
        keep(pipeline.layout, s.dataset, s.variant, s.stage, s.run)
