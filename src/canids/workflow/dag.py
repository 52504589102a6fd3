"""What the Snakefile asks of Python: targets, raw inputs, upstream manifests, settings.

Kept out of the .smk files so the rules stay declarative and this logic is unit-testable
without Snakemake. Output paths are the public interface:

    ROOT/{dataset}/preprocess/manifest.json
    ROOT/{dataset}/{variant}/{autoencoder,curriculum,fusion}/{manifest.json,model.ckpt}
    ROOT/{dataset}/{variant}/evaluation/metrics.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from canids.data.catalog import Catalog, load_catalog
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

    @classmethod
    def from_config(cls, config: dict) -> "Pipeline":
        root = str(experiment_root(config))
        catalog = load_catalog(resolve_repo_path(config["catalog"]), data_root=config.get("data_root"), experiment_root=root)
        return cls(config=config, catalog=catalog, root=root)

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

    def upstream(self, dataset: str, variant: str | None, stage: str, artifact: str = "manifest") -> str:
        """Path of an upstream stage's manifest or checkpoint, built by this workflow."""
        return self.stage_path(dataset, variant, stage, artifact)

    def teacher(self, dataset: str, variant: str, stage: str, artifact: str = "manifest") -> list[str]:
        """student_kd depends on the teacher's same stage (or on distillation.teacher_path)."""
        if variant != "student_kd":
            return []
        teacher_path = (self.config.get("extra_args") or {}).get("teacher_path") or (self.config.get("distillation") or {}).get("teacher_path")
        if teacher_path:
            base = Path(teacher_path.format(dataset=dataset, experiment_root=self.root))
            return [str(base / stage / _ARTIFACT_FILES[artifact])]
        return [self.stage_path(dataset, "teacher", stage, artifact)]

    def settings(self, stage: str, variant: str) -> dict:
        return stage_settings(self.config, stage, variant)
