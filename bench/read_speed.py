"""Raw-reader throughput on one core: every CSV of a dataset, read with ``read_capture``.

Why: preprocessing must reach >= 500k frames/s end to end on one core including graph
building, so the reader alone has to be several times faster than that. This measures the
whole reader (file read, sha256, parse, validation, hex decoding), single-threaded.
The first run of a process pays allocator warm-up (page faults); the median hides it.

Usage: python bench/read_speed.py [DATASET_DIR]
    DATASET_DIR defaults to $CAN_DATA_ROOT/hcrl_sa, else ../shared/data/can/hcrl_sa relative
    to the repository root. Prints one JSON line.
"""

from __future__ import annotations

import os

# pin every native thread pool to one thread before numpy / pyarrow load
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REPETITIONS = 3


def default_data_dir() -> Path:
    env = os.environ.get("CAN_DATA_ROOT")
    return Path(env) / "hcrl_sa" if env else REPO.parent / "shared" / "data" / "can" / "hcrl_sa"


def import_readers():
    try:
        from canids.data import readers
    except ImportError:  # running from a checkout without an installed package
        sys.path.insert(0, str(REPO / "src"))
        from canids.data import readers
    return readers


def read_all(read_capture, files: list[Path]) -> tuple[int, float, float]:
    """(frames, wall seconds, CPU seconds) for one pass over ``files``."""
    wall, cpu = time.perf_counter(), time.process_time()
    frames = sum(len(read_capture(path)) for path in files)
    return frames, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str]) -> int:
    data = Path(argv[1]) if len(argv) > 1 else default_data_dir()
    files = sorted(data.rglob("*.csv"))
    if not files:
        print(f"read_speed: no *.csv files under {data} (pass a dataset directory or set CAN_DATA_ROOT)", file=sys.stderr)
        return 2
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    readers = import_readers()
    runs = []
    frames = 0
    for _ in range(REPETITIONS):
        frames, wall, cpu = read_all(readers.read_capture, files)
        runs.append({"seconds": round(wall, 4), "cpu_seconds": round(cpu, 4), "frames_per_s": round(frames / wall)})
    result = {
        "benchmark": "read_speed",
        "data": str(data),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "frames": frames,
        "frames_per_s_median": round(statistics.median(r["frames_per_s"] for r in runs)),
        # CPU-time rate: what one uncontended core achieves (wall time suffers on a shared box)
        "frames_per_cpu_s_median": round(statistics.median(frames / r["cpu_seconds"] for r in runs)),
        "runs": runs,
        "threads": 1,
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
