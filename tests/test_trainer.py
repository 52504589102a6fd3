"""The training machinery without Snakemake, on a toy Lightning module (seconds): the wall-time
stop and resume, atomic checkpoint files, the resumable CSV curve, ``restore_best`` and seeding.

The same machinery under SLURM and Snakemake is exercised by tests/test_slurm_pipeline.py.
"""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, TensorDataset

from canids.stages.resume import resume_checkpoint, resume_info
from canids.stages.trainer import TrainSettings, adamw, logs_this_step, make_trainer, restore_best, seed_everything
from canids.stages.walltime import EXIT_TIME_LIMIT, TimeLimitReached, job_end_time, parse_slurm_duration

SCHEDULER_VARS = ("SLURM_JOB_END_TIME", "SLURM_JOB_ID", "CANIDS_JOB_END_TIME", "CANIDS_TEST_EPOCH_SLEEP_S", "CANIDS_WALLTIME_MARGIN_S")


@pytest.fixture(autouse=True)
def _no_scheduler(monkeypatch):
    """Tests set the scheduler variables they need; none leaks in from the environment."""
    for var in SCHEDULER_VARS:
        monkeypatch.delenv(var, raising=False)


class Toy(L.LightningModule):
    """8 batches of 8 per epoch; logs train_loss (every 10 steps) and val_loss (every epoch)."""

    def __init__(self):
        super().__init__()
        self.model = torch.nn.Linear(4, 1)
        self.batch_size = 8
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=64)

    def training_step(self, batch, _):
        loss = torch.nn.functional.mse_loss(self.model(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        self.log("val_loss", torch.nn.functional.mse_loss(self.model(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


class ToyLoggingWhenWritten(Toy):
    """The toy logging its loss only on the steps ``logs_this_step`` names, as the training stages do."""

    def training_step(self, batch, batch_idx):
        loss = torch.nn.functional.mse_loss(self.model(batch[0]), batch[1])
        if logs_this_step(self, batch_idx):
            self.log("train_loss", loss)
        return loss


def _toy_fit(tmp_path: Path, epochs: int, extra_callbacks: list | None = None, toy: type[Toy] = Toy):
    """The toy trained by make_trainer with resume state under tmp_path/resume (continues one if there)."""
    settings = TrainSettings(epochs=epochs, batch_size=8, learning_rate=0.01, weight_decay=0.0, patience=100, seed=0, optimize_batch_size=False, batch_size_max_trials=1, accelerator="cpu", monitor="val_loss", monitor_mode="min")
    resume_dir = tmp_path / "resume"
    module = toy()
    trainer, best = make_trainer(settings, tmp_path / "work", resume_dir, extra_callbacks=extra_callbacks)
    trainer.fit(module, ckpt_path=resume_checkpoint(resume_dir))
    return trainer, module, best


def _rows(curve: Path) -> list[dict[str, str]]:
    with open(curve, newline="") as handle:
        return list(csv.DictReader(handle))


def _val_epochs(curve: Path, metric: str = "val_loss") -> list[int]:
    return [int(r["epoch"]) for r in _rows(curve) if r.get(metric)]


# ---------------------------------------------------------------- when the job ends


def test_parse_slurm_duration():
    assert parse_slurm_duration("0:52") == 52
    assert parse_slurm_duration("1:02:03") == 3723
    assert parse_slurm_duration("2-01:00:00") == 2 * 86400 + 3600
    assert parse_slurm_duration("45") == 45
    assert parse_slurm_duration("UNLIMITED") is None and parse_slurm_duration("NOT_SET") is None and parse_slurm_duration("") is None


def test_job_end_time_sources(monkeypatch):
    from canids.stages import walltime

    assert job_end_time() == (None, "none")
    monkeypatch.setenv("CANIDS_JOB_END_TIME", "2000000000")
    assert job_end_time() == (2000000000.0, "CANIDS_JOB_END_TIME")
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setattr(walltime, "_squeue_time_left", lambda job: 90.0)
    end, source = job_end_time()
    assert source == "squeue" and abs(end - time.time() - 90) < 5
    monkeypatch.setenv("SLURM_JOB_END_TIME", "1900000000")
    assert job_end_time() == (1900000000.0, "SLURM_JOB_END_TIME")


# ---------------------------------------------------------------- stop before the wall time, resume


def test_wall_time_guard_exits_75_and_resume_continues(tmp_path, monkeypatch, capfd):
    # 40 epochs of >= 0.2 s cannot fit in 2 s: the guard stops after some epoch >= 1, however slow the machine.
    monkeypatch.setenv("CANIDS_TEST_EPOCH_SLEEP_S", "0.2")
    monkeypatch.setenv("CANIDS_WALLTIME_MARGIN_S", "0.5")
    monkeypatch.setenv("CANIDS_JOB_END_TIME", str(time.time() + 2.0))
    with pytest.raises(TimeLimitReached) as stopped:
        _toy_fit(tmp_path, epochs=40)
    assert stopped.value.code == EXIT_TIME_LIMIT == 75
    info = resume_info(tmp_path / "resume")
    done = info["epochs_done"]
    assert 1 <= done < 40 and not list((tmp_path / "resume").glob(".*.tmp"))
    assert info["max_epochs"] == 40 and info["global_step"] == done * 8 and info["checkpoint"] == "resume.ckpt"
    assert "stopping before the job's time limit" in capfd.readouterr().err

    monkeypatch.delenv("CANIDS_JOB_END_TIME")
    monkeypatch.setenv("CANIDS_TEST_EPOCH_SLEEP_S", "0")
    trainer, module, _ = _toy_fit(tmp_path, epochs=40)
    err = capfd.readouterr().err
    assert f"at epoch {done + 1}/40 ({done} epochs done" in err, err[-2000:]
    assert [int(m) for m in re.findall(r"\] epoch (\d+)/40 ", err)] == list(range(done + 1, 41))
    assert trainer.current_epoch == 40 and trainer.global_step == 40 * 8  # optimizer steps continue, none repeated
    assert _val_epochs(tmp_path / "work" / "metrics.csv") == list(range(40))


# ---------------------------------------------------------------- atomic checkpoint files


def test_resume_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    """A crash while writing leaves the previous complete checkpoint (no truncated file)."""
    _toy_fit(tmp_path, epochs=2)
    ckpt = tmp_path / "resume" / "resume.ckpt"
    before = ckpt.read_bytes()
    info_before = resume_info(tmp_path / "resume")
    assert info_before["epochs_done"] == 2

    real_save = TorchCheckpointIO.save_checkpoint

    def crash(self, checkpoint, path, storage_options=None):
        if Path(path).parent != ckpt.parent:  # the best checkpoint: written as usual
            return real_save(self, checkpoint, path, storage_options)
        Path(path).write_bytes(b"half")  # what a kill in the middle of torch.save leaves
        raise RuntimeError("killed while saving")

    # The bytes are written by Lightning's TorchCheckpointIO, which AtomicCheckpointIO points at a temporary sibling.
    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", crash)
    with pytest.raises(RuntimeError, match="killed while saving"):
        _toy_fit(tmp_path, epochs=4)
    assert ckpt.read_bytes() == before and torch.load(ckpt, weights_only=True)["epoch"] == 1
    assert not list(ckpt.parent.glob(".*.tmp"))
    assert resume_info(tmp_path / "resume") == info_before, "the sidecar still describes the checkpoint on disk"


# ---------------------------------------------------------------- the training curve across a resume


class _KillMidEpoch(Callback):
    """Raise in the middle of training epoch ``epoch`` (0-based), after a step row of it was logged."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 6:
            raise RuntimeError("killed mid-epoch")


def test_curve_keeps_finished_epochs_and_drops_an_epoch_cut_short(tmp_path):
    curve = tmp_path / "work" / "metrics.csv"
    # Epoch 3 (0-based) holds global steps 24..31; with log_every_n_steps=10 step 29 logs a row of it.
    with pytest.raises(RuntimeError, match="killed mid-epoch"):
        _toy_fit(tmp_path, epochs=6, extra_callbacks=[_KillMidEpoch(3)])
    assert resume_info(tmp_path / "resume")["epochs_done"] == 3
    cut = _rows(curve)
    assert any(r["epoch"] == "3" for r in cut), "the interrupted epoch logged a row before the kill"
    finished = [r for r in cut if int(r["epoch"]) < 3]
    with open(curve, "a") as handle:
        handle.write("3,0.5")  # and a line the kill cut in the middle of writing

    trainer, _, _ = _toy_fit(tmp_path, epochs=6)
    assert trainer.current_epoch == 6
    rows = _rows(curve)
    assert list(rows[0]) == sorted(rows[0]) and {"epoch", "step", "train_loss", "val_loss"} <= set(rows[0]), list(rows[0])
    assert rows[: len(finished)] == finished, "rows of finished epochs kept as they were"
    assert _val_epochs(curve) == list(range(6)), "each epoch's validation row exactly once"
    steps = [int(r["step"]) for r in rows if r["train_loss"]]
    assert steps == sorted(set(steps)) and steps == [9, 19, 29, 39], steps  # 48 steps: no step row repeated or lost
    assert all(r["epoch"] and r["step"] for r in rows)


def test_logging_only_the_written_steps_writes_the_same_curve_and_epoch_lines(tmp_path, capfd):
    """``logs_this_step`` skips Lightning's per-step logging cost without changing a curve row or an epoch line."""
    outputs = {}
    for toy in (Toy, ToyLoggingWhenWritten):
        capfd.readouterr()
        seed_everything(0)  # the same initial weights
        _toy_fit(tmp_path / toy.__name__, epochs=3, toy=toy)
        # the module's name and the elapsed times differ, nothing else may
        lines = [re.sub(r"^\[\w+\] (.*) [0-9.]+s ", r"\1 ", line) for line in capfd.readouterr().err.splitlines() if "epoch" in line]
        outputs[toy] = (_rows(tmp_path / toy.__name__ / "work" / "metrics.csv"), lines)
    assert outputs[Toy][1] and outputs[Toy] == outputs[ToyLoggingWhenWritten]


def test_fresh_training_starts_a_fresh_curve(tmp_path):
    """Without a resume checkpoint the curve of an earlier run in the same directory is replaced."""
    _toy_fit(tmp_path, epochs=2)
    (tmp_path / "resume" / "resume.ckpt").unlink()
    _toy_fit(tmp_path, epochs=3)
    assert _val_epochs(tmp_path / "work" / "metrics.csv") == [0, 1, 2]


# ---------------------------------------------------------------- best weights, seeds


def test_restore_best_loads_weights_only(tmp_path, monkeypatch):
    _, module, best = _toy_fit(tmp_path, epochs=3)
    saved = torch.load(best.best_model_path, weights_only=True, map_location="cpu")
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: loads.append(kw) or real_load(*a, **kw))
    fresh = Toy()
    epoch = restore_best(fresh, best)
    assert loads and all(kw.get("weights_only") is True for kw in loads)
    assert epoch == int(saved["epoch"]) + 1 and 1 <= epoch <= 3
    for name, value in fresh.model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][f"model.{name}"])
    assert float(best.best_model_score) == pytest.approx(min(float(r["val_loss"]) for r in _rows(tmp_path / "work" / "metrics.csv") if r["val_loss"]))


def test_seed_everything_accepts_the_unsigned_32_bit_range():
    assert seed_everything(0) == 0 and seed_everything(2**32 - 1) == 2**32 - 1
    a = torch.rand(3)
    seed_everything(2**32 - 1)
    assert torch.equal(a, torch.rand(3))
    for bad in (-1, 2**32):
        with pytest.raises(ValueError):
            seed_everything(bad)


def test_resume_info_is_written_with_the_checkpoint(tmp_path):
    _toy_fit(tmp_path, epochs=2)
    info = json.loads((tmp_path / "resume" / "resume.json").read_text())
    assert {k: info[k] for k in ("checkpoint", "epochs_done", "max_epochs", "global_step")} == {"checkpoint": "resume.ckpt", "epochs_done": 2, "max_epochs": 2, "global_step": 16}
    assert abs(info["saved_at"] - time.time()) < 3600
    assert sorted(p.name for p in (tmp_path / "resume").iterdir()) == ["resume.ckpt", "resume.json"]


def test_adamw_updates_the_weights_as_the_default_loop_does():
    """The stages' fused AdamW (``adamw``) gives the per-parameter loop's weights, to float rounding."""
    settings = TrainSettings(epochs=1, batch_size=8, learning_rate=0.005, weight_decay=1e-4, patience=1, seed=0, optimize_batch_size=False, batch_size_max_trials=1, accelerator="cpu", monitor="val_loss", monitor_mode="min")
    weights = {}
    for name in ("default", "adamw"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 2))
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.005, weight_decay=1e-4) if name == "default" else adamw(model.parameters(), settings)
        g = torch.Generator().manual_seed(1)
        for _ in range(20):
            optimizer.zero_grad()
            model(torch.randn(32, 10, generator=g)).square().mean().backward()
            optimizer.step()
        weights[name] = list(model.parameters())
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(weights["default"], weights["adamw"]))
