"""The preprocess stage: raw captures of one dataset -> sharded graph caches pinned by a manifest.

Streaming: one capture in memory at a time, its graphs built ``chunk_frames`` frames at a
time and written in shards of ``shard_windows`` windows as they are built
(``canids.graphs.shards``); the manifest pins each cache's index and every shard by sha256.

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
from typing import Iterator

import numpy as np

from canids.data.catalog import Catalog, load_catalog
from canids.data.dataset import CaptureFile, DatasetSpec
from canids.data.frames import Capture
from canids.data.onboarding import attack_frames_message
from canids.graphs.build import capture_graph_chunks
from canids.graphs.shards import ShardWriter, clear_shards, load_graphsets, write_index
from canids.graphs.vocab import Vocabulary, build_vocabulary
from canids.settings import Settings, stage_settings
from canids.shape import ATTACK_FREE_SPLIT, TRAIN_SPLITS, VALIDATION, onboarding_set, shard_artifact
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


def onboarding_captures(catalog: Catalog, dataset: str, file_records: list[dict], *, strict: bool) -> Iterator[tuple[str, Capture]]:
    """The attack-free captures of each unseen-vehicle test split's vehicle (``canids.data.onboarding``),
    one at a time, recorded in ``file_records`` (so the data fingerprint covers them); one with a
    labelled attack frame is refused, naming the file."""
    for split, (source_spec, files) in catalog.onboarding_files(dataset).items():
        for f in files:
            cap = source_spec.read(f, strict=strict)
            if cap.n_attack:
                raise OnboardingDataError(attack_frames_message(f.path, cap.n_attack, f"datasets.{dataset}.onboarding.{split}"))
            file_records.append({"name": f.path.name, "split": f.split, "sha256": f.sha256, "size_bytes": f.size, "duplicate_of": None, "source": f"{source_spec.name}/{f.path.parent.name}", "frames": len(cap)})
            yield split, cap


class OnboardingDataError(ValueError):
    """An onboarding capture that cannot describe a vehicle's normal traffic."""


def run(job: Job) -> dict:
    return run_preprocess(job.dataset, job.settings, job.output("train_graphs"), job.output("test_graphs"), job.output("manifest"))


def training_vocabulary(spec: DatasetSpec, files: list[CaptureFile], val_fraction: float, strict: bool, keep_frames: int = 0) -> tuple[Vocabulary, dict[Path, Capture]]:
    """The vocabulary pass: the CAN IDs of the attack-free training part, one capture at a time.

    ``build_vocabulary`` over every such part at once is the union of its result per part,
    so the first pass over the (few) attack-free captures reads each once and keeps only
    their IDs, and the captures themselves while they total at most ``keep_frames`` frames
    (returned by path): the main pass then builds those without parsing them again.
    """
    ids, kept, kept_frames = [], {}, 0
    for f in files:
        if f.split != ATTACK_FREE_SPLIT or f.duplicate_of is not None:
            continue
        cap = spec.read(f, strict=strict)
        ids.extend(build_vocabulary([part]).can_ids for part in split_train_val(cap, val_fraction)[0])
        if kept_frames + len(cap) <= keep_frames:
            kept[Path(f.path)], kept_frames = cap, kept_frames + len(cap)
    if not ids:
        return build_vocabulary([]), kept  # refused with its message
    return Vocabulary(can_ids=np.unique(np.concatenate(ids))), kept


def run_preprocess(dataset: str, config: Settings, train_out: Path, test_out: Path, manifest_out: Path) -> dict:
    """Stream the captures of ``dataset`` into sharded graph caches (``canids.graphs.shards``).

    Two passes: the attack-free training captures give the vocabulary, then every capture is
    read, split, built ``chunk_frames`` frames at a time and appended to its sets' shard
    writers, so memory is bounded by those settings and the largest capture (held once, as
    read), not by the dataset. Each set keeps the windows in the order of a build over all its
    captures at once (training splits in their canonical order, then the test splits). On any error the shards written so far are
    removed: only a finished run leaves shards, indexes and a manifest.
    """
    t0 = time.perf_counter()
    settings = stage_settings(config, "preprocess", None)
    catalog = load_catalog(resolve_repo_path(config.catalog), data_root=config.data_root, experiment_root=str(config.root()))
    spec = catalog.get(dataset)
    layout = spec.check_layout()
    files = spec.capture_files()
    strict, size, stride = settings["strict"], settings["window_size"], settings["stride"]
    train_out, test_out = Path(train_out), Path(test_out)
    for out in (train_out, test_out):
        clear_shards(out.parent)
    t_read = 0.0
    # attack-free captures read for the vocabulary are kept (up to one chunk's frames) for the main pass
    vocab, already_read = training_vocabulary(spec, files, settings["val_fraction"], strict, keep_frames=settings["chunk_frames"])
    writers: dict[str, ShardWriter] = {}
    done: dict[str, dict] = {}

    def writer(name: str, index: Path) -> ShardWriter:
        if name not in writers:
            writers[name] = ShardWriter(index.parent, name, settings["shard_windows"], size)
        return writers[name]

    def finish(name: str) -> None:
        done[name] = writers[name].close()

    def add(name: str, index: Path, captures: list[Capture]) -> None:
        """Each capture's windows, ``chunk_frames`` frames' worth at a time, to set ``name``."""
        for cap in captures:
            for k, piece in enumerate(capture_graph_chunks(cap, vocab, size, stride, settings["chunk_frames"])):
                writer(name, index).add(piece, same_capture=k > 0)

    try:
        file_records: list[dict] = []
        n_frames, longest = 0, 0
        for f in files:
            record = {"name": Path(f.path).name, "split": f.split, "sha256": f.sha256, "size_bytes": f.size, "duplicate_of": str(f.duplicate_of) if f.duplicate_of else None}
            file_records.append(record)
            if f.duplicate_of is not None:
                print(f"[preprocess] {f.path}: byte-identical to {f.duplicate_of}; counted once", file=sys.stderr)
                continue
            t1 = time.perf_counter()
            cap = already_read.pop(Path(f.path), None)
            cap = spec.read(f, strict=strict) if cap is None else cap
            t_read += time.perf_counter() - t1
            record.update(frames=len(cap), attack_frames=cap.n_attack, skipped_rows=cap.skipped_rows)
            n_frames += len(cap)
            if f.split in TRAIN_SPLITS:
                tr, va = split_train_val(cap, settings["val_fraction"])
                longest = max([longest, *(len(c) for c in tr)])
                add("train", train_out, tr)
                add(VALIDATION, train_out, [va])
            else:
                if f.split not in writers:  # files come split by split: the previous test split is complete
                    for name in [n for n in writers if n not in done and n not in ("train", VALIDATION)]:
                        finish(name)
                add(f.split, test_out, [cap])
            del cap
        for name in [n for n in writers if n not in done and n not in ("train", VALIDATION)]:
            finish(name)
        for name in ("train", VALIDATION):
            writer(name, train_out)
            finish(name)
        onboarding: list[str] = []
        for split, cap in onboarding_captures(catalog, dataset, file_records, strict=strict):
            name = onboarding_set(split)
            if name not in onboarding:
                for previous in onboarding:
                    if previous not in done:
                        finish(previous)
                onboarding.append(name)
            add(name, train_out, [cap])
        for name in onboarding:
            if name not in done:
                finish(name)
        train_n, val_n = done["train"]["windows"], done[VALIDATION]["windows"]
        if train_n == 0 or val_n == 0:
            raise ValueError(
                f"preprocess {dataset}: window_size {size} leaves no full window in the {'training' if train_n == 0 else 'validation'} part of any training capture "
                f"(the longest training part has {longest} frames, validation is {settings['val_fraction']} of each capture); expected a smaller window_size or val_fraction"
            )
        extra = {"vocab": vocab.to_dict(), "window_size": size, "stride": stride, "dataset": dataset}
        train_sets = {"train": done["train"], VALIDATION: done[VALIDATION], **{name: done[name] for name in onboarding}}
        test_sets = {name: done[name] for name in sorted(done) if name not in train_sets}
        write_index(train_out, train_sets, extra)
        write_index(test_out, test_sets, extra)
    except BaseException:
        for w in writers.values():
            for path in w.paths:
                path.unlink(missing_ok=True)
        raise
    summaries = {out: {name: graphs.summary() for name, graphs in load_graphsets(out)[0].items()} for out in (train_out, test_out)}
    tests = summaries[test_out]
    wall = time.perf_counter() - t0
    metrics = {
        "n_frames": n_frames,
        "frames_per_s": n_frames / wall if wall > 0 else None,
        "read_s": round(t_read, 3),
        "vocabulary_size": len(vocab.can_ids),
        # listed splits that are absent or hold no capture: reported, never silently dropped
        "skipped_splits": dict(layout.skipped),
        "skipped_rows": {r["name"]: r.get("skipped_rows", 0) for r in file_records if r.get("skipped_rows")},
        "splits": {"train": summaries[train_out]["train"], VALIDATION: summaries[train_out][VALIDATION], **tests},
        "onboarding": {name: summaries[train_out][name] for name in onboarding},
        "shards": {name: len(entry["shards"]) for name, entry in done.items()},
    }
    print(f"[preprocess] {dataset}: {n_frames} frames -> {train_n} train / {val_n} val / {sum(t['n_windows'] for t in tests.values())} test windows in {wall:.1f}s", file=sys.stderr)
    pinned = {shard_artifact(artifact, name, k): (index.parent / shard["path"], shard["sha256"]) for artifact, index, sets in (("train_graphs", train_out, train_sets), ("test_graphs", test_out, test_sets)) for name, entry in sets.items() for k, shard in enumerate(entry["shards"])}
    return write_manifest(
        manifest_out,
        dataset=dataset,
        stage="preprocess",
        variant=None,
        artifacts={"train_graphs": train_out, "test_graphs": test_out, **{name: path for name, (path, _) in pinned.items()}},
        hyperparameters=settings,
        upstream=[],
        data_fingerprint=fingerprint(file_records, spec.attack_families),
        wall_time_s=wall,
        metrics=metrics,
        digests={name: sha256 for name, (_, sha256) in pinned.items()},  # hashed as written
    )
