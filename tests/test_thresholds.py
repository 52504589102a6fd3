"""Decision thresholds under a false-alarm budget (canids.stages.thresholds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canids.stages.fusion_rule import F1_OPTIMAL, fused_decision, fused_score
from canids.stages.thresholds import DecisionThresholds, budget_threshold


def test_no_alarm_allowed_puts_the_threshold_halfway_above_the_highest_normal_score():
    normal = np.array([0.1, 0.7, 0.9, 0.2])
    everything = np.r_[normal, [0.95, 0.99]]
    tau = budget_threshold(normal, everything, hours=0.05, budget_per_hour=10)  # 0.5 alarm allowed: none
    assert tau == (0.9 + 0.95) / 2
    assert not (normal >= tau).any() and (everything[4:] >= tau).all()


def test_the_budget_allows_its_share_of_alarms_and_never_splits_ties():
    normal = np.array([0.99, 0.98, 0.97, 0.6, 0.1])
    assert budget_threshold(normal, normal, hours=0.2, budget_per_hour=10) == (0.97 + 0.98) / 2  # 2 alarms allowed
    tied = np.array([0.9, 0.9, 0.9, 0.1])
    tau = budget_threshold(tied, tied, hours=0.2, budget_per_hour=10)  # 2 allowed, 3 tied: none of them
    assert (tied >= tau).sum() == 0


def test_the_budget_never_lowers_a_threshold_below_the_f1_optimal_one():
    normal = np.array([0.1, 0.2, 0.3])
    assert budget_threshold(normal, normal, hours=0.01, budget_per_hour=1) == F1_OPTIMAL
    assert budget_threshold(normal, normal, hours=100, budget_per_hour=10) == F1_OPTIMAL  # more alarms allowed than windows


def test_a_normal_window_scored_as_high_as_anything_leaves_nothing_flagged():
    normal = np.array([1.0, 0.2])
    tau = budget_threshold(normal, np.r_[normal, 0.8], hours=0.01, budget_per_hour=10)
    assert tau > 1.0


def test_torch_and_the_numpy_runtime_decide_alike_at_a_budget_threshold():
    rng = np.random.default_rng(0)
    p_gat, p_vgae = rng.random(2000).astype(np.float32), rng.random(2000).astype(np.float32)
    alpha = rng.choice(np.linspace(0, 1, 5), 2000)
    fused = fused_score(torch.as_tensor(alpha, dtype=torch.float32), torch.as_tensor(p_gat), torch.as_tensor(p_vgae)).numpy()
    normal = rng.random(2000) < 0.9
    t = DecisionThresholds.for_budget(fused, p_vgae, p_gat, normal, hours=0.1, budget_per_hour=10)
    assert t.fusion > F1_OPTIMAL and (fused[normal] >= t.fusion).sum() <= 1
    by_torch = fused_decision(torch.as_tensor(alpha, dtype=torch.float32), torch.as_tensor(p_gat), torch.as_tensor(p_vgae), t.fusion).numpy()
    by_scalar = np.array([fused_decision(float(a), float(g), float(v), t.fusion) for a, g, v in zip(alpha, p_gat, p_vgae)])
    assert np.array_equal(by_torch, by_scalar)


def test_checkpoints_without_thresholds_decide_at_the_f1_optimal_point():
    assert DecisionThresholds.from_payload({}) == DecisionThresholds(F1_OPTIMAL, F1_OPTIMAL, F1_OPTIMAL, None)
    t = DecisionThresholds(0.7, 0.8, 0.9, 10.0)
    assert DecisionThresholds.from_payload({"decision_thresholds": t.to_dict()}) == t


def test_the_vgae_threshold_comes_from_normal_traffic_whatever_the_validation_attacks():
    from canids.stages.autoencoder import NORMAL_QUANTILE, TRANSFER_MARGIN, choose_threshold

    rng = np.random.default_rng(0)
    normal = np.exp(rng.normal(0.0, 0.1, 2000))  # error ratios around 1, log spread 0.1
    quiet = np.exp(rng.normal(0.2, 0.05, 400))  # a common attack moving scores by two spreads
    loud = np.exp(rng.normal(3.0, 0.3, 40))
    scores = np.r_[normal, quiet, loud]
    labels = np.r_[np.zeros(len(normal)), np.ones(len(quiet) + len(loud))].astype(int)
    logs = np.log(normal)
    spread = (np.quantile(logs, 0.84) - np.quantile(logs, 0.16)) / 2
    floor = np.quantile(normal, NORMAL_QUANTILE) * np.exp(TRANSFER_MARGIN * spread)
    tau = choose_threshold(scores, labels)
    assert tau == floor  # the F1-optimal threshold would sit among the quiet attack's scores
    shifted = normal * np.exp(0.1)  # the same traffic, one spread higher: another vehicle
    assert (shifted >= tau).mean() < 0.005 and (loud >= tau).all()
    # a loud attack alone does not raise it (the F1-optimal gap's middle would sit far above)
    only_loud = np.r_[normal, loud]
    tau_loud = choose_threshold(only_loud, np.r_[np.zeros(len(normal)), np.ones(len(loud))].astype(int))
    assert tau_loud == floor < np.sqrt(loud.min() * normal.max()) / 2
    # no attack in validation: the floor
    assert choose_threshold(normal, np.zeros(len(normal), int)) == floor


def test_a_widely_spread_normal_does_not_push_the_vgae_threshold_past_quiet_attacks():
    """A small model's normal scores spread widely; two of its spreads would put the threshold
    decades above normal traffic. The margin stops at MAX_TRANSFER_FACTOR above the normal
    0.995 quantile, still above normal traffic that moved by several spreads."""
    from canids.stages.autoencoder import MAX_TRANSFER_FACTOR, NORMAL_QUANTILE, TRANSFER_MARGIN, choose_threshold, robust_log_spread

    rng = np.random.default_rng(3)
    normal = np.exp(rng.normal(0.0, 1.8, 4000))  # robust log spread ~1.8: e^3.6 = 37x margin uncapped
    q = np.quantile(normal, NORMAL_QUANTILE)
    quiet = q * np.exp(rng.uniform(np.log(25), np.log(35), 300))
    labels = np.r_[np.zeros(len(normal)), np.ones(len(quiet))].astype(int)
    tau = choose_threshold(np.r_[normal, quiet], labels)
    uncapped = q * np.exp(TRANSFER_MARGIN * robust_log_spread(normal))
    assert uncapped > q * MAX_TRANSFER_FACTOR
    assert tau == pytest.approx(q * MAX_TRANSFER_FACTOR)
    assert (quiet >= tau).all()  # the uncapped margin would have missed most of them
    assert (quiet >= uncapped).mean() < 0.2
    assert (normal * 10 >= tau).mean() <= 1 - NORMAL_QUANTILE  # normal traffic 10x higher: still within the tail left above


def test_a_heavy_normal_tail_does_not_push_the_vgae_threshold_past_the_attacks():
    from canids.stages.autoencoder import choose_threshold

    rng = np.random.default_rng(2)
    body = np.exp(rng.normal(0.0, 0.3, 1800))
    tail = np.exp(rng.uniform(1.0, 4.0, 200))  # a tenth of normal windows up to 55x the median
    normal = np.r_[body, tail]
    attacks = np.exp(rng.uniform(5.0, 7.0, 200))  # 150-1100x the median: caught at the gap's middle
    scores = np.r_[normal, attacks]
    labels = np.r_[np.zeros(len(normal)), np.ones(len(attacks))].astype(int)
    tau = choose_threshold(scores, labels)
    assert (attacks >= tau).all() and not (normal >= tau).any()
    # three standard deviations of the log scores over the 0.995 quantile would miss most of them
    std_floor = np.quantile(normal, 0.995) * np.exp(3 * np.std(np.log(normal)))
    assert (attacks >= std_floor).mean() < 0.6


def test_the_fusion_is_ranked_by_the_score_it_decides_with():
    from canids.stages.evaluation import at_thresholds, split_metrics
    from canids.stages.evaluation import SplitPredictions
    from canids.stages.fusion_apply import DetectorOutputs

    rng = np.random.default_rng(1)
    n = 400
    y = (np.arange(n) % 4 == 0).astype(np.int64)
    p_vgae = np.where(y == 1, rng.uniform(0.7, 1.0, n), rng.uniform(0.3, 0.6, n))  # ranks perfectly
    p_gat = np.where(y == 1, rng.uniform(0.0, 0.1, n), rng.uniform(0.2, 0.3, n))  # wrong: a vehicle and an attack it never saw
    fused = 0.5 * p_gat + 0.5 * p_vgae  # the policy halves the VGAE: the fused score ranks worse
    t = DecisionThresholds(fusion=0.5, vgae=0.5, gat=0.5, false_alarms_per_hour=10.0, vgae_alone=0.65)
    score = t.decision_score(fused, p_vgae, p_gat)
    assert np.array_equal(score >= 1, t.flagged(fused, p_vgae, p_gat))
    # without an alone threshold (F1-optimal ones, NEVER) it is the fused score over its threshold,
    # capped by the surer detector over its own
    assert np.array_equal(DecisionThresholds().decision_score(fused, p_vgae, p_gat), np.minimum(fused / 0.5, np.maximum(p_vgae, p_gat) / 0.5))

    class Graphs:  # what split_metrics reads of a GraphSet
        attack_types = ["normal", "dos"]
        attack_type = torch.as_tensor(y)
        t_start = torch.arange(n, dtype=torch.float64) * 0.05
        capture = torch.zeros(n, dtype=torch.long)

    out = DetectorOutputs(p_vgae, p_vgae, p_gat, np.zeros((n, 7), np.float32), np.ones(n))
    pred = SplitPredictions(y=y, scores={"vgae": p_vgae, "gat": p_gat, "fusion": fused}, decisions={}, alpha=np.full(n, 0.5), fused=fused)
    metrics = split_metrics(at_thresholds(pred, out, t), Graphs())
    assert metrics["fusion"]["f1"] == 1.0 and metrics["fusion"]["auroc"] == 1.0
    from canids.stages.metrics import binary_metrics

    assert binary_metrics(y, fused >= 0.5, fused)["auroc"] < 0.95  # what the fused score alone reported


def test_the_vgae_learns_from_every_normal_window_except_those_next_to_an_attack():
    from types import SimpleNamespace

    from canids.stages.autoencoder import attack_free_index

    # two captures, their windows out of order in the set: an attack window in each
    capture = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 0, 1])
    t_start = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 2.0, 5.0, 3.0])
    y = torch.tensor([0, 0, 1, 0, 0, 1, 0, 0, 0, 0])
    index = attack_free_index(SimpleNamespace(y=y, capture=capture, t_start=t_start))
    # capture 0 in time: windows 0 1 [2] 3 4 8 -> 1 and 3 are next to the attack; capture 1: [5] 6 7 9 -> 6 is
    assert index.tolist() == [0, 4, 7, 8, 9]
    with pytest.raises(ValueError, match="no normal training windows"):
        attack_free_index(SimpleNamespace(y=torch.ones(2, dtype=torch.long), capture=torch.zeros(2, dtype=torch.long), t_start=torch.arange(2.0)))


def test_an_alarm_needs_a_detector_that_raised_it():
    """A fused score over its threshold from two detectors each under their own is no evidence
    either of them has: not an alarm. One detector over its own threshold makes it one."""
    t = DecisionThresholds(fusion=0.5, vgae=0.8, gat=0.7, false_alarms_per_hour=10.0)
    p_vgae = np.array([0.6, 0.85, 0.6, 0.6], np.float32)
    p_gat = np.array([0.6, 0.3, 0.75, 0.6], np.float32)
    fused = np.array([0.6, 0.6, 0.6, 0.4], np.float32)
    assert t.flagged(fused, p_vgae, p_gat).tolist() == [False, True, True, False]
    # the fused score still vetoes: a detector over its threshold is outvoted below the fused one
    assert not t.flagged(np.float32(0.4), np.float32(0.85), np.float32(0.3))


def test_another_vehicles_windows_are_decided_by_the_vgae_alone():
    """Below ``familiar_id_share`` known CAN IDs the GAT's alarm is not enough, and the VGAE's
    is, whatever the policy weighs: torch, NumPy and one window's floats decide alike, and the
    decision score ranks as they decide."""
    from canids.graphs.vocab import known_id_share, window_known_id_share

    t = DecisionThresholds(fusion=0.5, vgae=0.6, gat=0.5, false_alarms_per_hour=10.0, vgae_alone=0.9, familiar_id_share=0.9)
    # windows of 10 nodes with 10, 9 (exactly the share) and 8 known IDs, and one of 3 with none
    node_vocab = np.r_[np.arange(1, 11), [0] + list(range(1, 10)), [0, 0] + list(range(1, 9)), [0, 0, 0]]
    ptr = np.array([0, 10, 20, 30, 33])
    known = known_id_share(node_vocab, ptr)
    assert known.tolist() == [1.0, 0.9, 0.8, 0.0]
    assert [window_known_id_share(node_vocab[a:b]) for a, b in zip(ptr[:-1], ptr[1:])] == known.tolist()
    cases = {  # (fused, p_vgae, p_gat): expected on a familiar window, on an unfamiliar one
        "GAT sure, VGAE silent": ((0.9, 0.2, 0.99), (True, False)),
        "VGAE over its threshold, fused under": ((0.3, 0.7, 0.01), (False, True)),
        "VGAE beyond every normal score": ((0.1, 0.95, 0.01), (True, True)),
        "both silent": ((0.2, 0.3, 0.1), (False, False)),
    }
    for (fused, p_vgae, p_gat), (on_familiar, on_other) in cases.values():
        f, v, g = (np.full(4, x, np.float32) for x in (fused, p_vgae, p_gat))
        expected = [on_familiar, on_familiar, on_other, on_other]
        assert t.flagged(f, v, g, known).tolist() == expected
        by_torch = t.flagged(torch.as_tensor(f), torch.as_tensor(v), torch.as_tensor(g), torch.as_tensor(known))
        assert by_torch.tolist() == expected
        assert [bool(t.flagged(float(a), float(b), float(c), k)) for a, b, c, k in zip(f, v, g, known.tolist())] == expected
        assert ((t.decision_score(f, v, g, known) >= 1) == np.array(expected)).all()
    # 0 (checkpoints from before the rule): every window is familiar
    old = DecisionThresholds(fusion=0.5, vgae=0.6, gat=0.5)
    assert old.flagged(np.full(4, 0.9, np.float32), np.full(4, 0.2, np.float32), np.full(4, 0.99, np.float32), known).all()


def test_metrics_say_how_the_fusion_leaned_on_each_detector():
    from canids.stages.evaluation import SplitPredictions, reliance

    alpha = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    familiar = np.array([True, True, True, True, True, False])
    pred = SplitPredictions(y=np.zeros(6, np.int64), scores={}, decisions={}, alpha=alpha, familiar=familiar)
    # weights under 0.5 and another vehicle's window (whatever its weight) lean on the VGAE
    assert reliance(pred) == {"unfamiliar_share": 1 / 6, "leaned_on": {"vgae": 3 / 6, "gat": 2 / 6, "even": 1 / 6}}
    assert reliance(SplitPredictions(y=np.zeros(0, np.int64), scores={}, decisions={}, alpha=np.zeros(0))) == {"unfamiliar_share": None, "leaned_on": None}
