"""Glue between Snakemake and the stages: manifests, atomic writes, config and job-spec validation."""
