"""bench/scale.py: the scale benchmark plans the whole pipeline, and runs it at a tiny size within its memory target."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

SCALE = REPO / "bench" / "scale.py"


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["timeout", "-k", "10", str(timeout), sys.executable, str(SCALE), *args], capture_output=True, text=True, cwd=REPO)


def test_the_scale_benchmark_plans_every_rule_and_sizes_the_dataset(tmp_path):
    proc = _run("--frames", "5000000", "--dry-run", "--workdir", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"generate_synthetic", "preprocess", "autoencoder", "curriculum", "fusion", "onboarding", "evaluation"} <= set(out["jobs"])
    sys.path.insert(0, str(REPO / "bench"))
    from scale import legit_frames

    assert legit_frames(out["config"]["synthetic"]["scale"]) == pytest.approx(5_000_000, rel=1e-3)
    assert out["config"]["autoencoder"]["teacher"]["epochs"] == 1 and out["config"]["training"]["optimize_batch_size"] is False


def test_a_bad_frame_count_is_refused_naming_the_option():
    proc = _run("--frames", "0", timeout=60)
    assert proc.returncode == 2 and "--frames must be a positive number of frames, got 0" in proc.stderr


@pytest.mark.integration
def test_the_scale_benchmark_runs_every_rule_at_a_tiny_size_under_its_memory_target(tmp_path):
    proc = _run("--frames", "200000", "--workdir", str(tmp_path), "--fusion-steps", "40", timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    receipt = json.loads((tmp_path / "runs" / "synthetic" / "raw" / "generator.json").read_text())
    assert out["frames"] == receipt["n_frames"] > 200_000
    assert set(out["rules"]) == {"generate_synthetic", "preprocess", "autoencoder", "curriculum", "fusion", "onboarding", "evaluation"}
    for rule, figures in out["rules"].items():
        assert figures["wall_s"] > 0 and 0 < figures["peak_rss_mb"] < 2048, rule
    assert out["under_limit"] is True and out["peak_rss_mb"] < 2048
