"""Does the default synthetic dataset look like real CAN traffic?

Generates the default ``synthetic`` dataset (seed 0, scale 1) into a temporary directory,
reads it back through the same reader the pipeline uses, and compares its attack-free
training captures with the real ones of hcrl_sa and set_01 (train_01_attack_free).
Prints ONE JSON line:

    {"benchmark": "synthetic_stats", "synthetic": {...}, "hcrl_sa": {...}, "set_01": {...},
     "within_real_ranges": {stat: bool}, "cores": N, ...}

Real data: ``$CAN_DATA_ROOT/<name>``, else ``../shared/data/can/<name>`` relative to the repo
root. A missing real dataset is reported as ``null`` rather than failing the benchmark.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from canids.data import synthetic  # noqa: E402
from canids.data.frames import Capture  # noqa: E402
from canids.data.traffic_stats import REAL_RANGES, traffic_stats, within_real_ranges  # noqa: E402

ATTACK_FREE = "train_01_attack_free"


def load_capture(path: Path) -> Capture:
    """``canids.data.readers.read_capture`` when available, else a minimal pandas loader."""
    try:
        from canids.data.readers import read_capture
    except ImportError:
        return _pandas_capture(path)
    return read_capture(path, split=path.parent.name)


def _pandas_capture(path: Path) -> Capture:
    import pandas as pd

    df = pd.read_csv(path, dtype={"arbitration_id": str, "data_field": str}, keep_default_na=False)
    hexs = df["data_field"].to_numpy(dtype=str)
    dlc = np.char.str_len(hexs) // 2
    padded = np.char.ljust(hexs, 16, "0").astype("S16")
    digits = np.frombuffer(padded.tobytes(), np.uint8).reshape(-1, 16)
    nib = np.where(digits >= ord("A"), (digits | 0x20) - ord("a") + 10, digits - ord("0")).astype(np.uint8)
    payload = (nib[:, 0::2] << 4) | nib[:, 1::2]
    return Capture(
        timestamp=df["timestamp"].to_numpy(np.float64),
        can_id=np.array([int(x, 16) for x in df["arbitration_id"]], np.int32),
        dlc=dlc.astype(np.uint8),
        payload=payload.astype(np.uint8),
        label=df["attack"].to_numpy(np.uint8),
        name=path.stem,
        split=path.parent.name,
        source=str(path),
    )


def real_root() -> Path:
    env = os.environ.get("CAN_DATA_ROOT")
    return Path(env) if env else (REPO / ".." / "shared" / "data" / "can").resolve()


def attack_free_stats(dataset_dir: Path) -> dict | None:
    files = sorted((dataset_dir / ATTACK_FREE).glob("*.csv"))
    if not files:
        return None
    return _rounded(traffic_stats([load_capture(f) for f in files]))


def _rounded(obj):
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="canids-synth-") as tmp:
        t0 = time.perf_counter()
        paths = synthetic.generate(tmp, seed=0, scale=1.0, vehicles=2)
        gen_s = time.perf_counter() - t0
        manifest = json.loads((Path(tmp) / "generator.json").read_text())
        synth = attack_free_stats(Path(tmp))
        all_caps = [load_capture(p) for p in paths]
        windows = {}
        for cap in all_caps:
            windows[cap.split] = windows.get(cap.split, 0) + len(cap) // 100
        attack_shares = {
            f"{c.split}/{c.name}": round(c.n_attack / len(c), 4) for c in all_caps if c.n_attack
        }
    real = {name: attack_free_stats(real_root() / name) for name in ("hcrl_sa", "set_01")}
    record = {
        "benchmark": "synthetic_stats",
        "synthetic": synth,
        **real,
        "within_real_ranges": within_real_ranges(synth),
        "real_ranges": {k: list(v) for k, v in REAL_RANGES.items()},
        "real_within_real_ranges": {k: (within_real_ranges(v) if v else None) for k, v in real.items()},
        "dataset": {
            "files": len(paths),
            "frames": manifest["n_frames"],
            "attack_frames": manifest["n_attack_frames"],
            "windows_of_100_per_split": windows,
            "attack_share_per_capture": attack_shares,
            "generate_s": round(gen_s, 3),
        },
        "cores": os.cpu_count(),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
