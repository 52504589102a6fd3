"""Benchmark: ``StreamingGraphBuilder`` alone on ONE CPU core, window by window.

Why: in a vehicle the window graphs are built as frames arrive, one window at a time, so
the builder's per-window cost (not preprocessing's batch throughput) bounds how fast a
bus the in-vehicle detector can follow. This needs NO trained run, unlike
``bench/student_speed.py`` (whose "live bus" figure adds the student runtime on top): it
reads a dataset's raw test captures, builds the CAN-ID vocabulary from its attack-free
training captures, and feeds each capture to a fresh builder one window's worth of frames
per push (as a live bus does at line rate), timing only the pushes.

Prints one JSON line: median ms per window and frames/s over the repeats (the whole
split's captures per repeat), plus the windows and frames timed.

    python bench/stream_speed.py [DATASET_DIR] [--split test_01_known_vehicle_known_attack] [--window 100] [--repeats 5]

DATASET_DIR defaults to $CAN_DATA_ROOT/hcrl_sa, else ../shared/data/can/hcrl_sa relative to
the repository root.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's code, whatever else is installed

from canids.data.frames import Capture  # noqa: E402
from canids.data.readers import read_capture  # noqa: E402
from canids.graphs.stream import StreamingGraphBuilder  # noqa: E402
from canids.graphs.vocab import Vocabulary, build_vocabulary  # noqa: E402

_SUFFIXES = (".csv", ".gz", ".parquet")


def default_data_dir() -> Path:
    env = os.environ.get("CAN_DATA_ROOT")
    return Path(env) / "hcrl_sa" if env else REPO.parent / "shared" / "data" / "can" / "hcrl_sa"


def read_split(data_dir: Path, split: str) -> list[Capture]:
    """Every capture of one split directory, in name order."""
    return [read_capture(p) for p in sorted((data_dir / split).iterdir()) if p.name.endswith(_SUFFIXES)]


def stream_once(captures: list[Capture], vocab: Vocabulary, window: int) -> tuple[float, int]:
    """Seconds spent in ``push`` for all captures (one fresh builder each), and windows emitted."""
    elapsed, windows = 0.0, 0
    for cap in captures:
        builder = StreamingGraphBuilder(vocab, window)
        columns = (cap.timestamp, cap.can_id, cap.dlc, cap.payload, cap.label)
        chunks = [tuple(c[start : start + window] for c in columns) for start in range(0, len(cap), window)]
        t0 = time.perf_counter()
        for chunk in chunks:
            windows += len(builder.push(*chunk))
        elapsed += time.perf_counter() - t0
    return elapsed, windows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="?", type=Path, default=default_data_dir())
    parser.add_argument("--split", default="test_01_known_vehicle_known_attack")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    vocab = build_vocabulary(read_split(args.data_dir, "train_01_attack_free"))
    captures = read_split(args.data_dir, args.split)
    stream_once(captures, vocab, args.window)  # warm-up: allocator, caches
    runs = [stream_once(captures, vocab, args.window) for _ in range(args.repeats)]
    seconds = statistics.median(s for s, _ in runs)
    windows = runs[0][1]
    result = {
        "benchmark": "stream_speed",
        "data": f"{args.data_dir.name}/{args.split} ({len(captures)} captures)",
        "window_size": args.window,
        "windows": windows,
        "frames": windows * args.window,
        "repeats": args.repeats,
        "cores_used": 1,
        "builder_ms_per_window": round(seconds / windows * 1e3, 4),
        "builder_frames_per_s": round(windows * args.window / seconds),
        "target_met": seconds / windows <= 1e-4,  # issue 15 item 5: <= 0.1 ms per window
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
