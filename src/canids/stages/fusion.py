"""Stage 3: a DQN agent that learns, per window, how to weigh the VGAE against the GAT.

The environment walks the windows of each capture in time order: the state of window t is
built from both detectors' outputs and the window-level features, the action picks the
fusion weight, the reward is +w for a correct decision and -w for a wrong one (w balances
the classes), and the next state is window t+1 (the replaced pipeline reused the current
state as the next one). Exploration decays; a target network stabilises the bootstrap;
the kept policy is the one with the best validation F1 seen during training.

The agent trains on the first half (in time) of each validation capture's windows and is
selected on the second half: neither detector trained on those windows, so their outputs
there look like they will at test time (on training windows the GAT is overconfident and
the agent would learn to trust it blindly).
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from canids.graphs.graphset import GraphSet
from canids.models.dqn import DQNConfig, QNetwork
from canids.settings import FusionSettings
from canids.stages.callbacks import TEST_EPOCH_SLEEP_ENV, NonFiniteLossError
from canids.util import atomic_save, atomic_write_json
from canids.stages.fusion_apply import DetectorOutputs, fused_predictions, outputs_from
from canids.stages.fusion_rule import F1_OPTIMAL, VGAECalibration, fused_decision
from canids.stages.thresholds import DecisionThresholds
from canids.stages.metrics import binary_metrics, traffic_hours

def epsilon_at(step: int, s: FusionSettings) -> float:
    """Exponential decay from epsilon_start to epsilon_end over epsilon_decay_steps."""
    frac = min(1.0, step / max(s.epsilon_decay_steps, 1))
    return float(s.epsilon_end + (s.epsilon_start - s.epsilon_end) * math.exp(-5.0 * frac))


def split_by_time(graphs: GraphSet) -> tuple[np.ndarray, np.ndarray]:
    """First half (in time) of each capture's windows vs. the second half."""
    capture, t = graphs.capture.numpy(), graphs.t_start.numpy()
    first, second = [], []
    for c in np.unique(capture):
        idx = np.flatnonzero(capture == c)
        idx = idx[np.argsort(t[idx], kind="stable")]
        half = len(idx) // 2
        first.append(idx[:half])
        second.append(idx[half:])
    a, b = np.concatenate(first) if first else np.zeros(0, int), np.concatenate(second) if second else np.zeros(0, int)
    y = graphs.y.numpy()
    if y[a].sum() == 0 or y[b].sum() == 0 or (y[a] == 0).sum() == 0:
        # Too few attacks to split: train and select on all validation windows (recorded in the manifest).
        return np.arange(len(graphs)), np.arange(len(graphs))
    return np.sort(a), np.sort(b)


@dataclass
class FusionResult:
    q_net: QNetwork
    logreg: dict
    curve: list[dict] = field(default_factory=list)
    thresholds: DecisionThresholds = field(default_factory=DecisionThresholds)
    metrics: dict = field(default_factory=dict)


def simulate_detector_failures(out: DetectorOutputs, graphs: GraphSet, index: np.ndarray, calibration: VGAECalibration, share: float, rng: np.random.Generator) -> tuple[DetectorOutputs, np.ndarray]:
    """Extra windows in which one detector is wrong and the other right: (outputs, labels).

    On validation both detectors are usually right together, so every fusion weight earns
    the same reward and the agent learns nothing about whom to trust. Off validation they
    part ways, in three ways that are simulated here: the GAT misses an attack type it
    never saw, the GAT raises false alarms on a vehicle it never saw, the VGAE finds an
    attack ordinary. Each simulated window keeps a real window's output of one detector
    and takes the OTHER detector's output from a random window of the other class. Per
    validation window of each class, ``share`` such windows are made per failure. They are
    single-step episodes.

    VGAE false alarms are not simulated: the VGAE's alarm rate on normal traffic is what
    its threshold controls (with a margin), and a simulated one, carrying a real attack's
    score, taught the agent to overrule exactly the confident anomaly alarms that catch
    unseen attacks (hcrl_sa test_03 fell to F1 0.89 with them).
    """
    y = graphs.y.numpy()
    attacks, normals = index[y[index] == 1], index[y[index] == 0]
    if len(attacks) == 0 or len(normals) == 0 or share <= 0:
        return out.subset(np.zeros(0, np.int64)), np.zeros(0, np.int64)
    n_att, n_norm = max(1, int(round(share * len(attacks)))), max(1, int(round(share * len(normals))))
    hosts, donors, labels, wrong_gat = [], [], [], []
    # (pool of real windows, donor pool, count, label, is the GAT the wrong one)
    failures = ((attacks, normals, n_att, 1, True), (attacks, normals, n_att, 1, False), (normals, attacks, n_norm, 0, True))
    for pool, other, n, label, gat_wrong in failures:
        hosts.append(rng.choice(pool, n))
        donors.append(rng.choice(other, n))
        labels.append(np.full(n, label, np.int64))
        wrong_gat.append(np.full(n, gat_wrong))
    host, donor, label, gat_wrong = (np.concatenate(v) for v in (hosts, donors, labels, wrong_gat))
    score = np.where(gat_wrong, out.vgae_score[host], out.vgae_score[donor])
    p_gat = np.where(gat_wrong, out.p_gat[donor], out.p_gat[host])
    return outputs_from(torch.as_tensor(score), torch.as_tensor(p_gat), calibration, out.known_id_share[host]), label


def train_fusion(out: DetectorOutputs, graphs: GraphSet, cfg: DQNConfig, s: FusionSettings, *, seed: int, teacher: QNetwork | None = None, kd_alpha: float = 0.0, calibration: VGAECalibration | None = None, resume_dir: Path | None = None) -> FusionResult:
    """Train the DQN on validation windows (+ simulated failures); keep the best validated policy.

    ``teacher`` and ``kd_alpha``: distil the teacher's Q-values (student_kd). With
    ``resume_dir``, the whole training state (networks, optimizer, replay buffer, environments,
    random generators, best policy, curve) is saved there after every validation, atomically;
    a run killed at any point and started again continues from the last save, losing at most
    one ``eval_every`` interval, and ends with exactly the policy an uninterrupted run has.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    train_idx, val_idx = split_by_time(graphs)
    y = graphs.y.numpy()
    order = _episode_order(graphs, train_idx)
    next_of = np.full(len(graphs), -1)
    same_capture = graphs.capture.numpy()[order[:-1]] == graphs.capture.numpy()[order[1:]]
    next_of[order[:-1][same_capture]] = order[1:][same_capture]
    eval_out = out
    # Selection looks at validation first and, among equal validation F1 (usually all 1.0),
    # at how the policy handles simulated failures of the selection half's windows.
    select_out, select_y = None, None
    if calibration is not None and s.simulated_failure_share > 0:
        select_out, select_y = simulate_detector_failures(out, graphs, val_idx, calibration, s.simulated_failure_share, rng)
        extra, extra_y = simulate_detector_failures(out, graphs, train_idx, calibration, s.simulated_failure_share, rng)
        first = len(y)
        out = out.concat(extra)
        virtual = np.arange(first, first + len(extra_y))
        y = np.r_[y, extra_y.astype(y.dtype)]
        next_of = np.r_[next_of, np.full(len(virtual), -1)]
        train_idx, order = np.r_[train_idx, virtual], np.r_[order, virtual]

    n_att, n_norm = max(int(y[train_idx].sum()), 1), max(int((y[train_idx] == 0).sum()), 1)
    weight = np.where(y == 1, min(max(n_norm / n_att, 1.0), 20.0), 1.0).astype(np.float32)
    weight = weight / weight[train_idx].mean()

    q_net = QNetwork(cfg)
    target = copy.deepcopy(q_net)
    opt = torch.optim.Adam(q_net.parameters(), lr=s.learning_rate)
    alphas = q_net.alphas()
    state_t = torch.as_tensor(out.state)
    p_gat, p_vgae = torch.as_tensor(out.p_gat), torch.as_tensor(out.p_vgae)
    # rewards and validation decide by the one rule at the F1-optimal thresholds
    f1_optimal = DecisionThresholds.f1_optimal(s.familiar_id_share)
    known_t = torch.as_tensor(out.known_id_share)
    y_t = torch.as_tensor(y)
    w_t = torch.as_tensor(weight)

    cap = s.replay_capacity
    buf_s, buf_a = np.zeros(cap, np.int64), np.zeros(cap, np.int64)
    buf_r, buf_n = np.zeros(cap, np.float32), np.zeros(cap, np.int64)
    filled, head = 0, 0
    envs = rng.choice(order, size=s.parallel_envs)
    best: tuple = ((-1.0,), copy.deepcopy(q_net.state_dict()), 0)
    curve: list[dict] = []
    first_step = 1
    saved = _load_state(resume_dir)
    if saved is not None:
        q_net.load_state_dict(saved["q_net"])
        target.load_state_dict(saved["target"])
        opt.load_state_dict(saved["opt"])
        rng.bit_generator.state = json.loads(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        buf_s, buf_a, buf_r, buf_n = (saved[k].numpy().copy() for k in ("buf_s", "buf_a", "buf_r", "buf_n"))
        filled, head, envs = int(saved["filled"]), int(saved["head"]), saved["envs"].numpy().copy()
        best = (tuple(saved["best_key"]), saved["best_state"], int(saved["best_step"]))
        curve = json.loads(saved["curve"])
        first_step = int(saved["step"]) + 1
        print(f"[fusion] resuming from {resume_dir / RESUME_FILE} at step {first_step}/{s.steps} ({first_step - 1} steps done)", file=sys.stderr, flush=True)
    slow = float(os.environ.get(TEST_EPOCH_SLEEP_ENV) or 0) / s.eval_every  # test-only: seconds per eval interval
    for step in range(first_step, s.steps + 1):
        if slow > 0:
            time.sleep(slow)
        eps = epsilon_at(step, s)
        with torch.no_grad():
            greedy = q_net(state_t[envs]).argmax(-1).numpy()
        explore = rng.random(len(envs)) < eps
        actions = np.where(explore, rng.integers(0, cfg.n_actions, len(envs)), greedy)
        decision = fused_decision(alphas[actions], p_gat[envs], p_vgae[envs], **f1_optimal.rule(known_t[envs]))
        correct = (decision == y_t[envs]).float()
        reward = ((2 * correct - 1) * w_t[envs]).numpy()
        nxt = next_of[envs]
        k = len(envs)
        slots = (head + np.arange(k)) % cap
        buf_s[slots], buf_a[slots], buf_r[slots], buf_n[slots] = envs, actions, reward, nxt
        head, filled = (head + k) % cap, min(filled + k, cap)
        # advance each environment; an episode that ended restarts at a random window
        envs = np.where(nxt >= 0, nxt, rng.choice(order, size=k))

        sample = rng.integers(0, filled, size=min(s.batch_size, filled))
        st, ac, rw, nx = state_t[buf_s[sample]], torch.as_tensor(buf_a[sample]), torch.as_tensor(buf_r[sample]), buf_n[sample]
        with torch.no_grad():
            has_next = torch.as_tensor(nx >= 0)
            q_next = target(state_t[np.maximum(nx, 0)]).max(-1).values
            tgt = rw + s.gamma * q_next * has_next
        q = q_net(st)
        loss = F.smooth_l1_loss(q.gather(1, ac[:, None]).squeeze(1), tgt)
        if teacher is not None and kd_alpha > 0:
            with torch.no_grad():
                q_teacher = teacher(st)
            loss = (1 - kd_alpha) * loss + kd_alpha * F.mse_loss(q, q_teacher)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"fusion DQN loss became {float(loss)} at step {step}; lower fusion.<size>.learning_rate ({s.learning_rate})")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(q_net.parameters(), 10.0)
        opt.step()
        if step % s.target_update == 0:
            target.load_state_dict(q_net.state_dict())
        if step % s.eval_every == 0 or step == s.steps:
            pred, _, alpha = fused_predictions(q_net, eval_out.subset(val_idx), f1_optimal)
            f1 = binary_metrics(y[val_idx], pred)["f1"]
            point = {"step": step, "epsilon": round(eps, 4), "loss": float(loss.detach()), "val_f1": f1, "mean_alpha": float(alpha.mean())}
            key = (f1,)
            if select_out is not None and len(select_y):
                point["simulated_failures_f1"] = binary_metrics(select_y, fused_predictions(q_net, select_out, f1_optimal)[0])["f1"]
                key = (f1, point["simulated_failures_f1"])
            curve.append(point)
            if key > best[0]:
                best = (key, copy.deepcopy(q_net.state_dict()), step)
            if step % (s.eval_every * 10) == 0 or step == s.steps:
                print(f"[fusion] step {step}/{s.steps} epsilon={eps:.3f} loss={float(loss.detach()):.4f} val_f1={f1:.4f} mean_alpha={alpha.mean():.2f}", file=sys.stderr, flush=True)
            if resume_dir is not None and step < s.steps:
                _save_state(resume_dir, step, s.steps, q_net=q_net.state_dict(), target=target.state_dict(), opt=opt.state_dict(), rng=json.dumps(rng.bit_generator.state), torch_rng=torch.get_rng_state(),
                            buf_s=torch.as_tensor(buf_s), buf_a=torch.as_tensor(buf_a), buf_r=torch.as_tensor(buf_r), buf_n=torch.as_tensor(buf_n), filled=filled, head=head, envs=torch.as_tensor(envs),
                            best_key=list(best[0]), best_state=best[1], best_step=best[2], curve=json.dumps(curve))
    q_net.load_state_dict(best[1])
    q_net.eval()

    val_out = eval_out.subset(val_idx)
    yv = y[val_idx]
    pred, fused, alpha = fused_predictions(q_net, val_out, f1_optimal)
    fusion_f1 = binary_metrics(yv, pred, fused)["f1"]
    gat_f1 = binary_metrics(yv, val_out.p_gat >= F1_OPTIMAL)["f1"]
    vgae_f1 = binary_metrics(yv, val_out.p_vgae >= F1_OPTIMAL)["f1"]
    hours = traffic_hours(graphs.t_start.numpy()[val_idx], graphs.capture.numpy()[val_idx])
    thresholds = DecisionThresholds.for_budget(fused, val_out.p_vgae, val_out.p_gat, yv == 0, hours, s.false_alarms_per_hour, s.familiar_id_share)
    at_budget = binary_metrics(yv, val_out.flagged(fused, thresholds), hours=hours)
    logreg = fit_logistic_regression(out.state[train_idx], y[train_idx], seed=seed)
    return FusionResult(
        q_net=q_net,
        logreg=logreg,
        curve=curve,
        thresholds=thresholds,
        metrics={
            "decision_thresholds": thresholds.to_dict(),
            "val_hours": hours,
            "val_f1_at_budget": at_budget["f1"],
            "val_false_alarms_per_hour_at_budget": at_budget["false_alarms_per_hour"],
            "val_f1": fusion_f1,
            "val_f1_gat": gat_f1,
            "val_f1_vgae": vgae_f1,
            "not_worse_than_best_single": bool(fusion_f1 >= max(gat_f1, vgae_f1) - 1e-9),
            "best_step": best[2],
            "mean_alpha": float(alpha.mean()),
            "n_train_windows": int(len(train_idx)),
            "n_val_windows": int(len(val_idx)),
            "final_epsilon": epsilon_at(s.steps, s),
        },
    )


#: The fusion stage's resume state in its resume directory (beside it: ``resume.json``).
RESUME_FILE = "resume.ckpt"


def _save_state(resume_dir: Path, step: int, steps: int, **state) -> None:
    """The whole loop state after ``step``, atomically, then the sidecar saying which step it holds."""
    atomic_save(resume_dir / RESUME_FILE, lambda tmp: torch.save({"step": step, **state}, tmp))
    atomic_write_json(resume_dir / "resume.json", {"checkpoint": RESUME_FILE, "steps_done": step, "steps": steps, "saved_at": time.time()})


def _load_state(resume_dir: Path | None) -> dict | None:
    path = None if resume_dir is None else resume_dir / RESUME_FILE
    if path is None or not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _episode_order(graphs: GraphSet, index: np.ndarray) -> np.ndarray:
    capture, t = graphs.capture.numpy()[index], graphs.t_start.numpy()[index]
    return index[np.lexsort((t, capture))]


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, seed: int = 0, steps: int = 300) -> dict:
    """Baseline fusion: class-balanced logistic regression on the same state features."""
    torch.manual_seed(seed)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float32)
    mean, std = xt.mean(0), xt.std(0).clamp_min(1e-6)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    pos_weight = torch.tensor(float((y == 0).sum()) / max(float(y.sum()), 1.0))
    opt = torch.optim.LBFGS([w, b], max_iter=steps)

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits((xt - mean) / std @ w + b, yt, pos_weight=pos_weight) + 1e-3 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return {"weight": w.detach().tolist(), "bias": float(b.detach()), "mean": mean.tolist(), "std": std.tolist()}


