"""Fault injection: kill, race, starve and corrupt the pipeline, then check nothing is silently wrong.

Each fault hits a tiny synthetic pipeline (every stage really trains) and is followed by a plain
rerun (the recovery a user would try). Faults, chosen at random (``--seed``):

* ``kill:<rule>``: kill -9 of the whole run at a random instant while ``<rule>`` runs (every
  rule, preprocess and evaluation included); a changed setting makes the rule rebuild first;
* ``race``: a second run from another working directory starts while the first trains;
* ``full_disk``: the root on a file system too small for the run; the rerun gets room;
* ``read_only``: the root mounted read-only while a rebuild is due; the rerun gets it writable;
* ``truncate`` / ``flip``: an artifact or a manifest of a finished root cut short, or one byte flipped.

After the recovery, every stage result under the root is checked from first principles, not
with the pipeline's own currency code: its artifacts match its manifest's sha256 (what
``canids verify`` says), and the manifest describes how it was made: the settings of the run
that made it last, the current code, the upstream manifests as they are on disk now, a
training curve with each epoch once (not two runs mixed). A result that passes ``canids
verify`` but fails any of that, or a dry run that says "Nothing to be done" while something
is not current, is **silently wrong**. Prints one JSON line: faults injected, recovered (the
rerun succeeded and everything checks), silently wrong, with one record per fault.

    python bench/faults.py [--faults 50] [--seed 0]

Needs root for the full-disk and read-only faults (tmpfs and bind mounts); without it those
are left out and said so.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
RULES = ("generate_synthetic", "preprocess", "autoencoder", "curriculum", "fusion", "onboarding", "evaluation")
#: The tiny pipeline every fault hits; CHANGES make one rule (and what follows) rebuild.
TINY = {
    "synthetic": {"seed": 0, "scale": 0.03, "vehicles": 2},
    "training": {"accelerator": "cpu", "optimize_batch_size": False},
    "autoencoder": {"teacher": {"epochs": 3, "patience": 10, "model": {"hidden": 8, "heads": 2, "layers": 1, "latent": 8}}},
    "curriculum": {"teacher": {"epochs": 3, "patience": 10, "model": {"hidden": 8, "heads": 2, "layers": 1}, "curriculum": {"ramp_epochs": 1}}},
    "fusion": {"teacher": {"steps": 200, "eval_every": 20, "epsilon_decay_steps": 100, "model": {"hidden": 16, "layers": 1, "n_actions": 5}}},
}
CHANGES = {
    "generate_synthetic": ("synthetic", "seed"),
    "preprocess": ("preprocess", "val_fraction"),
    "autoencoder": ("autoencoder.teacher", "learning_rate"),
    "curriculum": ("curriculum.teacher", "learning_rate"),
    "fusion": ("fusion.teacher", "learning_rate"),
    "onboarding": None,  # onboarding and evaluation have no setting: their outputs are deleted instead
    "evaluation": None,
}
SLOW = {"CANIDS_TEST_EPOCH_SLEEP_S": "1.0"}  # epochs of >= 1 s: a kill lands inside training


class Campaign:
    def __init__(self, base: Path, rng: random.Random) -> None:
        self.base, self.rng = base, rng
        self.config = json.loads(json.dumps(TINY))
        self.root = base / "root"
        self.work = base / "work"
        self.work.mkdir(parents=True)
        self.n = 0
        self.pending = None  # what to do after checking a fault's state, before the rerun
        self.history: list[dict] = []  # the settings of every configuration a run used
        self.detail = ""  # what the fault did, for the record
        self.moved: Path | None = None

    # ------------------------------------------------------------------ running
    def config_file(self) -> Path:
        path = self.base / "config.json"
        path.write_text(json.dumps({"name": "faults", "datasets": ["synthetic"], "training_types": ["evaluation"], "variants": ["teacher"], **self.config}))
        return path

    def cmd(self, work: Path, extra: list[str] = ()) -> list[str]:
        return ["timeout", "-k", "10", "900", SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(work), "--cores", "2", *extra, "--configfile", str(self.config_file())]

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("CAN_EXPERIMENT_ROOT", *SLOW)}
        return {**env, "CAN_EXPERIMENT_ROOT": str(self.root), "PYTHONUNBUFFERED": "1", **extra}

    def run(self, work: Path | None = None, extra: list[str] = (), **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(work or self.work, list(extra)), capture_output=True, text=True, env=self.env(**env), cwd=work or self.work)

    def background(self, work: Path, **env: str) -> subprocess.Popen:
        log = open(self.base / f"bg{self.n}.log", "w")
        return subprocess.Popen(self.cmd(work), stdout=log, stderr=subprocess.STDOUT, env=self.env(**env), cwd=work, start_new_session=True)

    def change(self, rule: str) -> None:
        """Change one setting of ``rule`` (or remove evaluation's outputs) so that it rebuilds."""
        if CHANGES[rule] is None:
            shutil.rmtree(self.root / "synthetic/teacher" / rule, ignore_errors=True)
            return
        section, key = CHANGES[rule]
        node = self.config
        for part in section.split("."):
            node = node.setdefault(part, {})
        if key == "seed":
            node[key] = int(node.get(key, 0)) + 1
        elif key == "val_fraction":
            node[key] = round(0.15 + 0.1 * self.rng.random(), 3)
        else:
            node[key] = round(10 ** self.rng.uniform(-3.3, -2.3), 6)
        self.history.append(self.resolved(self.config))

    # ------------------------------------------------------------------ faults
    def kill(self, rule: str) -> str:
        self.change(rule)
        log = self.root / "synthetic/logs" / ("teacher/" if rule in RULES[2:] else "") / f"{rule}.log"
        started = log.stat().st_mtime if log.exists() else 0.0
        proc = self.background(self.work, **SLOW)
        deadline = time.monotonic() + 600
        while not (log.exists() and log.stat().st_mtime > started) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(self.rng.uniform(0.0, 3.0))  # a random instant of the rule's job (or just after)
        running = proc.poll() is None
        if running:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.detail = "killed mid-run" if running else "the run had finished"
        return f"kill:{rule}"

    def race(self) -> str:
        self.change(self.rng.choice(RULES[2:5]))
        other = self.base / f"other{self.n}"
        other.mkdir()
        first = self.background(self.work, **SLOW)
        time.sleep(self.rng.uniform(1.0, 8.0))
        second = self.run(other)
        first.wait()
        refused = "is being written by another run" in second.stdout + second.stderr
        if second.returncode != 0 and not refused and first.returncode == 0:
            raise AssertionError(f"the second run failed for another reason:\n{second.stderr[-2000:]}")
        self.detail = "second run refused, naming the first" if refused else f"second run rc {second.returncode}, first rc {first.returncode}"
        return "race"

    def corrupt(self, how: str) -> str:
        if not (self.root / "synthetic/teacher/evaluation/manifest.json").exists():
            self.recover()
        files = [p for p in (self.root / "synthetic").rglob("*") if p.is_file() and p.parent.name != "logs" and "benchmarks" not in p.parts and p.suffix in (".json", ".pt", ".ckpt", ".csv")]
        victim = self.rng.choice(sorted(files))
        data = bytearray(victim.read_bytes())
        if how == "truncate":
            victim.write_bytes(bytes(data[: self.rng.randrange(max(1, len(data)))]))
        else:
            i = self.rng.randrange(len(data))
            data[i] ^= 1 << self.rng.randrange(8)
            victim.write_bytes(bytes(data))
        return f"{how}:{victim.relative_to(self.root)}"

    def full_disk(self) -> str:
        """The root moved onto a file system with little room left: the rebuild fails with ENOSPC.
        The check looks at the root as the failure left it; the rerun (recovery) gets room."""
        self.change(self.rng.choice(RULES[1:5]))
        used = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        small = self.base / f"small{self.n}"
        small.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={used + 256 * 1024}", "tmpfs", str(small)], check=True)
        shutil.copytree(self.root, small / "root", symlinks=True)
        self.moved = self.root
        self.root = small / "root"
        failed = self.run()
        self.detail = "ENOSPC named: " + next((line.strip() for line in (failed.stdout + failed.stderr).splitlines() if "No space left" in line), f"rc {failed.returncode}")[:200]
        self.pending = self._give_room
        return "full_disk"

    def _give_room(self) -> None:
        """After the check of the failed state: room for the rerun, then the root goes home."""
        subprocess.run(["mount", "-o", "remount,size=2g", str(self.root.parent)], check=True)

    def _home(self) -> None:
        if getattr(self, "moved", None) is not None:
            small = self.root.parent
            shutil.rmtree(self.moved)
            shutil.copytree(self.root, self.moved, symlinks=True)
            self.root, self.moved = self.moved, None
            subprocess.run(["umount", "-l", str(small)], check=False)

    def read_only(self) -> str:
        self.change(self.rng.choice(RULES[1:5]))
        subprocess.run(["mount", "--bind", "-o", "ro", str(self.root), str(self.root)], check=True)
        try:
            proc = self.run()
            if proc.returncode == 0:
                raise AssertionError("a run that must rebuild succeeded on a read-only root")
            self.detail = next((line.strip() for line in (proc.stdout + proc.stderr).splitlines() if "Read-only" in line), f"rc {proc.returncode}")[:200]
        finally:
            subprocess.run(["umount", "-l", str(self.root)], check=False)
        return "read_only"

    # ------------------------------------------------------------------ recovery and checks
    def recover(self) -> subprocess.CompletedProcess:
        return self.run()

    def check(self) -> list[str]:
        """What is silently wrong under the root (see the module docstring); [] when nothing.

        A result may be stale (made with earlier settings, on an earlier upstream): that is
        fine as long as its manifest says so truthfully and the next run rebuilds it. It is
        silently wrong when it looks complete (its artifacts match its manifest) and its
        manifest lies (settings of no run, other code, a curve mixing runs), or when it is not
        current and a dry run would not rebuild it.
        """
        import re

        from canids.workflow.code_digest import stage_code_digest

        current_settings = self.resolved(self.config)
        dry = subprocess.run(self.cmd(self.work, ["-n"]), capture_output=True, text=True, env=self.env(), cwd=self.work)
        scheduled = set(re.findall(r"^rule (\w+):", dry.stdout, flags=re.M)) if dry.returncode == 0 else set(RULES)
        wrong: list[str] = []
        stages = {"preprocess": self.root / "synthetic/preprocess"} | {s: self.root / "synthetic/teacher" / s for s in RULES[2:]}
        current: dict[str, bool] = {}
        for stage, directory in stages.items():
            manifest = directory / "manifest.json"
            if not manifest.exists():
                current[stage] = False
                continue
            try:
                data = json.loads(manifest.read_text())
                complete = all((directory / a["path"]).is_file() and hashlib.sha256((directory / a["path"]).read_bytes()).hexdigest() == a["sha256"] for a in data["artifacts"].values())
            except (ValueError, KeyError, TypeError, OSError):
                complete = False
            if not complete:  # canids verify refuses it: not something that looks complete
                current[stage] = False
                continue
            recorded = {k: v for k, v in data["hyperparameters"].items() if k not in ("batch_size_used", "decision_rule")}
            if not any(recorded == past[stage] for past in self.history):
                wrong.append(f"{stage}: its manifest records settings no run used")
            if data.get("code_digest") != stage_code_digest(stage):
                wrong.append(f"{stage}: its manifest records other code")
            curves = directory / "training_curves.csv"
            if stage in ("autoencoder", "curriculum") and curves.exists():
                with open(curves, newline="") as handle:
                    epochs = [int(float(r["epoch"])) for r in csv.DictReader(handle) if r.get("epoch") and any(k.startswith("val_") and r[k] for k in r)]
                if epochs != list(range(len(epochs))):
                    wrong.append(f"{stage}: its training curve mixes runs or repeats epochs ({epochs})")
            upstream_ok = all((stages[r["stage"]] / "manifest.json").exists() and hashlib.sha256((stages[r["stage"]] / "manifest.json").read_bytes()).hexdigest() == r["sha256"] and current.get(r["stage"], False) for r in data["upstream"])
            current[stage] = recorded == current_settings[stage] and upstream_ok
            if not current[stage] and stage not in scheduled:
                wrong.append(f"{stage}: not current, and a dry run would not rebuild it")
        return wrong

    def resolved(self, config: dict) -> dict:
        """The settings each stage resolves for a campaign config (what its manifest must record)."""
        import yaml
        from snakemake.utils import update_config

        from canids.settings import load_settings, stage_settings

        base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
        update_config(base, json.loads(json.dumps(config)))
        settings = load_settings(base)
        return {stage: stage_settings(settings, stage, None if stage == "preprocess" else "teacher") for stage in ("preprocess", *RULES[2:])}

    def settle(self) -> subprocess.CompletedProcess:
        """The recovery a user makes: a plain rerun, or first the command its error names."""
        rerun = self.recover()
        text = rerun.stdout + rerun.stderr
        if rerun.returncode != 0 and "--unlock" in text and "cannot be locked" in text:
            subprocess.run(self.cmd(self.work, ["--unlock"]), capture_output=True, env=self.env(), cwd=self.work)
            rerun = self.recover()
        return rerun


def campaign(n_faults: int, seed: int, base: Path, kinds: list[str] | None = None) -> dict:
    rng = random.Random(seed)
    c = Campaign(base, rng)
    c.history.append(c.resolved(c.config))
    setup = c.run()
    if setup.returncode != 0:
        raise SystemExit(f"the clean run failed:\n{setup.stderr[-3000:]}")
    can_mount = os.geteuid() == 0
    menu = kinds or [*(f"kill:{r}" for r in RULES), "race", "truncate", "flip", *(["full_disk", "read_only"] if can_mount else [])]
    records, recovered, silent = [], 0, 0
    for i in range(n_faults):
        c.n = i
        kind = menu[i % len(menu)] if i < len(menu) else rng.choice(menu)
        t0 = time.perf_counter()
        c.detail = ""
        if kind.startswith("kill:"):
            what = c.kill(kind.split(":", 1)[1])
        elif kind in ("truncate", "flip"):
            what = c.corrupt(kind)
        else:
            what = getattr(c, kind)()
        wrong = c.check()  # the state the fault left: nothing may look complete and be wrong
        if c.pending is not None:
            c.pending()
            c.pending = None
        rerun = c.settle()
        after = c.check()
        wrong += after
        c._home()
        dry = subprocess.run(c.cmd(c.work, ["-n"]), capture_output=True, text=True, env=c.env(), cwd=c.work)
        ok = rerun.returncode == 0 and not wrong and "Nothing to be done" in dry.stdout
        recovered += ok
        silent += bool(wrong)
        records.append({"fault": what, "detail": c.detail, "recovered": ok, "silently_wrong": wrong, "seconds": round(time.perf_counter() - t0, 1), **({"rerun_error": rerun.stderr[-400:]} if rerun.returncode else {})})
        print(json.dumps(records[-1]), file=sys.stderr, flush=True)
    return {"faults": n_faults, "recovered": recovered, "silently_wrong": silent, "left_out": [] if can_mount else ["full_disk", "read_only (need root)"], "records": records}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="canids-faults-") as tmp:
        result = campaign(args.faults, args.seed, Path(tmp))
    summary = {k: v for k, v in result.items() if k != "records"}
    targets = {"faults >= 50": result["faults"] >= 50, "silently wrong == 0": result["silently_wrong"] == 0, "recovered == faults": result["recovered"] == result["faults"]}
    print(json.dumps({"benchmark": "faults", **summary, "targets": targets, "kinds": sorted({r["fault"].split(":")[0] for r in result["records"]})}))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
