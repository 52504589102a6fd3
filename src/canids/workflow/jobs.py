"""One Snakemake job: what a rule hands its stage, and the one script every stage rule runs.

Every stage rule calls ``workflow/scripts/stage.py``, which calls ``run_job(snakemake)``:
the job's typed settings, named inputs and outputs, log, threads and resume side path go to
the ``run(job)`` of the stage's entry module (``Stage.code`` in canids.shape). So the rules
stay declarative and identical in form, and the stages are plain functions of a ``Job``.

Exit status: 0 done; ``EXIT_TIME_LIMIT`` (75) when a trainer stopped itself before the
SLURM time limit with its resume state saved (the retry continues from it); anything
else is a failure.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from canids.settings import load_settings
from canids.shape import MANIFEST, STAGES, Layout
from canids.stages.walltime import EXIT_TIME_LIMIT
from canids.util import tune_heap
from canids.workflow.job import Job
from canids.workflow.logs import logged, single_input
from canids.workflow.previous import drop, kept

__all__ = ["Job", "run_job"]


def job_from_snakemake(smk: Any) -> Job:
    """The ``Job`` of a running Snakemake script (its ``snakemake`` object)."""
    wildcards = dict(smk.wildcards.items())
    inputs = {name: value for name, value in smk.input.items() if name != "teacher"}
    resume = smk.params.get("resume_dir") if hasattr(smk.params, "get") else getattr(smk.params, "resume_dir", None)
    return Job(
        stage=smk.rule,
        dataset=wildcards["dataset"],
        variant=wildcards.get("variant"),
        settings=load_settings(smk.config).at(wildcards.get("run", "")),
        inputs=inputs,
        outputs={name: Path(path) for name, path in smk.output.items()},
        teacher=single_input(smk.input.get("teacher")) if "teacher" in smk.input.keys() else None,
        resume_dir=Path(resume) if resume else None,
        threads=int(smk.threads),
        run=wildcards.get("run", ""),
    )


def run_job(smk: Any) -> None:
    """Run the stage of the Snakemake job ``smk`` with its log teed to the job's log file."""
    tune_heap()  # before the stage allocates (canids.util.tune_heap: arrays reuse freed heap, fewer page faults)
    job = job_from_snakemake(smk)
    entry = importlib.import_module(STAGES[job.stage].code)
    layout = Layout(str(job.settings.root()))
    time_limited = False
    with logged(smk.log[0]):
        try:
            entry.run(job)
        except SystemExit as stop:
            if stop.code != EXIT_TIME_LIMIT:
                raise
            print(f"{job.stage}: stopped before the time limit; resume state in {job.resume_dir}; exit status {EXIT_TIME_LIMIT}")
            time_limited = True
        except BaseException:
            previous = kept(layout, job.dataset, job.variant, job.stage, job.run)
            if (previous / MANIFEST).exists():
                print(f"{job.stage}: failed; the previous complete result of this stage is kept in {previous.absolute()}; a later run puts it back where it is still current for its configuration", file=sys.stderr)
            raise
        else:
            drop(layout, job.dataset, job.variant, job.stage, job.run)
    if time_limited:
        raise SystemExit(EXIT_TIME_LIMIT)
