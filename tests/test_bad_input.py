"""Bad input is refused before any job (or, for disk faults, when they happen) with a message that
names the file, field or value and what was expected, and nothing that looks complete is left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from canids.cli import main as cli
from canids.shape import TRAIN_SPLITS, file_name
from canids.workflow.manifest import ManifestError, load_manifest, write_manifest

from conftest import REPO, snakemake


def test_duplicate_dataset_names_are_refused_as_duplicates(tmp_path, capsys):
    spec = tmp_path / "dup.json"
    spec.write_text(json.dumps({"name": "dup", "datasets": ["hcrl_sa", "hcrl_sa"], "training_types": ["autoencoder"]}))
    assert cli(["spec", "check", "--skip-manifests", str(spec)]) == 1
    assert f"{spec}: datasets: duplicate entries [\"hcrl_sa\"]; expected each entry once" in capsys.readouterr().err


def test_a_teacher_path_with_an_unknown_placeholder_fails_the_spec_check(tmp_path, capsys):
    spec = tmp_path / "kd.json"
    spec.write_text(json.dumps({"name": "kd", "datasets": ["hcrl_sa"], "training_types": ["fusion"], "variant": "student_kd", "extra_args": {"teacher_path": "{foo}/x"}}))
    assert cli(["spec", "check", "--skip-manifests", str(spec)]) == 1
    assert f"{spec}: extra_args.teacher_path: unknown placeholder(s) {{foo}} in '{{foo}}/x'; expected only {{dataset}}, {{experiment_root}}" in capsys.readouterr().err


def _manifest_with_artifact(tmp_path: Path, relative: str) -> Path:
    stage = tmp_path / "d" / "teacher" / "autoencoder"
    stage.mkdir(parents=True)
    (stage / "model.ckpt").write_bytes(b"weights")
    manifest = stage / "manifest.json"
    write_manifest(manifest, dataset="d", stage="autoencoder", variant="teacher", artifacts={"checkpoint": stage / "model.ckpt"}, hyperparameters={}, upstream=[], data_fingerprint={"sha256": "0" * 64, "n_files": 0}, wall_time_s=0.0, metrics={})
    data = json.loads(manifest.read_text())
    data["artifacts"]["checkpoint"]["path"] = relative
    manifest.write_text(json.dumps(data))
    return manifest


@pytest.mark.parametrize("relative", ["../../../../etc/passwd", "/etc/passwd", "link.ckpt"])
def test_manifest_artifacts_must_stay_inside_the_manifest_directory(tmp_path, relative, capsys):
    manifest = _manifest_with_artifact(tmp_path, relative)
    if relative == "link.ckpt":
        (manifest.parent / "link.ckpt").symlink_to("/etc/passwd")
    with pytest.raises(ManifestError, match=rf"artifact 'checkpoint' path '{relative}' leads outside the manifest's directory .*; expected a path inside {manifest.parent.resolve()}"):
        load_manifest(manifest)
    assert cli(["verify", str(manifest)]) == 1
    assert "leads outside the manifest's directory" in capsys.readouterr().err


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 600 kB file system: preprocessing the tiny dataset needs more."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (as bin/test and CI run)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_preprocessing_names_the_file_and_leaves_nothing_that_looks_complete(tiny_disk, tmp_path):
    from canids.data.synthetic import generate
    from canids.settings import load_settings
    from canids.workflow.preprocess import run_preprocess

    data = tmp_path / "data" / "mini"
    generate(data, seed=0, scale=0.03)
    (data / "generator.json").unlink()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"datasets:\n  mini: {{format: ctt, path: {data}}}\n")
    settings = load_settings({"datasets": ["mini"], "variants": ["teacher"], "training_types": ["preprocess"], "catalog": str(catalog), "experiment_root": str(tiny_disk)})
    stage = tiny_disk / "mini" / "preprocess"
    with pytest.raises(OSError) as err:
        run_preprocess("mini", settings, stage / file_name("preprocess", "train_graphs"), stage / file_name("preprocess", "test_graphs"), stage / "manifest.json")
    assert err.value.errno == 28 and "No space left on device" in str(err.value) and str(stage / "graphs") in str(err.value)
    leftovers = [p.name for p in stage.rglob("*") if p.is_file()]
    assert not (stage / "manifest.json").exists() and leftovers == [], leftovers  # no shard, no index


@pytest.mark.integration
def test_a_window_longer_than_every_capture_is_refused_before_any_job(tiny_run, tiny_config_file, tmp_path):
    data = tmp_path / "data" / "mini"
    shutil.copytree(tiny_run / "experiment_runs/synthetic/raw", data, ignore=shutil.ignore_patterns("*.json"))
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"datasets:\n  mini: {{format: ctt, path: {data}}}\n")
    longest = max(sum(1 for _ in open(p)) for split in TRAIN_SPLITS for p in (data / split).glob("*.csv"))  # lines: header + frames
    work = tmp_path / "work"
    work.mkdir()
    proc = snakemake(["--cores", "1", "--configfile", str(tiny_config_file), "--config", f"catalog={catalog}", "datasets=[mini]", f"preprocess={{window_size: {longest + 1}}}"], work, check=False)
    assert proc.returncode != 0
    assert f"preprocess.window_size {longest + 1} is longer than every training capture of dataset 'mini'" in proc.stderr
    assert f"expected a window_size of at most {longest}" in proc.stderr
    assert not (work / "experiment_runs" / "mini").exists(), "nothing ran"


def test_a_test_split_without_captures_is_reported_and_suppress_windows_are_labelled(tmp_path):
    """Absent or empty test splits are named in the preprocess manifest (and metrics.json), not dropped
    silently; the recorded suppression episodes label test_05's windows although no frame is labelled."""
    from canids.data.synthetic import generate
    from canids.settings import load_settings
    from canids.workflow.preprocess import run_preprocess

    data = tmp_path / "data" / "mini"
    generate(data, seed=0, scale=0.03)
    shutil.rmtree(data / "test_03_known_vehicle_unknown_attack")
    for capture in (data / "test_06_masquerade").iterdir():
        capture.unlink()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"datasets:\n  mini: {{format: ctt, path: {data}}}\n")
    settings = load_settings({"datasets": ["mini"], "variants": ["teacher"], "training_types": ["preprocess"], "catalog": str(catalog), "experiment_root": str(tmp_path / "runs")})
    stage = tmp_path / "runs" / "mini" / "preprocess"
    manifest = run_preprocess("mini", settings, stage / file_name("preprocess", "train_graphs"), stage / file_name("preprocess", "test_graphs"), stage / "manifest.json")
    skipped = manifest["metrics"]["skipped_splits"]
    assert set(skipped) == {"test_03_known_vehicle_unknown_attack", "test_06_masquerade"}
    assert "not found" in skipped["test_03_known_vehicle_unknown_attack"] and "has no capture files" in skipped["test_06_masquerade"]
    suppress = manifest["metrics"]["splits"]["test_05_suppress"]
    assert suppress["n_attack_windows"] > 0 and set(suppress["attack_types"]) == {"suppress"}
