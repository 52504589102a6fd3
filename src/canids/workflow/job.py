"""What a stage needs from its Snakemake job (canids.workflow.jobs builds it), nothing else.

Kept apart from the job runner so that a stage's code digest (canids.workflow.code_digest)
covers this description of its inputs, not the plumbing that starts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canids.settings import Settings

__all__ = ["Job"]


@dataclass
class Job:
    """What a stage needs from its Snakemake job, nothing else."""

    stage: str
    dataset: str
    variant: str | None
    #: the settings of this job's study point (``Settings.at(run)``)
    settings: Settings
    #: named inputs: each stage read (its manifest, and ``<stage>_checkpoint``), ``raw``
    inputs: dict[str, Any] = field(default_factory=dict)
    #: named outputs: ``manifest`` and every artifact of the stage (canids.shape)
    outputs: dict[str, Path] = field(default_factory=dict)
    #: the teacher's same-stage manifest, for a distilled variant
    teacher: str | None = None
    #: where resume state of an interrupted attempt lives (training stages)
    resume_dir: Path | None = None
    threads: int = 1
    #: the study point's run name (``canids.study``); '' for the default run
    run: str = ""

    def output(self, name: str) -> Path:
        return self.outputs[name]
