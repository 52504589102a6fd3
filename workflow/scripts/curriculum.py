"""Snakemake script: train the curriculum GAT (canids.workflow.train.run_curriculum).

Exit status: 0 done; 75 (EXIT_TIME_LIMIT) stopped itself before the job's time limit with
resume state saved (the retry continues from it); anything else is a failure.
"""

from pathlib import Path

from canids.stages.common import EXIT_TIME_LIMIT, TimeLimitReached
from canids.workflow.logs import logged, single_input
from canids.workflow.train import run_curriculum

time_limited = False
with logged(snakemake.log[0]):
    try:
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
    except TimeLimitReached:
        print(f"curriculum: stopped before the time limit; resume state in {snakemake.params.resume_dir}; exit status {EXIT_TIME_LIMIT}")
        time_limited = True
if time_limited:
    raise SystemExit(EXIT_TIME_LIMIT)
