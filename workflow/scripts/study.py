"""Snakemake script of the study rule: the study's table and seed-spread figure (canids.workflow.study_report)."""

import contextlib

from canids.workflow.study_report import write_study

smk = snakemake  # noqa: F821 (Snakemake injects it)
with open(smk.log[0], "w") as log, contextlib.redirect_stderr(log):
    write_study(smk.input.metrics, dict(smk.output.items()), [tuple(e) for e in smk.params.expected], smk.params.anchors)
