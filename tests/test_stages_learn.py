"""Each stage really learns on tiny synthetic data, and the curriculum really advances."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from canids.data.synthetic import generate_captures
from canids.graphs.build import build_graphs
from canids.graphs.vocab import build_vocabulary
from canids.models.dqn import DQNConfig
from canids.stages.autoencoder import score_windows, train_autoencoder
from canids.stages.trainer import TrainSettings, seed_everything
import dataclasses

import torch

from canids.settings import CurriculumPacing, DQNArchitecture, FusionSettings, GATArchitecture, VGAEArchitecture
from canids.shape import TRAIN_SPLITS, TEST_SPLITS
from canids.stages.curriculum import difficulty, epoch_sample, pacing_fraction, train_curriculum
from canids.stages.fusion import epsilon_at, simulate_detector_failures, train_fusion
from canids.stages.fusion_apply import DetectorOutputs, detector_outputs
from canids.stages.fusion_rule import STATE_FEATURES, VGAECalibration, fusion_state
from canids.stages.metrics import auroc
from canids.workflow.preprocess import split_train_val


@pytest.fixture(scope="module")
def graphs():
    caps = generate_captures(seed=3, scale=0.05, splits=[*TRAIN_SPLITS, TEST_SPLITS[0]])
    train_parts, val_parts = [], []
    for cap in caps:
        if cap.split.startswith("train"):
            tr, va = split_train_val(cap, 0.3)
            train_parts.extend(tr)
            val_parts.append(va)
    vocab = build_vocabulary([c for c in train_parts if c.split == TRAIN_SPLITS[0]])
    test = build_graphs([c for c in caps if c.split.startswith("test")], vocab)
    return build_graphs(train_parts, vocab), build_graphs(val_parts, vocab), test, vocab.size


def vgae_arch(**changes) -> VGAEArchitecture:
    return dataclasses.replace(VGAEArchitecture(), **changes)


def gat_arch(**changes) -> GATArchitecture:
    return dataclasses.replace(GATArchitecture(), **changes)


def settings(monitor, mode, epochs=4):
    return TrainSettings(epochs=epochs, batch_size=32, learning_rate=0.003, weight_decay=0.0, patience=10, seed=0, optimize_batch_size=False, batch_size_max_trials=1, accelerator="cpu", monitor=monitor, monitor_mode=mode)


@pytest.fixture(scope="module")
def vgae(graphs, tmp_path_factory):
    train, val, _, vocab_size = graphs
    seed_everything(0)
    return train_autoencoder(train, val, vocab_size, vgae_arch(hidden=16, heads=2, layers=1, latent=16), settings("val_score", "min", 6), tmp_path_factory.mktemp("vgae"))


def _column(path, name):
    with open(path) as handle:
        return [float(r[name]) for r in csv.DictReader(handle) if r.get(name)]


def test_vgae_loss_falls_and_scores_separate_attacks(vgae, graphs, tmp_path_factory):
    train, val, test, _ = graphs
    run_dir = next(p for p in tmp_path_factory.getbasetemp().glob("vgae*"))
    losses = _column(run_dir / "metrics.csv", "val_score")
    assert losses[-1] < losses[0], losses
    scores = score_windows(vgae.model, test)
    assert auroc(test.y.numpy(), scores) > 0.7
    assert np.array_equal(scores, score_windows(vgae.model, test)), "inference must be deterministic (latent mean)"
    assert vgae.best_epoch is not None and vgae.threshold > 0


def test_curriculum_advances_and_gat_learns(vgae, graphs, tmp_path):
    train, val, test, vocab_size = graphs
    scores = score_windows(vgae.model, train)
    seed_everything(0)
    cur = CurriculumPacing(start_fraction=0.3, ramp_epochs=3, attack_share=0.3)
    result = train_curriculum(train, val, scores, vocab_size, gat_arch(hidden=16, heads=2, layers=2), settings("val_f1", "max", 8), cur, tmp_path)
    fractions = [r["fraction"] for r in result.schedule]
    assert fractions[:4] == sorted(fractions[:4]) and fractions[0] == pytest.approx(0.3) and fractions[3] == 1.0
    sizes = [r["n_windows"] for r in result.schedule]
    assert sizes[3] > sizes[0], "later epochs must see more (harder) windows"
    assert result.metrics["val_f1"] > 0.8


def test_pacing_takes_easiest_first_and_balances_attack_types():
    labels = np.array([0] * 80 + [1] * 20)
    attack_type = np.array([0] * 80 + [1] * 15 + [2] * 5)
    diff = difficulty(np.random.default_rng(0).random(100), labels)
    cfg = CurriculumPacing(start_fraction=0.25, ramp_epochs=3, attack_share=0.5, epoch_windows=40)
    sample, record = epoch_sample(0, diff, labels, attack_type, cfg, seed=0)
    assert diff[sample].max() <= 0.25 + 1e-9
    assert record["n_attack"] == 20 and (attack_type[sample] == 1).sum() == (attack_type[sample] == 2).sum() == 10
    assert [pacing_fraction(e, cfg) for e in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_fusion_agent_learns_with_decaying_exploration(vgae, graphs, tmp_path):
    train, val, test, vocab_size = graphs
    scores = score_windows(vgae.model, train)
    seed_everything(0)
    gat = train_curriculum(train, val, scores, vocab_size, gat_arch(hidden=8, heads=2, layers=1), settings("val_f1", "max", 3), CurriculumPacing(ramp_epochs=1), tmp_path).model
    normal = score_windows(vgae.model, val)[val.y.numpy() == 0]
    calibration = VGAECalibration.fit(vgae.threshold, normal)
    out = detector_outputs(vgae.model, calibration, gat, val)
    s = FusionSettings(steps=300, eval_every=50, epsilon_decay_steps=150)
    result = train_fusion(out, val, DQNConfig.of(DQNArchitecture(hidden=32, n_actions=11), state_dim=len(STATE_FEATURES)), s, seed=0, calibration=calibration)
    assert epsilon_at(1, s) > 0.9 and epsilon_at(300, s) < 0.05
    assert all("simulated_failures_f1" in point for point in result.curve)
    assert result.curve[-1]["epsilon"] < result.curve[0]["epsilon"]
    assert result.metrics["val_f1"] >= max(result.metrics["val_f1_gat"], result.metrics["val_f1_vgae"]) - 0.05
    assert result.metrics["val_f1"] > 0.7


def test_simulated_failures_make_exactly_one_detector_wrong(graphs):
    _, val, _, _ = graphs
    y = val.y.numpy()
    calibration = VGAECalibration(threshold=30.0, log_scale=1.0)
    score = torch.as_tensor(np.where(y == 1, 1000.0, 1.0))
    p_gat = torch.as_tensor(np.where(y == 1, 0.99, 0.01))
    p_vgae = calibration.probability(score).float()
    out = DetectorOutputs(score.numpy(), p_vgae.numpy(), p_gat.numpy(), fusion_state(score, p_vgae, p_gat, 30.0).numpy(), np.ones(len(y)))
    sim, labels = simulate_detector_failures(out, val, np.arange(len(val)), calibration, 0.5, np.random.default_rng(0))
    gat_right = (sim.p_gat >= 0.5) == (labels == 1)
    vgae_right = (sim.p_vgae >= 0.5) == (labels == 1)
    n_att, n_norm = round(0.5 * y.sum()), round(0.5 * (y == 0).sum())
    assert len(labels) == 2 * n_att + n_norm
    assert (gat_right != vgae_right).all(), "every simulated window has exactly one detector wrong"
    attack = labels == 1
    assert (~gat_right[attack]).sum() == (~vgae_right[attack]).sum() == n_att, "each detector misses attacks equally often"
    assert (~gat_right[~attack]).sum() == n_norm and vgae_right[~attack].all(), "false alarms are the GAT's only"
    assert sim.state.shape == (len(labels), len(STATE_FEATURES))


def test_non_finite_loss_stops_training_with_a_clear_error(graphs, tmp_path):
    from canids.stages.callbacks import NonFiniteLossError

    train, val, _, vocab_size = graphs
    poisoned = dataclasses.replace(train, x=torch.full_like(train.x, float("nan")))
    with pytest.raises(NonFiniteLossError, match="loss became nan at epoch 1"):
        train_autoencoder(poisoned, val, vocab_size, vgae_arch(hidden=8, heads=1, layers=1, latent=4), settings("val_score", "min", 2), tmp_path)


def test_fusion_killed_at_any_point_resumes_and_ends_with_the_policy_of_an_uninterrupted_run(vgae, graphs, tmp_path):
    """kill -9 during DQN training: the next start continues from the last validation's save
    (at most one eval_every interval lost) and the result equals the uninterrupted run's."""
    import json
    import os
    import pickle
    import signal
    import subprocess
    import sys
    import time

    train, val, test, vocab_size = graphs
    scores = score_windows(vgae.model, train)
    seed_everything(0)
    gat = train_curriculum(train, val, scores, vocab_size, gat_arch(hidden=8, heads=2, layers=1), settings("val_f1", "max", 2), CurriculumPacing(ramp_epochs=1), tmp_path / "gat").model
    calibration = VGAECalibration.fit(vgae.threshold, score_windows(vgae.model, val)[val.y.numpy() == 0])
    out = detector_outputs(vgae.model, calibration, gat, val)
    s = FusionSettings(steps=400, eval_every=40, epsilon_decay_steps=200, target_update=30)
    cfg = DQNConfig.of(DQNArchitecture(hidden=16, layers=1, n_actions=7), state_dim=len(STATE_FEATURES))
    straight = train_fusion(out, val, cfg, s, seed=3, calibration=calibration)

    inputs = tmp_path / "inputs.pkl"
    inputs.write_bytes(pickle.dumps((out, val, cfg, s, calibration)))
    resume = tmp_path / "resume"
    code = (
        # the same intra-op threads as this process (an earlier test may have set them): sums in
        # another order differ in the last bits, and a resumed job runs with its rule's threads
        f"import pickle, sys, torch; torch.set_num_threads({torch.get_num_threads()}); from canids.stages.fusion import train_fusion\n"
        f"out, val, cfg, s, cal = pickle.loads(open({str(inputs)!r}, 'rb').read())\n"
        f"train_fusion(out, val, cfg, s, seed=3, calibration=cal, resume_dir=__import__('pathlib').Path({str(resume)!r}))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "CANIDS_TEST_EPOCH_SLEEP_S": "0.5"}, stderr=subprocess.PIPE)
    try:
        while True:  # wait for two saved intervals, then kill without warning
            try:
                done = json.loads((resume / "resume.json").read_text())["steps_done"]
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= 80:
                break
            assert child.poll() is None, child.stderr.read().decode()[-3000:]
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    saved = json.loads((resume / "resume.json").read_text())["steps_done"]
    assert saved % s.eval_every == 0 and saved < s.steps
    resumed = train_fusion(out, val, cfg, s, seed=3, calibration=calibration, resume_dir=resume)
    assert resumed.curve == straight.curve  # every validation point, before and after the kill, identical
    assert all(torch.equal(a, b) for a, b in zip(resumed.q_net.state_dict().values(), straight.q_net.state_dict().values()))
    assert resumed.metrics == straight.metrics
