"""Every `snakemake` and `canids` command the documentation shows runs, so docs cannot drift.

The commands are read from the Markdown files themselves (fenced shell blocks, and inline code
that is a whole command), not copied here. Each runs in a copy of the tiny pipeline's working
directory. Snakemake commands that would train run as dry runs (`-n` added); datasets this
machine lacks are tiny stand-ins (`fake_data_root`); placeholders the docs use for the user's
own files get real files of the tiny run (`PLACEHOLDERS`). Benchmarks and bin/ are exempt.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SNAKEMAKE

DOCS = ["README.md", "config/README.md", "jobs/README.md", "profiles/slurm/README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
#: Snakemake options that do not run jobs: the command runs as written.
NO_JOBS = {"-n", "--dry-run", "--dryrun", "--lint", "--unlock", "--report", "--summary", "--detailed-summary", "--list-rules"}
#: What the docs write for the user's own files, and the tiny run's stand-in (paths relative to its working directory).
PLACEHOLDERS = {
    "jobs/X.json": "{repo}/jobs/example_pipeline.json",
    "jobs/x.json": "{repo}/jobs/example_pipeline.json",
    "jobs/my_job.json": "{repo}/jobs/example_pipeline.json",
    "FILE...": "{repo}/jobs/example_pipeline.json",
    "jobs/example_pipeline.json": "{repo}/jobs/example_pipeline.json",
    # its datasets are not on this machine: the same spec for the synthetic run, pinned by a bundle of it
    "jobs/example_fusion_pinned.json": "{work}/example_fusion_pinned.json",
    # a study of hcrl_sa: the same study of the synthetic set, whose seed 0 the tiny run has finished
    "jobs/study_hcrl_sa.json": "{work}/study_synthetic.json",
    "profiles/slurm": "{repo}/profiles/slurm",
    "my_fleet": "synthetic",
    "capture.csv": "{capture}",
    "attack-free.csv": "{work}/experiment_runs/synthetic/raw/onboarding_unknown_vehicle/attack-free-B-1.csv",
}
#: canids commands read a finished run: the tiny run has the synthetic teacher under experiment_runs.
RUN_STANDINS = {"hcrl_sa": "synthetic", "student_kd": "teacher", "student": "teacher", "/scratch/runs": "experiment_runs"}


def _commands_in(text: str) -> list[str]:
    found, fence = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
            continue
        if fence in ("bash", "sh", "console", ""):
            command = re.split(r"\s+#", stripped, maxsplit=1)[0].strip()
            if re.match(r"^(snakemake|canids)\b", command):
                found.append(command)
        elif fence is None:
            # inline: whole commands only (`canids export-detector` alone names a subcommand in prose)
            found += [c for c in re.findall(r"`((?:snakemake|canids) [^`]*)`", line) if len(shlex.split(c)) > (2 if c.startswith("canids") else 1)]
    return found


def documented_commands() -> list[tuple[str, str]]:
    seen, out = set(), []
    for doc in DOCS:
        for command in _commands_in((REPO / doc).read_text()):
            if command not in seen:
                seen.add(command)
                out.append((doc, command))
    return out


COMMANDS = documented_commands()


def test_the_docs_show_commands_of_both_tools():
    tools = {shlex.split(c)[0] for _, c in COMMANDS}
    assert tools == {"snakemake", "canids"} and len(COMMANDS) >= 20, COMMANDS


@pytest.fixture(scope="module")
def workdir(tiny_run, tmp_path_factory) -> Path:
    import json

    work = tmp_path_factory.mktemp("docs")
    shutil.copytree(tiny_run / "experiment_runs", work / "experiment_runs")
    spec = json.loads((REPO / "jobs" / "example_fusion_pinned.json").read_text())
    bundle = work / "pins" / "synthetic_manifest.json"
    subprocess.run([sys.executable, "-m", "canids.cli", "export-manifest", "--dataset", "synthetic", "--variant", "teacher", "--root", str(work / "experiment_runs"), "--out", str(bundle), "--relative-to-root"], check=True, capture_output=True)
    spec.update(datasets=["synthetic"], dependency_manifests={"default": str(work / "pins" / "{dataset}_manifest.json")})
    (work / "example_fusion_pinned.json").write_text(json.dumps(spec))
    study = json.loads((REPO / "jobs" / "study_hcrl_sa.json").read_text())
    (work / "study_synthetic.json").write_text(json.dumps({**study, "name": "study_synthetic", "datasets": ["synthetic"]}))
    return work


def _fill(word: str, work: Path) -> str:
    capture = next((work / "experiment_runs/synthetic/raw/test_01_known_vehicle_known_attack").glob("*.csv"))
    for placeholder, value in PLACEHOLDERS.items():
        if word == placeholder or word.startswith(placeholder + "/") or placeholder == "my_fleet" and placeholder in word:
            word = word.replace(placeholder, value.format(repo=REPO, capture=capture, work=work))
    if word.startswith(("jobs/", "docs/")) and (REPO / word).is_file():  # the project's own files
        return str(REPO / word)
    return word


@pytest.mark.integration
@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[f"{d}: {c}" for d, c in COMMANDS])
def test_documented_command_runs(doc, command, workdir, fake_data_root, tmp_path):
    words = [_fill(w, workdir) for w in shlex.split(command)]
    env = {k: v for k, v in __import__("os").environ.items() if k != "CAN_EXPERIMENT_ROOT"}
    env.update(CAN_DATA_ROOT=str(fake_data_root), PYTHONUNBUFFERED="1", **{f"CANIDS_SLURM_{v}": "" for v in ("PARTITION", "GPU_PARTITION", "ACCOUNT", "GPU_MODEL", "RUNTIME_SCALE", "MEM_SCALE")})
    if words[0] == "snakemake":
        args = words[1:]
        if not NO_JOBS & set(args):
            args = ["-n", *args]
        if "--report" in args:  # writes a file: into this test's own directory
            args[args.index("--report") + 1] = str(tmp_path / "report.html")
        cmd = ["timeout", "-k", "10", "600", SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), *args]
    else:
        args = [_run_standin(w) for w in words[1:]]
        args = [str(tmp_path / Path(a).name) if a.endswith(".npz") else a for a in args]
        if args[:1] == ["detect"] and args[1].endswith(".npz"):
            subprocess.run([sys.executable, "-m", "canids.cli", "export-detector", "experiment_runs/synthetic/teacher", "--out", args[1]], cwd=workdir, env=env, check=True, capture_output=True)
        cmd = ["timeout", "-k", "10", "600", sys.executable, "-m", "canids.cli", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{doc}: `{command}` ran as {cmd[4:]} and failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"


def _run_standin(word: str) -> str:
    parts = word.split("/")
    return "/".join(RUN_STANDINS.get(part, part) for part in parts) if word != "/scratch/runs" else RUN_STANDINS[word]
