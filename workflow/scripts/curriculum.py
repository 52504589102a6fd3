"""Snakemake script: train the curriculum GAT (canids.workflow.train.run_curriculum)."""

from pathlib import Path

from canids.workflow.logs import logged, single_input
from canids.workflow.train import run_curriculum

with logged(snakemake.log[0]):
    run_curriculum(
        snakemake.wildcards.dataset,
        snakemake.wildcards.variant,
        snakemake.config,
        snakemake.input.preprocess,
        snakemake.input.autoencoder,
        Path(snakemake.output.ckpt),
        Path(snakemake.output.manifest),
        resume_dir=Path(snakemake.params.resume_dir),
        teacher_manifest=single_input(snakemake.input.teacher),
    )
