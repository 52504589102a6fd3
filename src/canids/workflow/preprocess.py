"""The preprocess stage: raw captures of one dataset -> graph caches pinned by a manifest.

Leak-free by construction:
- byte-identical captures (train_02 repeats train_01 files) are read once;
- validation is one contiguous time block (``val_fraction``) of every training capture,
  never a shuffle of windows (neighbouring windows are near-duplicates);
- the CAN-ID vocabulary comes from the attack-free training part only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from canids.data.catalog import Catalog, load_catalog
from canids.data.frames import Capture
from canids.data.onboarding import attack_frames_message
from canids.graphs.build import build_graphs
from canids.graphs.graphset import save_graphsets
from canids.graphs.vocab import build_vocabulary
from canids.settings import Settings, stage_settings
from canids.shape import ATTACK_FREE_SPLIT, TRAIN_SPLITS, VALIDATION, onboarding_set
from canids.workflow.dag import resolve_repo_path
from canids.workflow.job import Job
from canids.workflow.manifest import fingerprint, write_manifest


def split_train_val(capture: Capture, val_fraction: float, positions: int = 10) -> tuple[list[Capture], Capture]:
    """Hold out one contiguous block of ``val_fraction`` of a capture for validation.

    Among ``positions`` evenly spaced candidate blocks, the one whose attack-frame share is
    closest to the whole capture's is chosen (ties: the latest), so validation sees attacks
    whenever the capture has them, even when they come in a few episodes. The frames before
    and after the block become two training captures: no window spans the boundary.
    """
    n = len(capture)
    size = int(round(n * val_fraction))
    if size <= 0 or size >= n:
        return [capture], capture.slice(n, n)
    starts = np.linspace(0, n - size, positions).round().astype(int)
    cumulative = np.r_[0, np.cumsum(capture.label, dtype=np.int64)]
    share = (cumulative[starts + size] - cumulative[starts]) / size
    target = capture.n_attack / n
    best = int(np.flatnonzero(np.abs(share - target) == np.abs(share - target).min())[-1])
    start = int(starts[best])
    train = [part for part in (capture.slice(0, start), capture.slice(start + size, n)) if len(part)]
    return train, capture.slice(start, start + size)


def read_onboarding(catalog: Catalog, dataset: str, file_records: list[dict], *, strict: bool) -> dict[str, list[Capture]]:
    """The attack-free captures of each unseen-vehicle test split's vehicle (``canids.data.onboarding``),
    recorded in ``file_records`` (so the data fingerprint covers them); one with a labelled
    attack frame is refused, naming the file."""
    out: dict[str, list[Capture]] = {}
    for split, (source_spec, files) in catalog.onboarding_files(dataset).items():
        for f in files:
            cap = source_spec.read(f, strict=strict)
            if cap.n_attack:
                raise OnboardingDataError(attack_frames_message(f.path, cap.n_attack, f"datasets.{dataset}.onboarding.{split}"))
            file_records.append({"name": f.path.name, "split": f.split, "sha256": f.sha256, "size_bytes": f.size, "duplicate_of": None, "source": f"{source_spec.name}/{f.path.parent.name}", "frames": len(cap)})
            out.setdefault(split, []).append(cap)
    return out


class OnboardingDataError(ValueError):
    """An onboarding capture that cannot describe a vehicle's normal traffic."""


def run(job: Job) -> dict:
    return run_preprocess(job.dataset, job.settings, job.output("train_graphs"), job.output("test_graphs"), job.output("manifest"))


def run_preprocess(dataset: str, config: Settings, train_out: Path, test_out: Path, manifest_out: Path) -> dict:
    t0 = time.perf_counter()
    settings = stage_settings(config, "preprocess", None)
    catalog = load_catalog(resolve_repo_path(config.catalog), data_root=config.data_root, experiment_root=str(config.root()))
    spec = catalog.get(dataset)
    layout = spec.check_layout()
    files = spec.capture_files()
    captures: dict[str, list[Capture]] = {}
    file_records = []
    n_frames = 0
    for f in files:
        record = {"name": Path(f.path).name, "split": f.split, "sha256": f.sha256, "size_bytes": f.size, "duplicate_of": str(f.duplicate_of) if f.duplicate_of else None}
        file_records.append(record)
        if f.duplicate_of is not None:
            print(f"[preprocess] {f.path}: byte-identical to {f.duplicate_of}; counted once", file=sys.stderr)
            continue
        cap = spec.read(f, strict=settings["strict"])
        record.update(frames=len(cap), attack_frames=cap.n_attack, skipped_rows=cap.skipped_rows)
        n_frames += len(cap)
        captures.setdefault(f.split, []).append(cap)
    t_read = time.perf_counter() - t0

    train_parts, val_parts = [], []
    for split in TRAIN_SPLITS:
        for cap in captures.get(split, []):
            tr, va = split_train_val(cap, settings["val_fraction"])
            train_parts.extend(tr)
            val_parts.append(va)
    free = [c for c in train_parts if c.split == ATTACK_FREE_SPLIT]
    vocab = build_vocabulary(free)
    size, stride = settings["window_size"], settings["stride"]
    train = build_graphs(train_parts, vocab, size, stride)
    val = build_graphs(val_parts, vocab, size, stride)
    tests = {split: build_graphs(caps, vocab, size, stride) for split, caps in sorted(captures.items()) if split not in TRAIN_SPLITS}
    onboarding = {onboarding_set(split): build_graphs(caps, vocab, size, stride) for split, caps in read_onboarding(catalog, dataset, file_records, strict=settings["strict"]).items()}
    if len(train) == 0 or len(val) == 0:
        longest = max((len(c) for c in train_parts), default=0)
        raise ValueError(
            f"preprocess {dataset}: window_size {size} leaves no full window in the {'training' if len(train) == 0 else 'validation'} part of any training capture "
            f"(the longest training part has {longest} frames, validation is {settings['val_fraction']} of each capture); expected a smaller window_size or val_fraction"
        )
    extra = {"vocab": vocab.to_dict(), "window_size": size, "stride": stride, "dataset": dataset}
    save_graphsets(train_out, {"train": train, VALIDATION: val, **onboarding}, extra)
    save_graphsets(test_out, tests, extra)
    wall = time.perf_counter() - t0
    metrics = {
        "n_frames": n_frames,
        "frames_per_s": n_frames / wall if wall > 0 else None,
        "read_s": round(t_read, 3),
        "vocabulary_size": len(vocab.can_ids),
        # listed splits that are absent or hold no capture: reported, never silently dropped
        "skipped_splits": dict(layout.skipped),
        "skipped_rows": {r["name"]: r.get("skipped_rows", 0) for r in file_records if r.get("skipped_rows")},
        "splits": {"train": train.summary(), VALIDATION: val.summary(), **{k: v.summary() for k, v in tests.items()}},
        "onboarding": {k: v.summary() for k, v in onboarding.items()},
    }
    print(f"[preprocess] {dataset}: {n_frames} frames -> {len(train)} train / {len(val)} val / {sum(len(t) for t in tests.values())} test windows in {wall:.1f}s", file=sys.stderr)
    return write_manifest(
        manifest_out,
        dataset=dataset,
        stage="preprocess",
        variant=None,
        artifacts={"train_graphs": train_out, "test_graphs": test_out},
        hyperparameters=settings,
        upstream=[],
        data_fingerprint=fingerprint(file_records, spec.attack_families),
        wall_time_s=wall,
        metrics=metrics,
    )

