"""What the pipeline is: its stages, model variants, data splits, and where every output lives.

This is the one definition of the pipeline's shape. The Snakemake rules, the DAG helpers, job
specs and pinning, the deployable detector, the CLI, evaluation and the generated JSON schemas
all read it, so adding a stage, a variant or an artifact is a change here, not a hunt for
copies (``tests/test_shape.py`` fails when a literal list of stages, variants or split names
appears anywhere else in src/, workflow/ or the hand-written schemas).

It sits below every layer (standard library only): the data layer needs the split names, the
stages need the detector's stages, the workflow needs everything.

Output paths are the project's public interface::

    ROOT/{dataset}/preprocess/manifest.json            (+ graphs/train/index.json, graphs/test/index.json, and
                                                         beside each index its shards: {set}/{k:05d}.shard)
    ROOT/{dataset}/{variant}/{stage}/manifest.json      (+ the stage's artifacts; onboarding/calibration.json
                                                         holds one recalibration per unseen vehicle, beside the
                                                         zero-shot checkpoints it never touches)
    ROOT/{dataset}/logs/[{variant}/]{rule}.log          ROOT/{dataset}/benchmarks/[{variant}/]{rule}.tsv
    ROOT/.resume/{dataset}/{variant}/{stage}/           resume state of an interrupted training stage
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

__all__ = [
    "DEFAULT_VARIANT",
    "DETECTOR_STAGES",
    "MANIFEST",
    "SIZES",
    "SPLITS",
    "STAGES",
    "STAGE_NAMES",
    "TEST_SPLITS",
    "TRAINING_STAGES",
    "TRAIN_SPLITS",
    "VALIDATION",
    "VARIANTS",
    "Layout",
    "Stage",
    "Variant",
    "ATTACK_FREE_SPLIT",
    "dependencies",
    "file_name",
    "graph_shard",
    "shard_artifact",
    "onboarding_set",
    "output_key",
]

#: Every stage directory holds its manifest under this name; it pins the stage's artifacts.
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: what it reads, whether it trains, what it writes.

    ``reads`` are upstream stages of the same variant (``preprocess`` is shared by all
    variants). ``artifacts`` maps an artifact's name, as the manifest records it, to its file
    inside the stage directory; the manifest pins each by sha256.
    """

    name: str
    reads: tuple[str, ...]
    per_variant: bool
    trains: bool
    artifacts: Mapping[str, str]
    summary: str
    #: the module whose ``run(job)`` the stage's rule calls (canids.workflow.jobs); its code and
    #: everything it imports from the package make the stage's code digest
    code: str

    @property
    def target(self) -> str:
        """What a user asks for to build this stage: its manifest, or evaluation's metrics."""
        return "metrics" if "metrics" in self.artifacts else "manifest"


def _stage(name: str, reads: tuple[str, ...], *, per_variant: bool, trains: bool, artifacts: dict[str, str], summary: str, code: str) -> Stage:
    return Stage(name, reads, per_variant, trains, MappingProxyType(artifacts), summary, code)


_CURVES = {"checkpoint": "model.ckpt", "training_curves": "training_curves.csv"}

#: The stages in the order they run; each reads only stages listed before it.
STAGES: Mapping[str, Stage] = MappingProxyType(
    {
        s.name: s
        for s in (
            _stage(
                "preprocess",
                (),
                per_variant=False,
                trains=False,
                artifacts={"train_graphs": "graphs/train/index.json", "test_graphs": "graphs/test/index.json"},
                summary="raw captures -> window graphs (train, validation, every test split)",
                code="canids.workflow.preprocess",
            ),
            _stage(
                "autoencoder",
                ("preprocess",),
                per_variant=True,
                trains=True,
                artifacts=dict(_CURVES),
                summary="VGAE trained on attack-free windows; its reconstruction error is an anomaly score",
                code="canids.workflow.train_autoencoder",
            ),
            _stage(
                "curriculum",
                ("preprocess", "autoencoder"),
                per_variant=True,
                trains=True,
                artifacts={**_CURVES, "curriculum_schedule": "curriculum_schedule.csv"},
                summary="GAT classifier trained easy-to-hard, difficulty from the VGAE",
                code="canids.workflow.train_curriculum",
            ),
            _stage(
                "fusion",
                ("preprocess", "autoencoder", "curriculum"),
                per_variant=True,
                trains=True,
                artifacts=dict(_CURVES),
                summary="DQN agent weighing the VGAE against the GAT per window",
                code="canids.workflow.train_fusion",
            ),
            _stage(
                "onboarding",
                ("preprocess", "autoencoder", "curriculum", "fusion"),
                per_variant=True,
                trains=False,
                artifacts={"calibration": "calibration.json"},
                summary="the detector recalibrated, without labels or retraining, to each unseen vehicle's attack-free captures",
                code="canids.workflow.onboard",
            ),
            _stage(
                "evaluation",
                ("preprocess", "autoencoder", "curriculum", "fusion", "onboarding"),
                per_variant=True,
                trains=False,
                artifacts={
                    "metrics": "metrics.json",
                    "roc_pr_curves": "roc_pr_curves.png",
                    "confusion_matrices": "confusion_matrices.png",
                    "training_curves": "training_curves.png",
                },
                summary="every detector on every test split: metrics.json and figures",
                code="canids.workflow.evaluate",
            ),
        )
    }
)
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)
#: Stages that train a model (resume state, checkpoint, training curves).
TRAINING_STAGES: tuple[str, ...] = tuple(s.name for s in STAGES.values() if s.trains)
#: A deployable detector is the three trained models of one variant run.
DETECTOR_STAGES: tuple[str, ...] = TRAINING_STAGES


@dataclass(frozen=True)
class Variant:
    """A model variant: its architecture size and, when distilled, the variant it learns from."""

    name: str
    size: str
    teacher: str | None
    summary: str


#: Model variants. ``size`` names the per-size settings section (config: ``autoencoder.teacher``...).
VARIANTS: Mapping[str, Variant] = MappingProxyType(
    {
        v.name: v
        for v in (
            Variant("teacher", "teacher", None, "the full-size models"),
            Variant("student", "student", None, "small models (at most 10 % of the teacher's parameters) trained alone"),
            Variant("student_kd", "student", "teacher", "the student architecture distilled from the teacher's same stage"),
        )
    }
)
DEFAULT_VARIANT = next(iter(VARIANTS))
#: Architecture sizes, in the order the variants introduce them.
SIZES: tuple[str, ...] = tuple(dict.fromkeys(v.size for v in VARIANTS.values()))

#: can-train-and-test split directories, in their canonical order: two training, six test splits.
TRAIN_SPLITS: tuple[str, ...] = ("train_01_attack_free", "train_02_with_attacks")
TEST_SPLITS: tuple[str, ...] = (
    "test_01_known_vehicle_known_attack",
    "test_02_unknown_vehicle_known_attack",
    "test_03_known_vehicle_unknown_attack",
    "test_04_unknown_vehicle_unknown_attack",
    "test_05_suppress",
    "test_06_masquerade",
)
SPLITS: tuple[str, ...] = TRAIN_SPLITS + TEST_SPLITS
#: The attack-free training split: the VGAE's normal, and the only source of the CAN-ID vocabulary.
ATTACK_FREE_SPLIT = TRAIN_SPLITS[0]
#: Name of the held-out part of the training splits (a contiguous time block of each capture).
VALIDATION = "val"


def onboarding_set(split: str) -> str:
    """Name of the graph set (and of the fingerprinted captures) onboarding the vehicle of test split ``split``."""
    return f"onboarding.{split}"


def output_key(stage: str, variant: str | None) -> tuple[str, str | None]:
    """(stage, variant) naming one stage output; a stage shared by all variants has variant None."""
    return stage, variant if STAGES[stage].per_variant else None


def dependencies(stage: str, variant: str | None) -> list[tuple[str, str | None]]:
    """The (stage, variant) outputs that ``stage`` of ``variant`` reads: its edges in the DAG.

    Preprocess has no variant (None); a distilled variant also reads its teacher's same stage.
    """
    spec = STAGES[stage]
    deps = [output_key(up, variant) for up in spec.reads]
    teacher = VARIANTS[variant].teacher if variant in VARIANTS else None
    if teacher and spec.trains:
        deps.append((stage, teacher))
    return deps


def file_name(stage: str, artifact: str = "manifest") -> str:
    """The file of a stage's manifest (``"manifest"``) or artifact, inside the stage directory."""
    if artifact == "manifest":
        return MANIFEST
    try:
        return STAGES[stage].artifacts[artifact]
    except KeyError:
        raise KeyError(f"stage {stage!r} has no artifact {artifact!r}; it has: manifest, {', '.join(STAGES[stage].artifacts)}") from None


def graph_shard(graph_set: str, k: int) -> str:
    """Shard ``k`` of a graph set, relative to the directory of its cache's index (``canids.graphs.shards``)."""
    return f"{graph_set}/{k:05d}.shard"


def shard_artifact(artifact: str, graph_set: str, k: int) -> str:
    """The name under which a stage manifest pins shard ``k`` of ``graph_set`` of the cache ``artifact``."""
    return f"{artifact}/{graph_set}/{k:05d}"


#: A study's summary (``canids.workflow.tables``), under ``ROOT/studies/NAME/``: artifact -> file.
STUDY_FILES = {
    "table_md": "table.md",
    "table_csv": "table.csv",
    "table_tex": "table.tex",
    "table_json": "table.json",
    "seed_spread": "seed_spread.png",
}
#: The study name when the job spec has none.
DEFAULT_STUDY = "study"


class Layout:
    """Where each output lives under an experiment root.

    Arguments may be Snakemake wildcards (``"{dataset}"``), so the rules and the Python code
    spell every path with the same functions. ``variant`` is ignored for stages shared by all
    variants (preprocess). ``run`` names a study point's result (``canids.study``): '' for the
    default run, else ``+path=value+path=value...`` after the variant (or after ``preprocess``).
    """

    def __init__(self, root: str) -> None:
        self.root = str(root).rstrip("/") or "."

    def stage_dir(self, dataset: str, variant: str | None, stage: str, run: str = "") -> str:
        if STAGES[stage].per_variant:
            return f"{self.root}/{dataset}/{variant}{run}/{stage}"
        return f"{self.root}/{dataset}/{stage}{run}"

    def file(self, dataset: str, variant: str | None, stage: str, artifact: str = "manifest", run: str = "") -> str:
        """A stage's manifest (``"manifest"``) or one of its artifacts, by artifact name."""
        return f"{self.stage_dir(dataset, variant, stage, run)}/{file_name(stage, artifact)}"

    def target(self, dataset: str, variant: str | None, stage: str, run: str = "") -> str:
        """The file a user asks for to build ``stage`` (see ``Stage.target``)."""
        return self.file(dataset, variant, stage, STAGES[stage].target, run)

    def _per_job(self, kind: str, suffix: str, dataset: str, variant: str | None, rule: str, run: str) -> str:
        if rule in STAGES and not STAGES[rule].per_variant or variant is None:
            return f"{self.root}/{dataset}/{kind}/{rule}{run}.{suffix}"
        return f"{self.root}/{dataset}/{kind}/{variant}{run}/{rule}.{suffix}"

    def parse(self, path: str) -> tuple[str, str | None, str, str] | None:
        """(dataset, variant, stage, run) of a path inside a stage directory under this root, else None."""
        import os

        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(self.root))
        parts = rel.split(os.sep)
        if rel.startswith("..") or len(parts) < 3:
            return None
        stage, _, run = parts[1].partition("+")
        if stage in STAGES and not STAGES[stage].per_variant:
            return parts[0], None, stage, "+" + run if run else ""
        variant, _, run = parts[1].partition("+")
        if len(parts) >= 4 and variant in VARIANTS and parts[2] in STAGES and STAGES[parts[2]].per_variant:
            return parts[0], variant, parts[2], "+" + run if run else ""
        return None

    def log(self, dataset: str, variant: str | None, rule: str, run: str = "") -> str:
        return self._per_job("logs", "log", dataset, variant, rule, run)

    def benchmark(self, dataset: str, variant: str | None, rule: str, run: str = "") -> str:
        return self._per_job("benchmarks", "tsv", dataset, variant, rule, run)

    def resume_dir(self, dataset: str, variant: str, stage: str, run: str = "") -> str:
        """Resume state of an interrupted training stage: a side path Snakemake never deletes."""
        return f"{self.root}/.resume/{dataset}/{variant}{run}/{stage}"

    def study(self, name: str, artifact: str) -> str:
        """A study's table or figure (``STUDY_FILES``): one place per study, across datasets."""
        return f"{self.root}/studies/{name}/{STUDY_FILES[artifact]}"

    @classmethod
    def of_study_file(cls, path: str) -> "Layout":
        """The layout whose ``study`` wrote ``path`` (ROOT/studies/NAME/FILE)."""
        from pathlib import Path

        return cls(str(Path(path).parents[2]))

    def study_log(self, name: str) -> str:
        return f"{self.root}/studies/{name}/logs/study.log"

    def generated_receipt(self, dataset: str) -> str:
        """What the generator of a generated dataset (``synthetic``) writes last."""
        return f"{self.root}/{dataset}/raw/generator.json"
