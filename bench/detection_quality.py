"""Benchmark report: detection quality of finished runs against the project's targets.

Reads ``ROOT/{dataset}/{variant}/evaluation/metrics.json`` of runs that already exist (make
them with ``snakemake --cores all ROOT/{dataset}/{teacher,student}/evaluation/metrics.json``)
and prints one JSON line: per dataset and test split, the fusion F1, precision, recall and
false alarms per hour at the false-alarm budget's thresholds (and F1 and false alarms at the
F1-optimal ones), per-attack-type recall, the single detectors' F1, the student's F1 next to the
teacher's, the false alarms per hour over all test splits together with a 95 % Poisson interval,
the onboarded figures of unseen-vehicle splits beside the zero-shot ones, and for each target
whether it is met (issue 13's figures, including "fusion keeps the evidence": fused F1 and AUROC
within 0.02 of the best single detector on every test split). Nothing is re-tuned here: the
thresholds are the ones chosen on validation during training (and on onboarding captures).

    python bench/detection_quality.py [--root experiment_runs] [--datasets synthetic hcrl_sa set_01]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from canids.shape import TEST_SPLITS

T01, T02, T03, T04, T05, T06 = TEST_SPLITS

#: (dataset, split, zero-shot or onboarded) -> what must hold for the teacher's fusion detector
#: (issue 13's figures; a split the data lacks is reported as missing, not as met).
TARGETS = {
    **{("synthetic", split, "splits"): {"f1": 0.95} for split in TEST_SPLITS},
    ("synthetic", T06, "splits"): {"f1": 0.95, "recall_of": {"masquerade_timed": 0.8}},
    ("synthetic", T03, "splits"): {"f1": 0.95, "recall_of": {"masquerade_untimed": 0.8}},
    ("synthetic", T05, "splits"): {"f1": 0.95, "recall_of": {"suppress": 0.8}},
    ("set_01", T04, "splits"): {"f1": 0.6},
    ("set_01", T04, "onboarded"): {"f1": 0.95},
    ("set_02", T01, "splits"): {"f1": 0.99},
    ("set_02", T04, "splits"): {"f1": 0.95},
    **{("hcrl_sa", split, "splits"): {"f1": 0.99} for split in (T01, T02, T03, T04)},
}
#: Fusion may trail the best single detector by at most this much (F1 and AUROC), on every test split.
EVIDENCE_GAP = 0.02
#: At most this many false-positive windows on test_01 of the real datasets.
TEST_01_FALSE_POSITIVES = {"hcrl_sa": 1, "set_01": 1, "set_02": 1}
#: A student's fusion F1 may trail the teacher's by at most this much, on every test split.
STUDENT_F1_GAP = 0.02
#: The small variants: trained alone, and distilled from the teacher.
STUDENTS = ("student", "student_kd")


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
        "single_auroc": {m: round(metrics[m]["auroc"], 4) for m in ("vgae", "gat") if metrics.get(m, {}).get("auroc") is not None},
        "n_windows": fusion.get("n_windows"),
        "n_attack_windows": fusion.get("n_attack_windows"),
    }


def check(target: dict, report: dict) -> bool:
    ok = True
    for key in ("f1", "precision", "recall"):
        if key in target:
            ok &= (report["fusion"].get(key) or 0.0) >= target[key]
    for family, recall in target.get("recall_of", {}).items():
        ok &= report["per_type_recall"].get(family, 0.0) >= recall
    return bool(ok)


def keeps_evidence(report: dict) -> bool | None:
    """Fused F1 and AUROC at least the best single detector's minus EVIDENCE_GAP (None: no attack window)."""
    if report["fusion"].get("f1") is None:
        return None
    f1_ok = report["fusion"]["f1"] >= max(report["single_f1"].values(), default=0.0) - EVIDENCE_GAP
    auroc_ok = report["fusion"].get("auroc", 0.0) >= max(report["single_auroc"].values(), default=0.0) - EVIDENCE_GAP
    return bool(f1_ok and auroc_ok)


def dataset_targets(dataset: str, reports: dict[str, dict[str, dict]], result: list) -> None:
    """Append each target of ``dataset`` (met, missed, or missing data) to ``result``."""
    for (name, split, kind), target in TARGETS.items():
        if name != dataset:
            continue
        report = reports[kind].get(split)
        label = f"{dataset} {split} fusion{' onboarded' if kind == 'onboarded' else ''} {target}"
        result.append({"target": label, "met": check(target, report) if report else None, **({} if report else {"missing": f"no {kind} result for {split}"})})
    for split, report in reports["splits"].items():
        ok = keeps_evidence(report)
        if ok is not None:
            result.append({"target": f"{dataset} {split} fusion F1 and AUROC >= max(VGAE, GAT) - {EVIDENCE_GAP}", "met": ok})
    if dataset in TEST_01_FALSE_POSITIVES and T01 in reports["splits"]:
        fp = reports["splits"][T01]["false_positive_windows"]
        result.append({"target": f"{dataset} test_01 at most {TEST_01_FALSE_POSITIVES[dataset]} false-positive window", "met": fp is not None and fp <= TEST_01_FALSE_POSITIVES[dataset], "false_positive_windows": fp})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.environ.get("CAN_EXPERIMENT_ROOT", "experiment_runs"))
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "hcrl_sa", "set_01", "set_02"])
    args = parser.parse_args()
    root = Path(args.root)
    result: dict = {"benchmark": "detection_quality", "root": str(root), "datasets": {}, "targets": []}
    for dataset in args.datasets:
        teacher = load(root, dataset, "teacher")
        if teacher is None:
            result["datasets"][dataset] = "no teacher run (metrics.json missing)"
            continue
        per_split = {split: split_report(m) for split, m in teacher.items() if split != "val"}
        f1_optimal = load(root, dataset, "teacher", "f1_optimal") or {}
        for split, report in per_split.items():
            if split in f1_optimal:
                alt = f1_optimal[split]["fusion"]
                report["at_f1_optimal_threshold"] = {k: (round(alt[k], 4) if alt.get(k) is not None else None) for k in ("f1", "false_alarms_per_hour")}
        onboarded = {split: split_report(m) for split, m in (load(root, dataset, "teacher", "onboarded") or {}).items()}
        entry: dict = {"teacher": per_split, "onboarded": onboarded, "false_alarms_all_test_splits": false_alarm_rate(teacher)}
        for name in STUDENTS:
            student = load(root, dataset, name)
            if student is None:
                continue
            gaps = {split: round(teacher[split]["fusion"]["f1"] - student[split]["fusion"]["f1"], 4) for split in teacher if split in student and split != "val" and teacher[split]["fusion"]["f1"] is not None and student[split]["fusion"]["f1"] is not None}
            entry[f"{name}_f1_gap"] = gaps
            result["targets"].append({"target": f"{dataset} {name} fusion F1 within {STUDENT_F1_GAP} of the teacher's on every test split", "met": bool(gaps) and max(gaps.values()) <= STUDENT_F1_GAP})
        dataset_targets(dataset, {"splits": per_split, "onboarded": onboarded}, result["targets"])
        result["datasets"][dataset] = entry
    met = [t["met"] for t in result["targets"]]
    result["summary"] = {"met": met.count(True), "missed": met.count(False), "missing_data": met.count(None)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
