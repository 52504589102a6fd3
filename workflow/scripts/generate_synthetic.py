"""Snakemake script: generate the embedded synthetic dataset (canids.data.synthetic)."""

from pathlib import Path

from canids.data.synthetic import generate
from canids.util import tune_heap
from canids.workflow.logs import logged

tune_heap()  # as every stage process does (canids.util.tune_heap)
with logged(snakemake.log[0]):
    settings = snakemake.params.settings
    generate(Path(snakemake.output.receipt).parent, seed=int(settings["seed"]), scale=float(settings["scale"]), vehicles=int(settings["vehicles"]))
