"""Stage 2: GAT classifier trained with a curriculum whose difficulty comes from the VGAE.

Difficulty of a window = how misleading its anomaly score is: a normal window that the
VGAE finds anomalous is hard, and so is an attack window the VGAE finds normal. Scores are
turned into within-class percentile ranks so both classes share one 0..1 scale.

Pacing: epoch ``e`` may draw from the easiest ``f(e)`` share of each class, with ``f``
growing linearly from ``start_fraction`` to 1 over ``ramp_epochs`` epochs. Each epoch's
sample is rebuilt (``reload_dataloaders_every_n_epochs=1``): the replaced pipeline built its
loader once, so its curriculum never advanced. Attack windows are oversampled per attack
type so rare attacks reach ``attack_share`` of every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from canids.graphs.graphset import EDGE_FEATURES, GRAPH_FEATURES, NODE_FEATURES, GraphSet
from canids.models.gat import GATClassifier, GATConfig
from canids.settings import CurriculumPacing, GATArchitecture
from canids.stages.loaders import INFERENCE_BATCH, window_loader
from canids.stages.resume import resume_checkpoint
from canids.stages.trainer import TrainSettings, adamw, logs_this_step, make_trainer, restore_best, tune_batch_size
from canids.stages.metrics import binary_metrics


def difficulty(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0 (easy) .. 1 (hard) per window from VGAE anomaly scores."""
    out = np.zeros(len(scores))
    for cls, hard_when_high in ((0, True), (1, False)):
        idx = np.flatnonzero(labels == cls)
        if len(idx) == 0:
            continue
        ranks = np.argsort(np.argsort(scores[idx], kind="stable"), kind="stable") / max(len(idx) - 1, 1)
        out[idx] = ranks if hard_when_high else 1.0 - ranks
    return out


def pacing_fraction(epoch: int, cfg: CurriculumPacing) -> float:
    if cfg.ramp_epochs <= 0:
        return 1.0
    return float(min(1.0, cfg.start_fraction + (1.0 - cfg.start_fraction) * epoch / cfg.ramp_epochs))


def epoch_sample(epoch: int, diff: np.ndarray, labels: np.ndarray, attack_type: np.ndarray, cfg: CurriculumPacing, seed: int) -> tuple[np.ndarray, dict]:
    """The windows (with repeats for oversampled attacks) one epoch trains on, and its log record."""
    rng = np.random.default_rng(seed + epoch)
    frac = pacing_fraction(epoch, cfg)
    normal = np.flatnonzero((labels == 0) & (diff <= frac))
    attack_pools = [np.flatnonzero((labels == 1) & (attack_type == t) & (diff <= frac)) for t in np.unique(attack_type[labels == 1])]
    attack_pools = [p for p in attack_pools if len(p)]
    total = cfg.epoch_windows or int((labels == 0).sum() * frac + (labels == 1).sum() * frac)
    n_attack = int(round(cfg.attack_share * total)) if attack_pools else 0
    n_normal = max(total - n_attack, 1)
    chosen = [rng.choice(normal, size=min(n_normal, len(normal)), replace=False)] if len(normal) else []
    per_type = n_attack // max(len(attack_pools), 1)
    for pool in attack_pools:
        chosen.append(rng.choice(pool, size=per_type, replace=len(pool) < per_type))
    sample = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    record = {
        "epoch": epoch + 1,
        "fraction": round(frac, 4),
        "max_difficulty": round(frac, 4),
        "n_windows": int(len(sample)),
        "n_attack": int(labels[sample].sum()) if len(sample) else 0,
        "mean_difficulty": float(diff[sample].mean()) if len(sample) else 0.0,
    }
    return rng.permutation(sample), record


class GATModule(L.LightningModule):
    def __init__(self, cfg: GATConfig, train_set: GraphSet, diff: np.ndarray, val_set: GraphSet, settings: TrainSettings, curriculum: CurriculumPacing, teacher: GATClassifier | None = None, kd_alpha: float = 0.0, kd_temperature: float = 4.0) -> None:
        super().__init__()
        self.model = GATClassifier(cfg)
        self.train_set, self.diff, self.val_set = train_set, diff, val_set
        self.settings, self.curriculum = settings, curriculum
        self.batch_size = settings.batch_size
        self.teacher = teacher.eval() if teacher is not None else None
        self.kd_alpha, self.kd_temperature = kd_alpha, kd_temperature
        self.schedule: list[dict] = []
        self._val_probs: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def train_dataloader(self):
        index, record = epoch_sample(self.current_epoch, self.diff, self.train_set.y.numpy(), self.train_set.attack_type.numpy(), self.curriculum, self.settings.seed)
        if not self.trainer.sanity_checking and not any(r["epoch"] == record["epoch"] for r in self.schedule):
            self.schedule.append(record)
        return window_loader(self.train_set, index, self.batch_size, shuffle=False)

    def val_dataloader(self):
        return window_loader(self.val_set, None, 512)

    def training_step(self, batch, batch_idx):
        logits = self.model(batch)
        loss = F.cross_entropy(logits, batch.y)
        if self.teacher is not None and self.kd_alpha > 0:
            with torch.no_grad():
                t_logits = self.teacher(batch)
            t = self.kd_temperature
            kd = F.kl_div(F.log_softmax(logits / t, -1), F.softmax(t_logits / t, -1), reduction="batchmean") * t * t
            loss = (1 - self.kd_alpha) * loss + self.kd_alpha * kd
        if logs_this_step(self, batch_idx):
            self.log("train_loss", loss, prog_bar=True, batch_size=batch.num_graphs)
        return loss

    def validation_step(self, batch, batch_idx):
        logits = self.model(batch)
        self.log("val_loss", F.cross_entropy(logits, batch.y), batch_size=batch.num_graphs)
        self._val_probs.append(torch.softmax(logits, -1)[:, 1].detach().cpu())
        self._val_labels.append(batch.y.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_probs:
            return
        probs, labels = torch.cat(self._val_probs).numpy(), torch.cat(self._val_labels).numpy()
        self._val_probs.clear()
        self._val_labels.clear()
        m = binary_metrics(labels, probs >= 0.5)
        self.log("val_f1", m["f1"])
        self.log("val_mcc", m["mcc"])
        if self.schedule:
            self.log("curriculum_fraction", self.schedule[-1]["fraction"])

    def configure_optimizers(self):
        return adamw(self.parameters(), self.settings)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["curriculum_schedule"] = list(self.schedule)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.schedule = list(checkpoint.get("curriculum_schedule", []))


@dataclass
class CurriculumResult:
    model: GATClassifier
    batch_size: int
    epochs_run: int
    best_epoch: int | None
    schedule: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


@torch.no_grad()
def predict_proba(model: GATClassifier, graphs: GraphSet, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = [torch.softmax(model(b.to(device)), -1)[:, 1].cpu() for b in window_loader(graphs, None, batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def train_curriculum(train: GraphSet, val: GraphSet, vgae_train_scores: np.ndarray, vocab_size: int, arch: GATArchitecture, settings: TrainSettings, curriculum: CurriculumPacing, work_dir: Path, resume_dir: Path | None = None, teacher: GATClassifier | None = None, kd_alpha: float = 0.0, kd_temperature: float = 4.0) -> CurriculumResult:
    cfg = GATConfig.of(arch, node_dim=len(NODE_FEATURES), edge_dim=len(EDGE_FEATURES), graph_dim=len(GRAPH_FEATURES), vocab_size=vocab_size)
    diff = difficulty(vgae_train_scores, train.y.numpy())
    module = GATModule(cfg, train, diff, val, settings, curriculum, teacher, kd_alpha, kd_temperature)
    factory = lambda: make_trainer(settings, work_dir / "tune", None, reload_every_epoch=True)  # noqa: E731
    batch_size = tune_batch_size(factory, module, settings) if resume_checkpoint(resume_dir) is None else settings.batch_size
    module.batch_size = batch_size
    module.schedule.clear()
    trainer, best = make_trainer(settings, work_dir, resume_dir, reload_every_epoch=True)
    trainer.fit(module, ckpt_path=resume_checkpoint(resume_dir))
    best_epoch = restore_best(module, best)
    model = module.model.cpu().eval()
    val_probs = predict_proba(model, val)
    val_metrics = binary_metrics(val.y.numpy(), val_probs >= 0.5, val_probs)
    return CurriculumResult(
        model=model,
        batch_size=module.batch_size,  # after a resume: the batch size the checkpoint trained with
        epochs_run=trainer.current_epoch,
        best_epoch=best_epoch,
        schedule=list(module.schedule),
        metrics={"val_f1": val_metrics["f1"], "val_mcc": val_metrics["mcc"], "val_auroc": val_metrics.get("auroc"), "best_val_f1": float(best.best_model_score) if best.best_model_score is not None else None},
    )
