"""Resolve the effective settings of one stage x variant from the merged workflow config.

Job specs' ``extra_args`` are typed overrides applied on top of config/config.yaml; the
result is what a stage trains with and what its manifest records, so two runs with the
same resolved settings and inputs are comparable.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

#: extra_args keys a job spec may set, with their types.
EXTRA_ARG_TYPES: dict[str, tuple[type, ...]] = {
    "epochs": (int,),
    "batch_size": (int,),
    "optimize_batch_size": (bool,),
    "learning_rate": (float, int),
    "window_size": (int,),
    "stride": (int,),
    "seed": (int,),
    "patience": (int,),
    "steps": (int,),
    "teacher_path": (str,),
    "dependency_manifest": (str,),
    "accelerator": (str,),
}

TRAINING_STAGES = ("autoencoder", "curriculum", "fusion")
VARIANTS = ("teacher", "student", "student_kd")


def experiment_root(config: dict) -> Path:
    """``$CAN_EXPERIMENT_ROOT``, else the config key, else ``experiment_runs``."""
    return Path(os.environ.get("CAN_EXPERIMENT_ROOT") or config.get("experiment_root") or "experiment_runs")


def size_of(variant: str) -> str:
    """student_kd has the student's architecture; only its loss differs."""
    return "teacher" if variant == "teacher" else "student"


def stage_settings(config: dict, stage: str, variant: str) -> dict:
    """Flat, resolved settings of ``stage`` for ``variant`` (JSON-serialisable)."""
    extra = config.get("extra_args") or {}
    training = config.get("training", {})
    resolved: dict = {"stage": stage, "variant": variant}
    if stage == "preprocess":
        resolved.update(copy.deepcopy(config["preprocess"]))
        for key in ("window_size", "stride"):
            if key in extra:
                resolved[key] = extra[key]
        resolved["stride"] = resolved.get("stride") or resolved["window_size"]
        return resolved
    if stage not in TRAINING_STAGES:
        raise ValueError(f"unknown stage '{stage}'")
    section = copy.deepcopy(config[stage][size_of(variant)])
    resolved.update(section)
    resolved.setdefault("seed", training.get("seed", 0))
    resolved.setdefault("accelerator", training.get("accelerator", "auto"))
    if stage != "fusion":
        resolved.setdefault("optimize_batch_size", training.get("optimize_batch_size", True))
        resolved.setdefault("batch_size_max_trials", training.get("batch_size_max_trials", 2))
        resolved.setdefault("weight_decay", 0.0)
        resolved.setdefault("patience", 5)
    for key in ("seed", "learning_rate", "accelerator"):
        if key in extra:
            resolved[key] = extra[key]
    if stage != "fusion":
        for key in ("epochs", "batch_size", "optimize_batch_size", "patience"):
            if key in extra:
                resolved[key] = extra[key]
    elif "steps" in extra:
        resolved["steps"] = extra["steps"]
    if variant == "student_kd":
        dist = config.get("distillation", {})
        resolved["distillation"] = {"temperature": dist.get("temperature", 4.0), "alpha": dist.get("alpha", 0.7)}
    return resolved
