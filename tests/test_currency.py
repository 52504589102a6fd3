"""An experiment root you can trust: current means the manifests agree, one writer per stage,
and a complete result is never destroyed before its replacement exists.

Each test reproduces a failure a user hit with a shared root (issue 12) on a copy of the tiny
pipeline's root, used from another working directory, as a second clone would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from canids.shape import STAGES, file_name
from canids.workflow.locks import StageLocks, describe

from conftest import REPO, SNAKEMAKE, snakemake

ROOT = "experiment_runs"


def copy_root(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny run's root (file times scrambled, as `cp -r` leaves them) in a new working directory."""
    work = tmp_path / "elsewhere"
    shutil.copytree(tiny_run / ROOT, work / ROOT)
    return work


def test_a_copied_root_is_current_however_its_file_times_came_out(tiny_run, tiny_config_file, tmp_path):
    work = copy_root(tiny_run, tmp_path)
    for path in sorted((work / ROOT).rglob("*"), reverse=True):  # upstream files newest: the worst case for file times
        if path.is_file():
            os.utime(path, (time.time() - 10 * len(path.parts), time.time() - 10 * len(path.parts)))
    dry = snakemake(["-n", "--configfile", str(tiny_config_file)], work)
    assert "Nothing to be done" in dry.stdout, dry.stdout[-3000:] + dry.stderr[-3000:]


def test_changed_settings_are_seen_from_any_working_directory_and_the_reason_is_named(tiny_run, tiny_config_file, tmp_path):
    """Up-to-dateness used to come from .snakemake/metadata of the working directory: a fresh
    directory on a shared root said "Nothing to be done" for models trained with other settings."""
    work = copy_root(tiny_run, tmp_path)
    dry = snakemake(["-n", "--configfile", str(tiny_config_file), "--config", "curriculum={teacher: {epochs: 2}}"], work)
    assert "synthetic/teacher/curriculum: settings changed: epochs 4 -> 2" in dry.stderr
    assert "synthetic/teacher/fusion: upstream curriculum is rebuilt" in dry.stderr
    jobs = re.findall(r"^rule (\w+):", dry.stdout, flags=re.M)
    assert sorted(set(jobs) - {"all"}) == ["curriculum", "evaluation", "fusion", "onboarding"], jobs
    assert "autoencoder: " not in dry.stderr


def test_a_failed_rebuild_keeps_the_previous_result_and_a_later_run_puts_it_back(tiny_run, tiny_config_file, tmp_path):
    """Snakemake deletes a job's outputs before it starts; a rebuild that then fails used to lose
    the previous good result. It is now kept under ROOT/.previous and put back when current."""
    import yaml

    data = tmp_path / "data" / "mini"
    shutil.copytree(tiny_run / ROOT / "synthetic/raw", data, ignore=shutil.ignore_patterns("*.json"))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"datasets": {"mini": {"format": "ctt", "path": str(data)}}}))
    work = tmp_path / "work"
    work.mkdir()
    target = f"{ROOT}/mini/preprocess/manifest.json"
    args = [target, "--configfile", str(tiny_config_file), "--config", f"catalog={catalog}", "datasets=[mini]"]
    snakemake(["--cores", "1", *args], work)
    stage = work / ROOT / "mini/preprocess"
    before = (stage / "manifest.json").read_bytes()

    capture = sorted((data / "train_01_attack_free").glob("*.csv"))[0]
    original = capture.read_bytes()
    capture.write_bytes(original + b"not,a,row\n")  # the raw data changed, and reading it fails
    dry = snakemake(["-n", *args], work)
    assert "mini/preprocess: raw captures changed" in dry.stderr
    proc = snakemake(["--cores", "1", *args], work, check=False)
    assert proc.returncode != 0
    kept = work / ROOT / ".previous/mini/preprocess"
    assert (kept / "manifest.json").read_bytes() == before and (kept / file_name("preprocess", "train_graphs")).exists()
    shards = [name for name in json.loads(before)["artifacts"] if name not in STAGES["preprocess"].artifacts]
    assert shards and len(list(kept.rglob("*.shard"))) == len(shards)  # and every shard the manifest pins
    log = (work / ROOT / "mini/logs/preprocess.log").read_text()
    assert "not,a,row" in log and f"the previous complete result of this stage is kept in {kept}" in log
    assert not (stage / "manifest.json").exists()

    capture.write_bytes(original)  # repaired: the kept result is current again
    dry = snakemake(["-n", *args], work)
    assert "Nothing to be done" in dry.stdout and "put back the kept result of mini/preprocess" in dry.stderr
    assert (stage / "manifest.json").read_bytes() == before and not kept.exists()


def _slow_training(work: Path, tiny_config_file: Path, name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "CAN_EXPERIMENT_ROOT"} | {"CANIDS_TEST_EPOCH_SLEEP_S": "3", "PYTHONUNBUFFERED": "1"}
    cmd = ["timeout", "-k", "10", "600", SNAKEMAKE, "-s", str(REPO / "workflow/Snakefile"), "--directory", str(work), "--cores", "2", "--configfile", str(tiny_config_file), "--config", f"experiment_root={work.parent / 'shared'}", "curriculum={teacher: {epochs: 3}}"]
    return subprocess.Popen(cmd, stdout=open(work.parent / f"{name}.out", "w"), stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True)


def test_one_writer_per_stage_across_working_directories(tiny_run, tiny_config_file, tmp_path):
    """Two runs from different directories on one root used to train the same stage at once and
    mix their curves. The second now stops before any job, naming the first; once the first is
    killed, its lock is recognised as stale and the next run takes over."""
    shutil.copytree(tiny_run / ROOT, tmp_path / "shared")
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    first = _slow_training(first_dir, tiny_config_file, "first")
    try:
        lock = tmp_path / "shared/.locks/synthetic/teacher/curriculum.lock"
        deadline = time.monotonic() + 300
        while not lock.exists():
            assert first.poll() is None, (tmp_path / "first.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.2)
        holder = json.loads(lock.read_text())
        assert holder["workdir"] == str(first_dir) and holder["pid"] > 0
        second = snakemake(["--cores", "1", "--configfile", str(tiny_config_file), "--config", f"experiment_root={tmp_path / 'shared'}", "curriculum={teacher: {epochs: 3}}"], second_dir, check=False)
        assert second.returncode != 0
        text = second.stdout + second.stderr
        assert "synthetic/teacher/curriculum is being written by another run" in text and describe(holder) in text
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    # the holder is gone (kill -9, no release): its lock is broken, the stage trained to the end
    snakemake(["--cores", "2", "--configfile", str(tiny_config_file), "--config", f"experiment_root={tmp_path / 'shared'}", "curriculum={teacher: {epochs: 3}}"], second_dir)
    manifest = json.loads((tmp_path / "shared/synthetic/teacher/curriculum/manifest.json").read_text())
    assert manifest["hyperparameters"]["epochs"] == 3
    assert not list((tmp_path / "shared/.locks").rglob("*.lock")), "every lock released at the end of the run"


def test_a_lock_of_a_live_process_is_kept_and_of_a_dead_one_broken(tmp_path):
    locks = StageLocks(tmp_path)
    path = locks.path("d", "teacher", "fusion")
    path.parent.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        from canids.workflow.locks import LockHeld, _process_start

        alive = {"host": __import__("socket").gethostname(), "pid": sleeper.pid, "pid_start": _process_start(sleeper.pid), "workdir": "/x", "started": "t"}
        path.write_text(json.dumps(alive))
        with pytest.raises(LockHeld, match=r"d/teacher/fusion is being written by another run \(host .*, pid \d+, working directory /x, since t\)"):
            locks.acquire("d", "teacher", "fusion")
    finally:
        sleeper.kill()
        sleeper.wait()
    locks.acquire("d", "teacher", "fusion")  # the pid is gone: broken, taken
    assert json.loads(path.read_text())["pid"] == os.getpid()
    locks.release()
    assert not path.exists()
    old = {"host": "elsewhere", "pid": 1, "workdir": "/y", "started": "t"}
    path.write_text(json.dumps(old))
    with pytest.raises(LockHeld):
        StageLocks(tmp_path).acquire("d", "teacher", "fusion")  # another host, refreshed recently: alive
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    StageLocks(tmp_path).acquire("d", "teacher", "fusion")  # not refreshed for an hour: stale

