"""Benchmark: student vs teacher detectors on ONE CPU core.

Uses the checkpoints of a finished run (``ROOT/{dataset}/{teacher,student}``) and the
dataset's test graphs and raw captures. Prints one JSON line with:
- per-window inference time of the full detector (VGAE + GAT + DQN fusion) at batch 256
  and batch 1, teacher and student, and the teacher/student speed ratio;
- per-window time of the NumPy streaming runtime (``canids.stages.streaming``: one window
  in, one decision out, as in a vehicle), and the share of windows on which it decides as
  the torch detector does;
- the student's model-only throughput in frames/s (windows/s x window size);
- the student's end-to-end throughput from raw frames (graph building + models + decision),
  in batches and as a live bus sees it (``StreamingGraphBuilder`` fed a window's worth of
  frames at a time, each finished window decided by the streaming runtime);
- both variants' fusion F1 on the first test split, from their metrics.json.

    python bench/student_speed.py [--root experiment_runs] [--dataset synthetic] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from canids.data.readers import read_capture  # noqa: E402
from canids.graphs.shards import load_graphsets  # noqa: E402
from canids.shape import Layout  # noqa: E402
from canids.stages.detector import Detector  # noqa: E402
from canids.graphs.stream import StreamingGraphBuilder  # noqa: E402
from canids.graphs.vocab import Vocabulary  # noqa: E402
from canids.stages.streaming import StreamingDetector, window_arrays  # noqa: E402


def per_window_s(detector: Detector, graphs, batch_size: int, repeats: int, max_windows: int) -> float:
    """Median seconds per window of ``detector.decide`` over pre-built batches."""
    n = min(len(graphs), max_windows)
    batches = [graphs.batch(np.arange(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    detector.decide(batches[0])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for b in batches:
            detector.decide(b)
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def streaming_per_window_s(runtime: StreamingDetector, graphs, repeats: int, max_windows: int) -> float:
    """Median seconds per window of the streaming runtime, one window at a time."""
    windows = list(window_arrays(graphs, with_vocab=runtime.uses_vocab))[:max_windows]
    for window in windows[:20]:  # warm-up
        runtime.decide(*window)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for window in windows:
            runtime.decide(*window)
        times.append((time.perf_counter() - t0) / len(windows))
    return statistics.median(times)


def streaming_agreement(runtime: StreamingDetector, detector: Detector, graphs, max_windows: int) -> float:
    """Share of windows on which the streaming runtime and the torch detector decide alike."""
    n = min(len(graphs), max_windows)
    expected = detector.detect_graphs(graphs.subset(np.arange(n)))
    got = np.array([runtime.decide(*w).flag for _, w in zip(range(n), window_arrays(graphs, with_vocab=runtime.uses_vocab))])
    return float((got == expected).mean())


def streaming_end_to_end_frames_per_s(runtime: StreamingDetector, captures, repeats: int) -> float:
    """Frames/s from raw frames to decisions, one window at a time, frames arriving in window-sized chunks."""
    vocab, size = Vocabulary(runtime.can_ids), runtime.window_size
    frames = sum(len(c) for c in captures)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for cap in captures:
            builder = StreamingGraphBuilder(vocab, size)
            for start in range(0, len(cap), size):
                rows = slice(start, start + size)
                for window in builder.push(cap.timestamp[rows], cap.can_id[rows], cap.dlc[rows], cap.payload[rows]):
                    runtime.decide(*window.arrays())
        times.append(time.perf_counter() - t0)
    return frames / statistics.median(times)


def end_to_end_frames_per_s(detector: Detector, captures, repeats: int) -> float:
    frames = sum(len(c) for c in captures)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for cap in captures:
            detector.detect_frames(cap, batch_size=256)
        times.append(time.perf_counter() - t0)
    return frames / statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.environ.get("CAN_EXPERIMENT_ROOT", "experiment_runs"))
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-root", default=None, help="raw data root for real datasets (default: $CAN_DATA_ROOT or ../shared/data/can)")
    args = parser.parse_args()
    root = Path(args.root) / args.dataset
    tests, _ = load_graphsets(Layout(args.root).file(args.dataset, None, "preprocess", "test_graphs"))
    split = sorted(tests)[0]
    graphs = tests[split]
    detectors = {v: Detector.from_run(root / v).eval() for v in ("teacher", "student")}
    result = {"benchmark": "student_speed", "data": f"{root} ({split}, {len(graphs)} windows)", "cores_used": 1, "cores": os.cpu_count()}
    for variant, det in detectors.items():
        params = sum(p.numel() for m in (det.vgae, det.gat, det.policy) for p in m.parameters())
        b256 = per_window_s(det, graphs, 256, args.repeats, 4096)
        b1 = per_window_s(det, graphs, 1, max(1, args.repeats // 2), 300)
        runtime = StreamingDetector.from_detector(det)
        streaming = streaming_per_window_s(runtime, graphs, args.repeats, 1000)
        result[variant] = {
            "parameters": params,
            "ms_per_window_batch256": round(b256 * 1e3, 4),
            "torch_ms_per_window_batch1": round(b1 * 1e3, 4),
            "streaming_ms_per_window_batch1": round(streaming * 1e3, 4),
            "streaming_decisions_equal": round(streaming_agreement(runtime, det, graphs, 4096), 6),
            "model_frames_per_s_batch256": round(det.window_size / b256),
        }
        metrics = root / variant / "evaluation" / "metrics.json"
        if metrics.exists():
            result[variant]["fusion_f1"] = round(json.loads(metrics.read_text())["splits"][split]["fusion"]["f1"], 4)
    result["teacher_over_student_time_batch256"] = round(result["teacher"]["ms_per_window_batch256"] / result["student"]["ms_per_window_batch256"], 2)
    result["teacher_over_student_params"] = round(result["teacher"]["parameters"] / result["student"]["parameters"], 1)
    raw_dir = _raw_dir(args, root)
    if raw_dir is not None:
        captures = [read_capture(p) for p in sorted((raw_dir / split).iterdir()) if p.suffix in (".csv", ".gz", ".parquet")]
        result["student"]["end_to_end_frames_per_s"] = round(end_to_end_frames_per_s(detectors["student"], captures, max(1, args.repeats // 2)))
        result["student"]["streaming_end_to_end_frames_per_s"] = round(streaming_end_to_end_frames_per_s(StreamingDetector.from_detector(detectors["student"]), captures, args.repeats))
        result["end_to_end_frames"] = sum(len(c) for c in captures)
    result["targets"] = targets(result)
    print(json.dumps(result))
    return 0


def targets(result: dict) -> list[dict]:
    """The issue's student figures, each with whether this run meets it."""
    teacher, student = result["teacher"], result["student"]
    rows = [
        ("student parameters <= 10 % of the teacher's", student["parameters"] <= 0.1 * teacher["parameters"]),
        ("student >= 5x faster per window than the teacher (batch 256)", result["teacher_over_student_time_batch256"] >= 5),
        ("student model alone >= 820 k frames/s at batch 256", student["model_frames_per_s_batch256"] >= 820_000),
        ("student <= 0.5 ms per window at batch 1 (streaming runtime, same decisions)", student["streaming_ms_per_window_batch1"] <= 0.5 and student["streaming_decisions_equal"] == 1.0),
    ]
    if "end_to_end_frames_per_s" in student:
        rows.append(("student end to end from raw frames >= 450 k frames/s", student["end_to_end_frames_per_s"] >= 450_000))
    if "streaming_end_to_end_frames_per_s" in student:
        rows.append(("student window by window from raw frames (builder + runtime) >= 500 k frames/s", student["streaming_end_to_end_frames_per_s"] >= 500_000))
    if "fusion_f1" in student and "fusion_f1" in teacher:
        rows.append(("student fusion F1 within 0.02 of the teacher's", abs(student["fusion_f1"] - teacher["fusion_f1"]) <= 0.02))
    return [{"target": name, "met": bool(met)} for name, met in rows]


def _raw_dir(args: argparse.Namespace, root: Path) -> Path | None:
    if args.dataset == "synthetic":
        return root / "raw"
    base = Path(args.data_root or os.environ.get("CAN_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data" / "can")
    return base / args.dataset if (base / args.dataset).exists() else None


if __name__ == "__main__":
    sys.exit(main())
