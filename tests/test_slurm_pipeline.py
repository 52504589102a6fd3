"""The real pipeline through the local SLURM cluster: jobs, resources, resume after a kill,
retry after a time limit, concurrency.

Needs the local cluster (tests/slurm/cluster.sh, root) for the `slurm` tests; the kill -9 and
concurrency tests run Snakemake with --cores and need no cluster. Every Snakemake call runs
under `timeout -k`.

Training is slowed with the test-only knob CANIDS_TEST_EPOCH_SLEEP_S (seconds added to every
epoch, see canids.stages.callbacks) so that a kill lands mid-run. The training machinery itself
(wall-time stop, atomic checkpoints, the resumable curve) is unit-tested in tests/test_trainer.py.

Every wait here is for a state, with a generous ceiling; no test asserts that something happened
within a number of seconds.

Timings measured here (2 cores, gVisor; a SLURM job costs ~15-20 s more than the same rule
under --cores, mostly the executor plugin's status polling; whole file ~6.5 min):
- prepared_upstream (module fixture: generate + preprocess, --cores) ...... ~8 s
- test_pipeline_through_slurm_profile (6 jobs) ............................ ~160 s
- test_scancel_mid_training_then_retry_resumes ............................ ~70 s
- test_kill9_mid_training_then_rerun_resumes (local) ...................... ~25 s
- test_time_limit_stops_cleanly_and_retry_resumes ......................... ~110 s
- test_two_variants_train_at_once_and_second_invocation_is_locked (local) . ~25 s
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import PROFILE_DIR, REPO, SNAKEMAKE, TINY_CONFIG, slurm_submit_env, workflow_rules

from canids.shape import STAGE_NAMES, TRAINING_STAGES

SNAKEFILE = REPO / "workflow" / "Snakefile"
ROOT = "experiment_runs"  # experiment root, relative to the Snakemake working directory
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
RULES = ("generate_synthetic", *STAGE_NAMES)
GPU_RULES = set(TRAINING_STAGES)  # the profile gives the training rules a GPU
EPOCH_RE = re.compile(r"^\[VGAEModule\] epoch (\d+)/(\d+) ", re.M)
RESUME_RE = re.compile(r"^\[VGAEModule\] resuming from (\S+) at epoch (\d+)/(\d+) \((\d+) epochs done", re.M)


# ---------------------------------------------------------------- helpers


def _config(tmp: Path, name: str = "config.yaml", **autoencoder_teacher) -> Path:
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["autoencoder"]["teacher"].update(autoencoder_teacher)
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cmd(workdir: Path, args: list[str], timeout: int) -> list[str]:
    return ["timeout", "-k", "10", str(timeout), SNAKEMAKE, "-s", str(SNAKEFILE), "--directory", str(workdir), *args]


def _local_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CAN_EXPERIMENT_ROOT"}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def _run(workdir: Path, args: list[str], env: dict, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(workdir, args, timeout), capture_output=True, text=True, env=env, cwd=workdir, timeout=timeout + 30)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


class Background:
    """A Snakemake run in the background (own session), output to files; always reaped."""

    def __init__(self, workdir: Path, args: list[str], env: dict, timeout: int, name: str) -> None:
        self.out = workdir.parent / f"{name}.out"
        self.err = workdir.parent / f"{name}.err"
        self.proc = subprocess.Popen(_cmd(workdir, args, timeout), stdout=open(self.out, "w"), stderr=open(self.err, "w"), env=env, cwd=workdir, start_new_session=True)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group only
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)

    def text(self) -> str:
        return self.out.read_text() + self.err.read_text()


def _wait_for(what, predicate, timeout: float, interval: float = 0.25, alive: Background | None = None):
    """Poll ``predicate`` until it is true; ``timeout`` is a ceiling for a hang, not a speed requirement.

    ``what`` is a description, or a callable giving one, evaluated when the wait fails (so it can
    show the latest state seen).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        describe = what() if callable(what) else what
        if alive is not None and alive.proc.poll() is not None:
            raise AssertionError(f"snakemake ended (rc={alive.proc.returncode}) while waiting for {describe}:\n{alive.text()[-6000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {describe}")
        time.sleep(interval)


def _paths(workdir: Path, variant: str = "teacher", stage: str = "autoencoder") -> dict[str, Path]:
    root = workdir / ROOT / "synthetic"
    return {
        "ckpt": root / variant / stage / "model.ckpt",
        "manifest": root / variant / stage / "manifest.json",
        "out_dir": root / variant / stage,
        "log": root / "logs" / variant / f"{stage}.log",
        "benchmark": root / "benchmarks" / variant / f"{stage}.tsv",
        "resume": workdir / ROOT / ".resume" / "synthetic" / variant / stage,
    }


def _epochs_done(resume_dir: Path) -> int:
    try:
        return int(json.loads((resume_dir / "resume.json").read_text())["epochs_done"])
    except (OSError, ValueError, KeyError):
        return 0


def _assert_no_half_written_outputs(p: dict[str, Path]) -> None:
    """A failed job's declared outputs are gone (Snakemake deletes them) or complete."""
    from canids.stages.checkpoints import load_vgae
    from canids.workflow.manifest import load_manifest

    if p["ckpt"].exists():
        load_vgae(p["ckpt"])  # a truncated file fails to load
    if p["manifest"].exists():
        load_manifest(p["manifest"], stage="autoencoder")  # verifies the checkpoint's digest too
    leftovers = [x.name for x in p["out_dir"].glob(".*.tmp")] if p["out_dir"].exists() else []
    assert not leftovers, f"temporary files left next to the declared outputs: {leftovers}"


def _val_epochs(curve: Path, metric: str = "val_score") -> list[int]:
    with open(curve, newline="") as handle:
        return [int(r["epoch"]) for r in csv.DictReader(handle) if r.get(metric)]


def _assert_resumed(first_log: str, rerun_log: str, saved: int, epochs: int, curve: Path) -> int:
    """The rerun continued after the saved epoch, lost at most one epoch, repeated none."""
    done_before = [int(m[0]) for m in EPOCH_RE.findall(first_log)]
    assert done_before and done_before == list(range(1, len(done_before) + 1)), first_log[-3000:]
    resumed = RESUME_RE.search(rerun_log)
    assert resumed, f"no 'resuming from' line in the rerun's log:\n{rerun_log[-3000:]}"
    start, done = int(resumed[2]), int(resumed[4])
    assert done == saved and start == saved + 1, (resumed[0], saved)
    assert len(done_before) - done <= 1, f"{len(done_before)} epochs finished before the kill, {done} restored"
    rerun_epochs = [int(m[0]) for m in EPOCH_RE.findall(rerun_log)]
    assert rerun_epochs == list(range(start, epochs + 1)), rerun_epochs  # no epoch repeated, none skipped
    assert _val_epochs(curve) == list(range(epochs)), "each epoch exactly once in the training curve"
    return done


def _copy_prepared(prepared: Path, dest: Path) -> Path:
    """A fresh working directory holding generate_synthetic + preprocess outputs (mtimes kept)."""
    shutil.copytree(prepared / ROOT, dest / ROOT, symlinks=True)
    return dest


def _sacct(args: list[str], fields: list[str]) -> list[dict[str, str]]:
    proc = subprocess.run(["sacct", "-n", "-X", "-P", "-o", ",".join(fields), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [dict(zip(fields, line.split("|"))) for line in proc.stdout.splitlines() if line.strip()]


def _settled(row: dict[str, str]) -> bool:
    return row["State"].split(" ")[0] in TERMINAL and bool(row.get("AllocTRES")) and re.fullmatch(r"\d+(\.\d+)?[KMGT]", row.get("ReqMem", "1M")) is not None


def _jobs_of(workdir: Path, count: int, timeout: float = 180) -> list[dict[str, str]]:
    """sacct rows of the jobs run from `workdir`, once `count` of them are finished and complete.

    Called after Snakemake returned, so the jobs exist; the wait covers slurmdbd's accounting lag.
    """
    fields = ["JobID", "State", "ExitCode", "Comment", "Partition", "Account", "ReqMem", "AllocCPUS", "Timelimit", "AllocTRES", "WorkDir", "Start", "End"]
    got: list[dict[str, str]] = []

    def ready():
        nonlocal got
        got = [r for r in _sacct(["-S", "now-3hours"], fields) if r["WorkDir"] == str(workdir)]
        return len(got) >= count and all(_settled(r) for r in got)

    _wait_for(lambda: f"{count} settled sacct rows for {workdir} (last seen: {got})", ready, timeout, interval=0.5)
    return sorted(got, key=lambda r: int(r["JobID"]))


def _rule_of(row: dict[str, str]) -> str:
    return row["Comment"].split("_wildcards")[0].removeprefix("rule_")


def _squeue_jobs(workdir: Path) -> list[tuple[str, str]]:
    proc = subprocess.run(["squeue", "-h", "-o", "%A|%k|%Z|%T"], capture_output=True, text=True, timeout=30)
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.count("|") == 3]
    return [(r[0], r[1]) for r in rows if r[2] == str(workdir)]


def _cancel_leftovers(workdir: Path) -> None:
    for job_id, _ in _squeue_jobs(workdir):
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30)


def _profile_resources(rule: str, env: dict[str, str], attempt: int = 1) -> dict:
    """The profile's resources for `rule` as Snakemake evaluates them in the submitting
    environment `env` (default-resources overlaid by set-resources[rule], `attempt` in scope)."""
    cfg = yaml.safe_load((PROFILE_DIR / "config.yaml").read_text())
    raw = dict(cfg["default-resources"])
    raw.update((cfg.get("set-resources") or {}).get(rule, {}))
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return {k: eval(v, {"attempt": attempt}) if isinstance(v, str) else v for k, v in raw.items()}  # noqa: S307 (our own profile)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _minutes(minutes: int) -> str:
    days, rem = divmod(int(minutes), 24 * 60)
    hhmmss = f"{rem // 60:02d}:{rem % 60:02d}:00"
    return f"{days}-{hhmmss}" if days else hhmmss


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def prepared_upstream(tmp_path_factory) -> Path:
    """generate_synthetic + preprocess at tiny size, once (--cores); tests copy it."""
    work = tmp_path_factory.mktemp("prepared") / "work"
    work.mkdir()
    config = _config(work.parent)
    _run(work, ["--cores", "2", f"{ROOT}/synthetic/preprocess/manifest.json", "--configfile", str(config)], _local_env(), timeout=300)
    return work


# ---------------------------------------------------------------- the whole pipeline through SLURM


@pytest.mark.slurm
@pytest.mark.integration
def test_pipeline_through_slurm_profile(slurm_cluster, tmp_path):
    """Every rule is its own COMPLETED SLURM job with the profile's resources; manifests name the job."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = _config(tmp_path)
    env = slurm_submit_env(slurm_cluster)
    try:
        t0 = time.monotonic()
        proc = _run(workdir, ["--profile", str(PROFILE_DIR), "--configfile", str(config)], env, timeout=720, check=False)
        took = time.monotonic() - t0
        assert proc.returncode == 0, f"rc={proc.returncode} after {took:.0f}s:\n{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}"
    finally:
        _cancel_leftovers(workdir)

    rows = _jobs_of(workdir, len(RULES))
    by_rule: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_rule.setdefault(_rule_of(r), []).append(r)
    assert sorted(by_rule) == sorted(RULES), rows
    threads = {name: r["threads"] for name, r in workflow_rules().items()}
    for rule in RULES:
        (row,) = by_rule[rule]  # exactly one job per rule: nothing was retried
        want = _profile_resources(rule, env)
        assert row["State"] == "COMPLETED" and row["ExitCode"] == "0:0", row
        assert row["Account"] == want["slurm_account"] == slurm_cluster["CANIDS_SLURM_ACCOUNT"], row
        assert row["Partition"] == want["slurm_partition"], row
        assert row["ReqMem"] == f"{want['mem_mb']}M", (row, want)
        assert row["AllocCPUS"] == str(threads[rule]), (row, threads[rule])  # a rule's CPUs are its threads
        assert row["Timelimit"] == _minutes(want["runtime"]), (row, want)
        assert ("gres/gpu=1" in row["AllocTRES"].split(",")) is (rule in GPU_RULES), row
        assert (workdir / "slurm_logs" / f"rule_{rule}").is_dir()

    # Each stage's manifest records the job that wrote it.
    from canids.workflow.manifest import load_manifest

    stage_manifests = {
        "preprocess": workdir / ROOT / "synthetic" / "preprocess" / "manifest.json",
        **{s: workdir / ROOT / "synthetic" / "teacher" / s / "manifest.json" for s in ("autoencoder", "curriculum", "fusion", "evaluation")},
    }
    for rule, path in stage_manifests.items():
        data = json.loads(path.read_text())
        assert data["slurm_job_id"] == by_rule[rule][0]["JobID"], (rule, data["slurm_job_id"], by_rule[rule][0])
        if rule != "evaluation":
            load_manifest(path, stage=rule)
    receipt = json.loads((workdir / ROOT / "synthetic" / "raw" / "generator.json").read_text())
    assert receipt  # generate_synthetic writes a receipt, not a stage manifest
    assert not (workdir / ROOT / ".resume" / "synthetic" / "teacher" / "autoencoder").exists(), "resume state is removed on success"


# ---------------------------------------------------------------- kills mid-training


def _slurm_log(workdir: Path, rule: str, job_id: str) -> Path:
    """The plugin's log of one job: slurm_logs/rule_RULE/<wildcard values joined by '_'>/JOBID.log."""
    (log,) = (workdir / "slurm_logs" / f"rule_{rule}").glob(f"*/{job_id}.log")
    return log


@pytest.mark.slurm
@pytest.mark.integration
def test_scancel_mid_training_then_retry_resumes(slurm_cluster, prepared_upstream, tmp_path):
    """scancel of the training job after >= 3 epochs: Snakemake sees CANCELLED, resubmits (the
    profile's retries), and attempt 2 continues from the saved epoch; nothing is half-written."""
    epochs = 8
    workdir = _copy_prepared(prepared_upstream, tmp_path / "run")
    config = _config(tmp_path, epochs=epochs, patience=100)
    p = _paths(workdir)
    env = slurm_submit_env(slurm_cluster, CANIDS_TEST_EPOCH_SLEEP_S="1.2")
    run = Background(workdir, ["--profile", str(PROFILE_DIR), str(p["manifest"].relative_to(workdir)), "--configfile", str(config)], env, timeout=400, name="run")
    try:
        _wait_for("resume state with 3 epochs", lambda: _epochs_done(p["resume"]) >= 3, timeout=180, alive=run)
        (job_id,) = [j for j, comment in _squeue_jobs(workdir) if comment.startswith("rule_autoencoder")]
        subprocess.run(["scancel", job_id], check=True, timeout=30)
        _wait_for(f"job {job_id} cancelled", lambda: any(r["JobID"] == job_id and r["State"].startswith("CANCELLED") for r in _sacct(["-j", job_id], ["JobID", "State"])), timeout=60)
        # Between the kill and the retry: no declared output half-written, resume state kept.
        _assert_no_half_written_outputs(p)
        saved = _epochs_done(p["resume"])
        assert saved >= 3 and (p["resume"] / "resume.ckpt").exists()
        rc = run.wait(timeout=360)
        assert rc == 0, run.text()[-6000:]
    finally:
        run.stop()
        _cancel_leftovers(workdir)

    rows = [r for r in _jobs_of(workdir, 2) if _rule_of(r) == "autoencoder"]
    assert [r["JobID"] for r in rows][0] == job_id and len(rows) == 2, rows
    assert rows[0]["State"].startswith("CANCELLED") and rows[1]["State"] == "COMPLETED", rows
    first_log, retry_log = (_slurm_log(workdir, "autoencoder", r["JobID"]).read_text() for r in rows)
    _assert_resumed(first_log, retry_log, saved, epochs, p["out_dir"] / "training_curves.csv")
    from canids.workflow.manifest import load_manifest

    manifest = load_manifest(p["manifest"], stage="autoencoder")
    assert manifest.data["metrics"]["epochs_run"] == epochs and manifest.data["slurm_job_id"] == rows[1]["JobID"]
    assert not p["resume"].exists(), "resume state is removed on success"


@pytest.mark.integration
def test_kill9_mid_training_then_rerun_resumes(prepared_upstream, tmp_path):
    """kill -9 of the training process (locally, --cores): the rerun continues from the saved epoch."""
    epochs = 10
    workdir = _copy_prepared(prepared_upstream, tmp_path / "run")
    config = _config(tmp_path, epochs=epochs, patience=100)
    p = _paths(workdir)
    args = ["--cores", "2", str(p["manifest"].relative_to(workdir)), "--configfile", str(config)]
    first = Background(workdir, args, _local_env(CANIDS_TEST_EPOCH_SLEEP_S="1.0"), timeout=300, name="first")
    try:
        _wait_for("resume state with 3 epochs", lambda: _epochs_done(p["resume"]) >= 3, timeout=120, alive=first)
        pid = _training_pid(workdir, "autoencoder")
        os.kill(pid, signal.SIGKILL)
        rc = first.wait(timeout=60)
    finally:
        first.stop()
    assert rc != 0 and "autoencoder" in first.text()
    first_log = p["log"].read_text()
    saved = _epochs_done(p["resume"])
    assert saved >= 3
    _assert_no_half_written_outputs(p)

    _run(workdir, args, _local_env(), timeout=300)
    _assert_resumed(first_log, p["log"].read_text(), saved, epochs, p["out_dir"] / "training_curves.csv")
    from canids.workflow.manifest import load_manifest

    assert load_manifest(p["manifest"], stage="autoencoder").data["metrics"]["epochs_run"] == epochs


def _writes_log_of(proc: Path, rule: str) -> bool:
    """Whether process ``proc`` (a /proc entry) has the job log of ``rule`` open."""
    try:
        return any(os.readlink(fd).endswith(f"/{rule}.log") for fd in (proc / "fd").iterdir())
    except OSError:
        return False


def _training_pid(workdir: Path, rule: str) -> int:
    """The python process running this working directory's `rule` job (Snakemake runs it as a child).

    Every stage rule runs workflow/scripts/stage.py; the job log it holds open tells which rule it is."""
    marker = f"{workdir}/.snakemake/scripts/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.decode(errors="replace").startswith(marker) and a.endswith(b".stage.py") for a in argv) and b"python" in argv[0] and _writes_log_of(entry, rule):
            found.append(int(entry.name))
    assert len(found) == 1, f"expected one training process, found {found}"
    return found[0]


# ---------------------------------------------------------------- time limit


@pytest.mark.slurm
@pytest.mark.integration
def test_time_limit_stops_cleanly_and_retry_resumes(slurm_cluster, prepared_upstream, tmp_path):
    """Attempt 1 (1-minute limit) stops itself before the limit (exit 75) with resume state saved;
    attempt 2 (4 minutes) continues from it and finishes.

    The margins make the self-stop certain, however fast or slow the machine: the 16 epochs take
    >= 48 s (3 s of test sleep each), but the guard keeps 1.5 x the longest epoch + 20 s free of the
    job's ~55-59 s, so at most ~35 s of training fit in attempt 1 and it must stop. SLURM could
    only kill it first if one epoch took over ~25 s (or start-up took ~a minute), and it kills at
    the next time-limit check after the limit, not exactly at it. Attempt 2 needs <= 15 epochs
    (< 1 minute) of its 4.
    """
    epochs = 16
    workdir = _copy_prepared(prepared_upstream, tmp_path / "run")
    config = _config(tmp_path, epochs=epochs, patience=100)
    profile = tmp_path / "profile"
    profile.mkdir()
    cfg = yaml.safe_load((PROFILE_DIR / "config.yaml").read_text())
    cfg["set-resources"]["autoencoder"]["runtime"] = "1 if attempt == 1 else 4"  # minutes
    (profile / "config.yaml").write_text(yaml.safe_dump(cfg))
    p = _paths(workdir)
    env = slurm_submit_env(slurm_cluster, CANIDS_TEST_EPOCH_SLEEP_S="3", CANIDS_WALLTIME_MARGIN_S="20")
    try:
        _run(workdir, ["--profile", str(profile), str(p["manifest"].relative_to(workdir)), "--configfile", str(config)], env, timeout=420)
    finally:
        _cancel_leftovers(workdir)

    rows = [r for r in _jobs_of(workdir, 2) if _rule_of(r) == "autoencoder"]
    assert len(rows) == 2, rows
    first, second = rows
    assert first["Timelimit"] == "00:01:00" and second["Timelimit"] == "00:04:00", rows
    first_slurm_log = _slurm_log(workdir, "autoencoder", first["JobID"]).read_text()
    second_slurm_log = _slurm_log(workdir, "autoencoder", second["JobID"]).read_text()
    # Attempt 1 stopped itself (not killed by SLURM at the limit: that would be TIMEOUT).
    assert first["State"] == "FAILED", (first, first_slurm_log[-4000:])
    done_first = [int(m[0]) for m in EPOCH_RE.findall(first_slurm_log)]
    assert done_first and done_first == list(range(1, len(done_first) + 1)) and len(done_first) < epochs, first_slurm_log[-4000:]
    stop = re.search(r"stopping before the job's time limit after epoch (\d+)/(\d+) .*resume state saved; exiting with 75", first_slurm_log)
    assert stop and int(stop[1]) == done_first[-1], first_slurm_log[-4000:]
    assert "non-zero exit status 75" in first_slurm_log, first_slurm_log[-4000:]
    assert second["State"] == "COMPLETED", rows
    resumed = RESUME_RE.search(second_slurm_log)
    assert resumed, second_slurm_log[-4000:]
    restored = int(resumed[4])
    assert restored == len(done_first), ("a self-stop saves the last finished epoch: none lost", done_first, resumed[0])
    assert [int(m[0]) for m in EPOCH_RE.findall(second_slurm_log)] == list(range(restored + 1, epochs + 1))
    assert _val_epochs(p["out_dir"] / "training_curves.csv") == list(range(epochs))

    from canids.workflow.manifest import load_manifest

    manifest = load_manifest(p["manifest"], stage="autoencoder")
    assert manifest.data["slurm_job_id"] == second["JobID"] and manifest.data["metrics"]["epochs_run"] == epochs


# ---------------------------------------------------------------- concurrency


def _dry_run_jobs(text: str) -> list[dict]:
    """rule blocks of a `snakemake -n` listing: rule, output/log/benchmark paths, wildcards."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        job = {"rule": head[1]}
        for key in ("output", "log", "benchmark", "wildcards"):
            m = re.search(rf"^\s+{key}: (.*)$", block, flags=re.M)
            job[key] = [x.strip() for x in m[1].split(",")] if m else []
        jobs.append(job)
    return jobs


@pytest.mark.integration
def test_two_variants_train_at_once_and_second_invocation_is_locked(prepared_upstream, tmp_path):
    """teacher and student autoencoders train at the same time (-j 2) and never share a written
    file; a second Snakemake on the same working directory is refused by the locks meanwhile."""
    workdir = _copy_prepared(prepared_upstream, tmp_path / "run")
    cfg = json.loads(json.dumps(TINY_CONFIG))
    for v in ("teacher", "student"):
        cfg["autoencoder"][v].update(epochs=4, patience=100)
    cfg["training"].update(optimize_batch_size=True, batch_size_max_trials=1)  # the tuner's temporary files too
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(cfg))
    pt, ps = _paths(workdir, "teacher"), _paths(workdir, "student")
    targets = [str(pt["manifest"].relative_to(workdir)), str(ps["manifest"].relative_to(workdir))]
    # one thread each (the rule asks two): both jobs fit the two cores at once
    args = [*targets, "--cores", "2", "-j", "2", "--set-threads", "autoencoder=1", "--configfile", str(config)]  # targets first: --set-threads takes several values

    # Declared files per job (dry run): disjoint between the two wildcard sets.
    dry = _run(workdir, ["-n", *args], _local_env(), timeout=120)
    listing = dry.stdout + dry.stderr
    jobs = [j for j in _dry_run_jobs(listing) if j["rule"] == "autoencoder"]
    assert sorted(j["wildcards"][1] for j in jobs) == ["variant=student", "variant=teacher"], listing[-3000:]
    declared = [set(j["output"] + j["log"] + j["benchmark"]) for j in jobs]
    assert declared[0] and not declared[0] & declared[1], declared

    def snapshot() -> dict[str, tuple[int, int]]:
        out = {}
        for f in workdir.rglob("*"):
            rel = f.relative_to(workdir)
            if f.is_file() and rel.parts[0] != ".snakemake":
                st = f.stat()
                out[str(rel)] = (st.st_mtime_ns, st.st_size)
        return out

    before = snapshot()
    run = Background(workdir, args, _local_env(CANIDS_TEST_EPOCH_SLEEP_S="1.5"), timeout=300, name="both")
    seen_resume: dict[str, set[str]] = {"teacher": set(), "student": set()}
    overlap = False
    try:
        _wait_for("Snakemake's lock", lambda: any((workdir / ".snakemake" / "locks").glob("*")), timeout=60, alive=run)
        second = _run(workdir, args, _local_env(), timeout=120, check=False)
        assert second.returncode != 0, "a second invocation on the same directory must be refused"
        message = second.stdout + second.stderr
        # refused before any job: by the stage locks of the root (canids.workflow.locks), which
        # are checked while the DAG is built, before Snakemake locks the working directory
        assert "is being written by another run" in message and f"working directory {workdir}" in message, message[-3000:]
        while run.proc.poll() is None:
            files = {v: {str(f.relative_to(workdir)) for f in p["resume"].glob("*")} for v, p in (("teacher", pt), ("student", ps))}
            for v in files:
                seen_resume[v] |= files[v]
            overlap |= all(any(n.endswith("resume.ckpt") for n in names) for names in files.values())
            time.sleep(0.2)
        assert run.proc.returncode == 0, run.text()[-6000:]
    finally:
        run.stop()
    assert overlap, "the two trainings never had resume state at the same time (they did not overlap)"
    assert seen_resume["teacher"] and seen_resume["student"] and not seen_resume["teacher"] & seen_resume["student"]

    after = snapshot()
    written = {path for path, sig in after.items() if before.get(path) != sig}
    owned = {
        v: (str(p["out_dir"].relative_to(workdir)) + "/", str(p["log"].relative_to(workdir)), str(p["benchmark"].relative_to(workdir)), str(p["resume"].relative_to(workdir)) + "/")
        for v, p in (("teacher", pt), ("student", ps))
    }

    def owners(path: str) -> list[str]:
        return [v for v, areas in owned.items() if any(path == a or (a.endswith("/") and path.startswith(a)) for a in areas)]

    stray = sorted(f for f in written if len(owners(f)) != 1)
    assert not stray, f"files written outside one job's own paths (shared or unowned): {stray}"
    assert any(owners(f) == ["teacher"] for f in written) and any(owners(f) == ["student"] for f in written)
    for p in (pt, ps):
        from canids.workflow.manifest import load_manifest

        load_manifest(p["manifest"], stage="autoencoder")
