"""What the Snakefile asks of Python: targets, raw inputs, upstream manifests, settings.

Kept out of the .smk files so the rules stay declarative and this logic is unit-testable
without Snakemake. Output paths are the public interface:

    ROOT/{dataset}/preprocess/manifest.json
    ROOT/{dataset}/{variant}/{autoencoder,curriculum,fusion}/{manifest.json,model.ckpt}
    ROOT/{dataset}/{variant}/evaluation/metrics.json

A job spec's dependency manifests pin upstream stages (canids.workflow.jobspec): for a pinned
(dataset, stage, variant), ``upstream`` and ``teacher`` return the verified pinned manifest
or checkpoint instead of the workflow's own output path, and the rules mark those inputs
``before_update`` so that Snakemake never schedules a job to (re)build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from canids.data.catalog import Catalog, load_catalog
from canids.workflow.jobspec import ConfigSources, Pin, resolve_pins, selected_datasets
from canids.workflow.settings import VARIANTS, experiment_root, stage_settings

STAGES = ("preprocess", "autoencoder", "curriculum", "fusion", "evaluation")
_ARTIFACT_FILES = {"manifest": "manifest.json", "checkpoint": "model.ckpt"}


REPO_ROOT = Path(__file__).resolve().parents[3]


def resolve_repo_path(path: str) -> str:
    """A relative config path that does not exist here is taken relative to the repository.

    This lets Snakemake run with ``--directory`` elsewhere (tests, scratch roots) while
    config/config.yaml keeps short repository-relative paths.
    """
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return str(candidate)
    return str(REPO_ROOT / candidate)


@dataclass
class Pipeline:
    config: dict
    catalog: Catalog
    root: str
    #: (dataset, stage, variant or None for preprocess) -> verified pinned manifest
    pins: dict[tuple[str, str, str | None], Pin] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict, sources: ConfigSources | None = None) -> "Pipeline":
        """Resolve roots and catalog, check the selected datasets and verify every pinned manifest.

        ``sources`` says which config file set each key, so errors name the job spec.
        Everything here runs at parse time: a bad spec or a tampered pin fails ``snakemake -n``.
        """
        origin = (sources or ConfigSources()).origin
        root = str(experiment_root(config))
        catalog = load_catalog(resolve_repo_path(config["catalog"]), data_root=config.get("data_root"), experiment_root=root)
        pipeline = cls(config=config, catalog=catalog, root=root)
        datasets = selected_datasets(config, catalog, origin)
        pipeline.pins = resolve_pins(config, datasets=datasets, catalog_names=catalog.names, variants=pipeline.variants(), root=root, origin=origin)
        return pipeline

    # ------------------------------------------------------------------ targets
    def datasets(self) -> list[str]:
        return self.catalog.expand(self.config["datasets"])

    def variants(self) -> list[str]:
        if self.config.get("variant"):
            return [self.config["variant"]]
        return list(self.config.get("variants") or ["teacher"])

    def stage_path(self, dataset: str, variant: str | None, stage: str, artifact: str = "manifest") -> str:
        if stage == "preprocess":
            return f"{self.root}/{dataset}/preprocess/{_ARTIFACT_FILES[artifact]}"
        if stage == "evaluation" and artifact == "metrics":
            return f"{self.root}/{dataset}/{variant}/evaluation/metrics.json"
        return f"{self.root}/{dataset}/{variant}/{stage}/{_ARTIFACT_FILES[artifact]}"

    def target(self, dataset: str, variant: str, stage: str) -> str:
        if stage not in STAGES:
            raise ValueError(f"unknown training type '{stage}' (expected one of {', '.join(STAGES)})")
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant '{variant}' (expected one of {', '.join(VARIANTS)})")
        return self.stage_path(dataset, variant, stage, "metrics" if stage == "evaluation" else "manifest")

    def targets(self) -> list[str]:
        return [self.target(d, v, s) for d in self.datasets() for v in self.variants() for s in self.config["training_types"]]

    # ------------------------------------------------------------------ inputs
    def raw_inputs(self, dataset: str) -> list[str]:
        """Raw capture files (checked now, so a missing directory fails the dry run)."""
        spec = self.catalog.get(dataset)
        if spec.generated:
            # the generate_synthetic rule's output (same spelling, so Snakemake links the two)
            return [f"{self.root}/{dataset}/raw/generator.json"]
        spec.check_layout()
        return [str(f.path) for f in spec.capture_files()]

    def pin(self, dataset: str, variant: str | None, stage: str) -> Pin | None:
        """The pinned manifest standing in for this stage output, if the spec pins it."""
        return self.pins.get((dataset, stage, None if stage == "preprocess" else variant))

    def is_pinned(self, path: str) -> bool:
        """Whether an input path is a pinned artifact (used as it is on disk, never rebuilt)."""
        return path in self._pinned_paths()

    def _pinned_paths(self) -> set[str]:
        paths = set()
        for pin in self.pins.values():
            paths.add(pin.path("manifest"))
            paths.update(str(pin.manifest.artifact(name)) for name in pin.manifest.data["artifacts"])
        return paths

    def upstream(self, dataset: str, variant: str | None, stage: str, artifact: str = "manifest") -> str:
        """Path of an upstream stage's manifest or checkpoint: pinned by the spec, else built here."""
        pin = self.pin(dataset, variant, stage)
        if pin is not None:
            return pin.path(artifact)
        return self.stage_path(dataset, variant, stage, artifact)

    def teacher(self, dataset: str, variant: str, stage: str, artifact: str = "manifest") -> list[str]:
        """student_kd depends on the teacher's same stage (pinned, distillation.teacher_path, or built here)."""
        if variant != "student_kd":
            return []
        pin = self.pin(dataset, "teacher", stage)
        if pin is not None:
            return [pin.path(artifact)]
        teacher_path = (self.config.get("extra_args") or {}).get("teacher_path") or (self.config.get("distillation") or {}).get("teacher_path")
        if teacher_path:
            base = Path(teacher_path.format(dataset=dataset, experiment_root=self.root))
            return [str(base / stage / _ARTIFACT_FILES[artifact])]
        return [self.stage_path(dataset, "teacher", stage, artifact)]

    def settings(self, stage: str, variant: str) -> dict:
        return stage_settings(self.config, stage, variant)
