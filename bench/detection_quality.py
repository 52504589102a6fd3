"""Benchmark report: detection quality of finished runs against the project's targets.

Reads ``ROOT/{dataset}/{variant}/evaluation/metrics.json`` of runs that already exist (make
them with ``snakemake --cores all ROOT/{dataset}/{teacher,student}/evaluation/metrics.json``)
and prints one JSON line: per dataset and test split, the fusion F1, precision, recall and
false alarms per hour at the false-alarm budget's thresholds (and F1 and false alarms at the
F1-optimal ones), per-attack-type recall, the single detectors' F1, the student's F1 next to the
teacher's, the false alarms per hour over all test splits together with a 95 % Poisson interval,
and for each target whether it is met. Nothing is re-tuned here: the thresholds are the
ones chosen on validation during training.

    python bench/detection_quality.py [--root experiment_runs] [--datasets synthetic hcrl_sa set_01]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

T01, T02, T03, T04 = (
    "test_01_known_vehicle_known_attack",
    "test_02_unknown_vehicle_known_attack",
    "test_03_known_vehicle_unknown_attack",
    "test_04_unknown_vehicle_unknown_attack",
)

#: (dataset, split) -> what must hold for the teacher's fusion detector.
TARGETS = {
    ("synthetic", T01): {"f1": 0.98, "per_type_recall": 0.9},
    ("hcrl_sa", T01): {"f1": 0.99},
    ("hcrl_sa", T03): {"f1": 0.90},
    ("hcrl_sa", T02): {"precision": 0.8, "recall": 0.8},
    ("hcrl_sa", T04): {"precision": 0.8, "recall": 0.8},
    ("set_01", T01): {"f1": 0.95},
}
#: The student's fusion F1 may trail the teacher's by at most this much on test_01.
STUDENT_F1_GAP = 0.02


def load(root: Path, dataset: str, variant: str, key: str = "splits") -> dict | None:
    path = root / dataset / variant / "evaluation" / "metrics.json"
    return json.loads(path.read_text()).get(key) if path.exists() else None


def false_alarm_rate(per_split: dict) -> dict:
    """Fused false alarms per hour over all test splits together, with an exact 95 % Poisson interval."""
    from scipy.stats import chi2

    fp = sum(m["fusion"]["fp"] for split, m in per_split.items() if split != "val")
    hours = sum(m["fusion"].get("hours", 0.0) for split, m in per_split.items() if split != "val")
    if hours <= 0:
        return {"false_alarms": fp, "hours": hours}
    low = chi2.ppf(0.025, 2 * fp) / 2 if fp else 0.0
    high = chi2.ppf(0.975, 2 * fp + 2) / 2
    return {"false_alarms": fp, "hours": round(hours, 4), "per_hour": round(fp / hours, 1), "per_hour_95ci": [round(low / hours, 1), round(high / hours, 1)]}


def split_report(metrics: dict) -> dict:
    fusion = metrics["fusion"]
    return {
        "fusion": {k: round(fusion[k], 4) for k in ("f1", "precision", "recall", "mcc", "auroc", "false_alarms_per_hour") if fusion.get(k) is not None},
        "false_positive_windows": fusion.get("fp"),
        "per_type_recall": {k: round(v["recall"], 4) for k, v in fusion.get("per_attack_type", {}).items()},
        "single_f1": {m: round(metrics[m]["f1"], 4) for m in ("vgae", "gat") if metrics.get(m, {}).get("f1") is not None},
        "n_windows": fusion.get("n_windows"),
        "n_attack_windows": fusion.get("n_attack_windows"),
    }


def check(target: dict, report: dict) -> bool:
    ok = True
    for key in ("f1", "precision", "recall"):
        if key in target:
            ok &= report["fusion"].get(key, 0.0) >= target[key]
    if "per_type_recall" in target:
        ok &= bool(report["per_type_recall"]) and min(report["per_type_recall"].values()) >= target["per_type_recall"]
    return bool(ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.environ.get("CAN_EXPERIMENT_ROOT", "experiment_runs"))
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "hcrl_sa", "set_01"])
    args = parser.parse_args()
    root = Path(args.root)
    result: dict = {"benchmark": "detection_quality", "root": str(root), "datasets": {}, "targets": []}
    for dataset in args.datasets:
        teacher, student = load(root, dataset, "teacher"), load(root, dataset, "student")
        if teacher is None:
            result["datasets"][dataset] = "no teacher run (metrics.json missing)"
            continue
        per_split = {split: split_report(m) for split, m in teacher.items() if split != "val"}
        f1_optimal = load(root, dataset, "teacher", "f1_optimal") or {}
        for split, report in per_split.items():
            if split in f1_optimal:
                alt = f1_optimal[split]["fusion"]
                report["at_f1_optimal_threshold"] = {k: (round(alt[k], 4) if alt.get(k) is not None else None) for k in ("f1", "false_alarms_per_hour")}
        entry: dict = {"teacher": per_split, "false_alarms_all_test_splits": false_alarm_rate(teacher)}
        if student is not None and T01 in student and T01 in teacher:
            gap = teacher[T01]["fusion"]["f1"] - student[T01]["fusion"]["f1"]
            entry["student_test_01_f1"] = round(student[T01]["fusion"]["f1"], 4)
            entry["student_f1_gap"] = round(gap, 4)
            result["targets"].append({"target": f"{dataset} student F1 within {STUDENT_F1_GAP} of teacher on test_01", "met": gap <= STUDENT_F1_GAP})
        for (name, split), target in TARGETS.items():
            if name == dataset and split in per_split:
                result["targets"].append({"target": f"{dataset} {split} fusion {target}", "met": check(target, per_split[split])})
        result["datasets"][dataset] = entry
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
