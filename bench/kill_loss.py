"""Benchmark: how much training a hard kill loses (resume state is saved every epoch).

Trains the autoencoder of the embedded dataset (tiny data, default teacher model, small batches:
~1.5 s per epoch here) with `snakemake --cores`, kills the training process with SIGKILL at a
chosen point of an epoch after the third resume checkpoint, reruns the same command and reads
the rerun's log line `resuming from <ckpt> at epoch N/M (N-1 epochs done ...)`.

    epochs lost = epochs finished before the kill (the log's `epoch k/M` lines) - epochs restored

One trial per kill phase (fraction of an epoch after the checkpoint; default 0.1 0.5 0.95).
Prints ONE JSON line with each trial and the maximum (goal: at most one epoch lost). Also checks
that the rerun repeats no epoch. Needs no SLURM; every Snakemake call runs under `timeout -k`.

    python bench/kill_loss.py [--phases 0.1 0.5 0.95] [--epochs 8] [--after 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = str(VENV_BIN / "snakemake")
ROOT = "experiment_runs"
EPOCH_RE = re.compile(r"^\[VGAEModule\] epoch (\d+)/(\d+) ", re.M)
RESUME_RE = re.compile(r"^\[VGAEModule\] resuming from (\S+) at epoch (\d+)/(\d+) \((\d+) epochs done", re.M)


def config(epochs: int) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import TINY_CONFIG

    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["autoencoder"]["teacher"].update(epochs=epochs, patience=1000, batch_size=4, model={"hidden": 32, "heads": 4, "layers": 2, "latent": 48, "embed_dim": 16})
    return cfg


def cmd(workdir: Path, args: list[str], timeout: int) -> list[str]:
    return ["timeout", "-k", "10", str(timeout), SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), *args]


def run(workdir: Path, args: list[str], env: dict, timeout: int = 600) -> None:
    proc = subprocess.run(cmd(workdir, args, timeout), capture_output=True, text=True, env=env, cwd=workdir)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


def resume_state(resume_dir: Path) -> dict:
    try:
        return json.loads((resume_dir / "resume.json").read_text())
    except (OSError, ValueError):
        return {}


def _holds_log(proc: Path, rule: str) -> bool:
    try:
        return any(os.readlink(fd).endswith(f"/{rule}.log") for fd in (proc / "fd").iterdir())
    except OSError:
        return False


def training_pid(workdir: Path) -> int | None:
    marker = f"{workdir}/.snakemake/scripts/"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
            except OSError:
                continue
            # every stage rule runs workflow/scripts/stage.py; the job log it holds open names the rule
            if "python" in argv[0] and any(a.startswith(marker) and a.endswith(".stage.py") for a in argv) and _holds_log(entry, "autoencoder"):
                return int(entry.name)
    return None


def trial(prepared: Path, work: Path, cfg_path: Path, env: dict, epochs: int, after: int, phase: float) -> dict:
    shutil.copytree(prepared / ROOT, work / ROOT, symlinks=True)
    resume_dir = work / ROOT / ".resume" / "synthetic" / "teacher" / "autoencoder"
    log = work / ROOT / "synthetic" / "logs" / "teacher" / "autoencoder.log"
    args = ["--cores", "2", f"{ROOT}/synthetic/teacher/autoencoder/manifest.json", "--configfile", str(cfg_path)]
    proc = subprocess.Popen(cmd(work, args, 600), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=work, start_new_session=True)
    try:
        saved_at: dict[int, float] = {}
        deadline = time.monotonic() + 300
        while len(saved_at) < 2 or max(saved_at) < after:
            st = resume_state(resume_dir)
            if st:
                saved_at.setdefault(int(st["epochs_done"]), float(st["saved_at"]))
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"training ended or stalled before {after} epochs (rc={proc.poll()})")
            time.sleep(0.01)
        last = max(saved_at)
        period = (saved_at[last] - saved_at[min(saved_at)]) / max(last - min(saved_at), 1)
        time.sleep(max(0.0, saved_at[last] + phase * period - time.time()))
        pid = training_pid(work)
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    first_log = log.read_text()
    finished = len(EPOCH_RE.findall(first_log))
    state = resume_state(resume_dir)
    run(work, args, env)
    rerun_log = log.read_text()
    resumed = RESUME_RE.search(rerun_log)
    restored = int(resumed[4]) if resumed else 0
    rerun_epochs = [int(m[0]) for m in EPOCH_RE.findall(rerun_log)]
    return {
        "kill_phase": phase,
        "epoch_s": round(period, 2),
        "epochs_finished_before_kill": finished,
        "epochs_restored": restored,
        "epochs_lost": finished - restored,
        "seconds_since_checkpoint_at_kill": round(killed_at - float(state.get("saved_at", killed_at)), 2),
        "rerun_repeats_no_epoch": rerun_epochs == list(range(restored + 1, epochs + 1)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=float, nargs="+", default=[0.1, 0.5, 0.95], help="where in the epoch after the checkpoint to kill (fractions)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--after", type=int, default=3, help="kill after this many resume checkpoints")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("CAN_EXPERIMENT_ROOT", "CANIDS_TEST_EPOCH_SLEEP_S", "SLURM_JOB_ID", "SLURM_JOB_END_TIME")}
    env["PYTHONUNBUFFERED"] = "1"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kill_loss_") as tmp:
        cfg_path = Path(tmp) / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(config(args.epochs)))
        prepared = Path(tmp) / "prepared"
        prepared.mkdir()
        run(prepared, ["--cores", "2", f"{ROOT}/synthetic/preprocess/manifest.json", "--configfile", str(cfg_path)], env)
        trials = []
        for i, phase in enumerate(args.phases):
            work = Path(tmp) / f"trial{i}"
            work.mkdir()
            trials.append(trial(prepared, work, cfg_path, env, args.epochs, args.after, phase))
    print(json.dumps({
        "benchmark": "kill_loss",
        "what": f"SIGKILL of the autoencoder's training process after {args.after} epochs at a fraction of the next epoch, then rerun (--cores 2); epochs lost = finished before kill - restored on resume",
        "max_epochs_lost": max(t["epochs_lost"] for t in trials),
        "goal_max_epochs_lost": 1,
        "trials": trials,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
