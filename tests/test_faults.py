"""A small fault-injection campaign (bench/faults.py runs the full one): kill -9 mid-training,
two runs racing on one root, a flipped byte. Every fault is recovered by a plain rerun (or the
command its error names) and nothing is ever silently wrong."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import REPO


@pytest.mark.integration
def test_faults_are_recovered_and_nothing_is_silently_wrong(tmp_path):
    spec = importlib.util.spec_from_file_location("faults", REPO / "bench" / "faults.py")
    faults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(faults)
    kinds = ["kill:preprocess", "kill:curriculum", "kill:fusion", "race", "flip", "truncate"]
    result = faults.campaign(len(kinds), seed=5, base=tmp_path, kinds=kinds)
    assert result["silently_wrong"] == 0, result["records"]
    assert result["recovered"] == len(kinds), result["records"]
