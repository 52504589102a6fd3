"""Benchmark: training throughput of the teacher VGAE and teacher GAT, in graphs per second per epoch.

Preprocesses a real dataset (default hcrl_sa) as the workflow does, then trains each model for a few
epochs with the project's own Lightning modules (``VGAEModule``, ``GATModule``: the loaders, batching
and loss the pipeline uses) on ``--threads`` threads, without validation or checkpoints, so that what is
timed is the training epoch. Lightning's ``SimpleProfiler`` times every fetch of the next batch, which
gives the data-loading share of an epoch. Prints one JSON line per batch size: per model the graphs and
graphs/s of every epoch, the median graphs/s, and the data-loading share; and the machine's load average
before and after, since a shared machine makes the figures noisy (compare branches by interleaving runs).

    python bench/train_speed.py [--dataset hcrl_sa] [--epochs 5] [--threads 2] [--batch-sizes 64 128] [--accelerator cpu]

Batch 64 is the replaced pipeline's (it reached 373 graphs/s for its GAT and 306 for its VGAE on hcrl_sa,
2 threads); 128 is what the pipeline trains with by default (the batch-size tuner doubles batch_size 64 once:
batch_size_max_trials 2; each stage's manifest records it as batch_size_used). The GAT's
curriculum is given a uniform difficulty here (every window eligible from the first epoch); each epoch
draws as many windows as its pacing fraction allows, so GAT epochs grow as in the pipeline (hence the
graphs of every epoch in the output). As in the pipeline, the GAT's loader is rebuilt every epoch (its
curriculum sample) and the VGAE's is not.
Data: $CAN_DATA_ROOT/<dataset>, default ../shared/data/can/<dataset> relative to the repo.
Goal (issue 15): >= 5,000 graphs/s per epoch for both, data loading under 20 % of an epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="hcrl_sa")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--accelerator", choices=("cpu", "cuda"), default="cpu", help="cuda: train on the GPU (the goal is the CPU's)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import lightning as L
    import numpy as np
    import torch
    import yaml
    from lightning.pytorch.profilers import SimpleProfiler

    from canids.graphs.features import EDGE_FEATURES, GRAPH_FEATURES, NODE_FEATURES
    from canids.graphs.shards import load_graphsets
    from canids.models.gat import GATConfig
    from canids.models.vgae import VGAEConfig
    from canids.settings import load_settings
    from canids.shape import file_name
    from canids.stages.autoencoder import VGAEModule, attack_free_index
    from canids.stages.curriculum import GATModule
    from canids.stages.trainer import TrainSettings
    from canids.util import tune_heap
    from canids.workflow.preprocess import run_preprocess

    torch.set_num_threads(args.threads)
    tune_heap()  # as every stage process does (workflow.jobs.run_job)
    data_root = os.environ.get("CAN_DATA_ROOT") or str((REPO / ".." / "shared" / "data" / "can").resolve())
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="train_speed_") as out:
        config.update(data_root=data_root, experiment_root=out, catalog=str(REPO / "config" / "datasets.yaml"))
        settings = load_settings(config)
        run_preprocess(args.dataset, settings, Path(out, file_name("preprocess", "train_graphs")), Path(out, file_name("preprocess", "test_graphs")), Path(out, "manifest.json"))
        sets, extra = load_graphsets(Path(out, file_name("preprocess", "train_graphs")))
    train, val = sets["train"], sets["val"]
    vocab_size = len(extra["vocab"]["can_ids"]) + 1
    dims = dict(node_dim=len(NODE_FEATURES), edge_dim=len(EDGE_FEATURES), graph_dim=len(GRAPH_FEATURES), vocab_size=vocab_size)

    class EpochTimer(L.Callback):
        """Graphs and seconds of every training epoch."""

        def __init__(self) -> None:
            self.epochs: list[dict] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self._t0, self._graphs = time.perf_counter(), 0

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self._graphs += int(batch.num_graphs)

        def on_train_epoch_end(self, trainer, module) -> None:
            self.epochs.append({"graphs": self._graphs, "seconds": time.perf_counter() - self._t0})

    def measure(module: L.LightningModule, reload_every_epoch: bool) -> dict:
        timer, profiler = EpochTimer(), SimpleProfiler(dirpath=tempfile.gettempdir(), filename="canids_train_speed_profile")  # its report to a file, not stdout
        trainer = L.Trainer(max_epochs=args.epochs, accelerator=args.accelerator, devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, profiler=profiler, callbacks=[timer],
                            log_every_n_steps=10, reload_dataloaders_every_n_epochs=1 if reload_every_epoch else 0)  # as make_trainer
        trainer.fit(module)
        fetches = profiler.recorded_durations["[_TrainingEpochLoop].train_dataloader_next"]
        per_epoch = [e["graphs"] / e["seconds"] for e in timer.epochs]
        loading = sum(fetches) / sum(e["seconds"] for e in timer.epochs)
        return {"graphs_per_s_epochs": [round(g) for g in per_epoch], "graphs_per_s_median": round(statistics.median(per_epoch)),
                "graphs_epochs": [e["graphs"] for e in timer.epochs], "data_loading_share": round(loading, 3)}

    for batch_size in args.batch_sizes:
        results, load_before = {}, os.getloadavg()[0]
        for model, section in (("vgae", settings.autoencoder.teacher), ("gat", settings.curriculum.teacher)):
            train_settings = TrainSettings(epochs=args.epochs, batch_size=batch_size, learning_rate=section.learning_rate, weight_decay=section.weight_decay,
                                           patience=args.epochs, seed=settings.training.seed, optimize_batch_size=False, batch_size_max_trials=1,
                                           accelerator=args.accelerator, monitor="val_loss", monitor_mode="min")
            torch.manual_seed(0)
            if model == "vgae":
                module = VGAEModule(VGAEConfig.of(section.model, **dims), train, attack_free_index(train), val, np.flatnonzero(val.y.numpy() == 0), train_settings)
            else:
                module = GATModule(GATConfig.of(section.model, **dims), train, np.zeros(len(train)), val, train_settings, section.curriculum)
            results[model] = measure(module, reload_every_epoch=model == "gat")
        print(json.dumps({
            "benchmark": "train_speed",
            "data": f"{args.dataset}: {len(train)} training windows",
            "what": "teacher VGAE and GAT training epochs (no validation, no checkpoints), the project's Lightning modules",
            "batch_size": batch_size,
            "threads": args.threads,
            "accelerator": args.accelerator,
            **results,
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "goal_graphs_per_s": 5000,
            "goal_data_loading_share": 0.2,
            "replaced_pipeline_graphs_per_s_batch_64": {"gat": 373, "vgae": 306},
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
