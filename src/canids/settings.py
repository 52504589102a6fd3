"""Every setting of the pipeline, once: its type, bounds, default and meaning.

The workflow's configuration (config/config.yaml, job specs, ``--config``) is a set of layers
over the defaults declared here. ``load_settings`` turns the merged layers into typed, frozen
``Settings`` exactly once; the stages receive these objects and never fall back on a default
of their own. ``workflow/schemas/config.schema.yaml`` and the settings reference in
config/README.md are generated from these classes (``python -m canids.workflow.schemas``), so
adding a setting is one field here plus the code that reads it.

A field is declared with ``setting(default, meaning, **json_schema_bounds)``
(canids.typed_config); model sizes differ between the teacher and the student, so each
per-size section says the student's values as changes to the teacher's.

Standard library only: the Snakefile reads this at parse time, before any torch import.
"""

from __future__ import annotations

import dataclasses
import os
import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Mapping

from canids.shape import SIZES, STAGE_NAMES, STAGES, TRAINING_STAGES, VARIANTS
from canids.typed_config import REQUIRED, BySize, build, by_size, defaults, field_schema, section_schema, setting, to_plain

__all__ = [
    "EXTRA_ARGS",
    "MAX_SEED",
    "AutoencoderSettings",
    "CurriculumPacing",
    "CurriculumSettings",
    "DQNArchitecture",
    "DistillationSettings",
    "FusionSettings",
    "GATArchitecture",
    "OptimiserSettings",
    "PreprocessSettings",
    "Settings",
    "SyntheticSettings",
    "TrainingSettings",
    "VGAEArchitecture",
    "load_settings",
    "settings_schema",
    "stage_settings",
    "to_plain",
]

#: Largest training seed: Lightning's ``seed_everything`` takes unsigned 32-bit seeds.
MAX_SEED = 2**32 - 1
#: Upper bounds that catch a typo (an extra zero) before a job sits in a queue for days.
MAX_EPOCHS = 10_000
MAX_STEPS = 10_000_000


_NAME = {"type": "string", "pattern": r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]*$", "x-expected": "a name of letters, digits, '_', '.' or '-'"}
DATASETS_SCHEMA = {"oneOf": [{"const": "all"}, {"type": "array", "minItems": 1, "uniqueItems": True, "items": _NAME}], "x-expected": '"all" or a non-empty list of dataset names from the catalog (config/datasets.yaml) such as ["hcrl_sa"]'}
MANIFESTS_SCHEMA = {"type": "object", "propertyNames": {**_NAME, "x-expected": 'a dataset name or "default"'}, "additionalProperties": {"type": "string", "minLength": 1, "x-expected": "a non-empty manifest path (placeholders {dataset}, {experiment_root})"}}


SEEDS_SCHEMA = {"type": ["array", "null"], "minItems": 1, "uniqueItems": True, "items": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}, "x-expected": "a non-empty list of distinct training seeds (integers from 0 to 4294967295), or null"}
_SWEEP_PATH = rf"^({'|'.join(TRAINING_STAGES)})\.({'|'.join(SIZES)})\.[A-Za-z0-9_.]+$|^(preprocess|training|distillation)\.[A-Za-z0-9_.]+$"
SWEEP_SCHEMA = {"type": "object", "propertyNames": {"type": "string", "pattern": _SWEEP_PATH, "x-expected": "a settings path such as curriculum.teacher.learning_rate (a stage's size section, preprocess, training or distillation)"}, "additionalProperties": {"type": "array", "minItems": 1, "x-expected": "a non-empty list of values"}}


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class SyntheticSettings:
    seed: int = setting(0, "generator seed; the same seed gives the same bytes", minimum=0, maximum=MAX_SEED)
    scale: float = setting(1.0, "multiplies every capture's duration (1.0 is about 600 k frames)", exclusiveMinimum=0, maximum=1000)
    vehicles: int = setting(2, "vehicles with distinct CAN-ID sets; the second is the unknown vehicle of test_02/test_04", minimum=2, maximum=64)


@dataclass(frozen=True)
class PreprocessSettings:
    window_size: int = setting(100, "frames per window (one graph)", minimum=2, maximum=100_000)
    stride: int | None = setting(None, "frames between window starts; null means window_size (no overlap)", minimum=1, maximum=100_000)
    val_fraction: float = setting(0.2, "share of every training capture held out for validation: one contiguous time block whose attack share matches the capture's", exclusiveMinimum=0, exclusiveMaximum=1)
    strict: bool = setting(True, "stop at the first malformed row (file, line and value in the message); false skips bad rows and counts them per file in the manifest")
    shard_windows: int = setting(20_000, "windows per graph-cache shard: preprocessing holds at most one shard per graph set in memory", minimum=1, maximum=10_000_000)
    chunk_frames: int = setting(1_000_000, "frames of a capture built into graphs at once (about 0.5 KB each at the peak): with shard_windows, this bounds preprocessing's memory whatever the captures' lengths; the graphs are the same for any value", minimum=2, maximum=1_000_000_000)


@dataclass(frozen=True)
class TrainingSettings:
    seed: int = setting(0, "seeds Python, NumPy and torch (Lightning's seed_everything) in every training stage", minimum=0, maximum=MAX_SEED)
    accelerator: Literal["auto", "cpu", "cuda"] = setting("auto", "auto uses a GPU when torch finds one, else the CPU; cpu or cuda to force")
    optimize_batch_size: bool = setting(True, "run Lightning's batch-size tuner (power mode) from batch_size; the size chosen is recorded in the manifest")
    batch_size_max_trials: int = setting(2, "doublings the batch-size tuner may try (on a CPU nothing runs out of memory, so this bounds it)", minimum=1, maximum=20)


@dataclass(frozen=True)
class DistillationSettings:
    temperature: float = setting(4.0, "softmax temperature of the teacher GAT's soft targets", exclusiveMinimum=0, maximum=100)
    alpha: float = setting(0.7, "weight of the distillation term (1 - alpha on the hard labels)", minimum=0, maximum=1)
    teacher_path: str | None = setting(None, "a teacher variant directory holding autoencoder/, curriculum/, fusion/ (placeholders {dataset}, {experiment_root}); null: the workflow trains the teacher of the same dataset first", minLength=1, **{"x-expected": "a non-empty path template to a teacher variant directory (placeholders {dataset}, {experiment_root})"})


@dataclass(frozen=True)
class VGAEArchitecture:
    hidden: int = setting(32, "channels per attention head", minimum=1, maximum=4096)
    heads: int = setting(4, "attention heads per GATv2 layer", minimum=1, maximum=64)
    layers: int = setting(2, "GATv2 layers of the encoder", minimum=0, maximum=16)
    latent: int = setting(48, "latent width", minimum=1, maximum=4096)
    embed_dim: int = setting(0, "width of a learnt CAN-ID embedding; 0 (off) keeps the model vehicle-agnostic (an unseen vehicle's IDs are all unknown)", minimum=0, maximum=1024)
    id_weight: float = setting(0.0, "weight of CAN-ID reconstruction in the loss and the score; 0 (off) for the same reason as embed_dim", minimum=0)
    edge_weight: float = setting(0.05, "weight of edge reconstruction in the loss", minimum=0)
    kl_weight: float = setting(0.01, "weight of the KL term in the loss", minimum=0)
    graph_weight: float = setting(1.0, "weight of window-feature reconstruction in the loss", minimum=0)


@dataclass(frozen=True)
class GATArchitecture:
    hidden: int = setting(16, "channels per attention head", minimum=1, maximum=4096)
    heads: int = setting(4, "attention heads per GATv2 layer", minimum=1, maximum=64)
    layers: int = setting(3, "GATv2 layers (jumping knowledge concatenates all of them)", minimum=0, maximum=16)
    embed_dim: int = setting(0, "width of a learnt CAN-ID embedding; 0 (off) keeps the model vehicle-agnostic", minimum=0, maximum=1024)
    dropout: float = setting(0.1, "dropout after each layer and in the head", minimum=0, exclusiveMaximum=1)


@dataclass(frozen=True)
class DQNArchitecture:
    hidden: int = setting(128, "width of the Q-network's hidden layers", minimum=1, maximum=4096)
    layers: int = setting(2, "hidden layers of the Q-network", minimum=1, maximum=16)
    n_actions: int = setting(21, "fusion weights, evenly spaced over [0, 1]", minimum=2, maximum=1001)


@dataclass(frozen=True)
class CurriculumPacing:
    start_fraction: float = setting(0.3, "share of each class, easiest first, available in epoch 1", exclusiveMinimum=0, maximum=1)
    ramp_epochs: int = setting(5, "epochs to reach the full training set", minimum=0, maximum=MAX_EPOCHS)
    attack_share: float = setting(0.3, "share of attack windows per epoch, balanced over attack types", minimum=0, exclusiveMaximum=1)
    epoch_windows: int | None = setting(None, "windows per epoch; null: the paced pool's size", minimum=1)


@dataclass(frozen=True)
class OptimiserSettings:
    """What the two Lightning-trained stages share."""

    epochs: int = setting(25, "maximum epochs (early stopping may end sooner)", minimum=1, maximum=MAX_EPOCHS)
    batch_size: int = setting(64, "starting batch size (the tuner may scale it)", minimum=1, maximum=1_000_000)
    learning_rate: float = setting(0.005, "AdamW learning rate", exclusiveMinimum=0, maximum=10)
    weight_decay: float = setting(0.0001, "AdamW weight decay", minimum=0, maximum=10)
    patience: int = setting(4, "early-stopping patience in epochs on the monitored validation metric (VGAE: reconstruction score; GAT: attack-class F1)", minimum=1, maximum=MAX_EPOCHS)


@dataclass(frozen=True)
class AutoencoderSettings(OptimiserSettings):
    model: VGAEArchitecture = setting(VGAEArchitecture(), "VGAE architecture")


@dataclass(frozen=True)
class CurriculumSettings(OptimiserSettings):
    epochs: int = setting(10, "maximum epochs (early stopping may end sooner)", minimum=1, maximum=MAX_EPOCHS)
    learning_rate: float = setting(0.001, "AdamW learning rate", exclusiveMinimum=0, maximum=10)
    model: GATArchitecture = setting(GATArchitecture(), "GAT architecture")
    curriculum: CurriculumPacing = setting(CurriculumPacing(), "pacing: which windows each epoch may draw, easiest first")


@dataclass(frozen=True)
class FusionSettings:
    steps: int = setting(2000, "DQN training steps (each acts in parallel_envs environments and makes one update)", minimum=1, maximum=MAX_STEPS)
    parallel_envs: int = setting(64, "environments acting per step", minimum=1, maximum=100_000)
    batch_size: int = setting(256, "replay batch per update", minimum=1, maximum=1_000_000)
    learning_rate: float = setting(0.001, "Adam learning rate", exclusiveMinimum=0, maximum=10)
    gamma: float = setting(0.2, "discount of the next window's value", minimum=0, maximum=1)
    epsilon_start: float = setting(1.0, "exploration at the first step", minimum=0, maximum=1)
    epsilon_end: float = setting(0.02, "exploration it decays to (exponentially)", minimum=0, maximum=1)
    epsilon_decay_steps: int = setting(1000, "steps over which exploration decays", minimum=1, maximum=MAX_STEPS)
    target_update: int = setting(100, "steps between target-network syncs", minimum=1, maximum=MAX_STEPS)
    replay_capacity: int = setting(50_000, "replay buffer size", minimum=1, maximum=100_000_000)
    eval_every: int = setting(100, "steps between validations (the kept policy is the best validated one)", minimum=1, maximum=MAX_STEPS)
    simulated_failure_share: float = setting(
        0.5,
        "per validation window, this many extra training windows per simulated failure (the GAT misses an attack, the VGAE misses one, the GAT raises a false alarm), each taking that detector's output from a random window of the other class; 0 turns it off",
        minimum=0,
        maximum=100,
    )
    false_alarms_per_hour: float = setting(
        10.0,
        "false-alarm budget: every decision threshold (fused, VGAE, GAT) is raised, on the held-out validation windows' attack-free traffic, until their false alarms per hour stay within it; never lowered below the F1-optimal 0.5, which evaluation reports beside it",
        exclusiveMinimum=0,
        maximum=1_000_000,
    )
    familiar_id_share: float = setting(
        0.9,
        "a window with a smaller share of its CAN IDs in the training vocabulary is another vehicle's, and the VGAE decides it alone at its own threshold (the GAT is a classifier out of its domain there); 0 trusts the fusion on every window",
        minimum=0,
        maximum=1,
    )
    model: DQNArchitecture = setting(DQNArchitecture(), "Q-network architecture")


_STUDENT_AUTOENCODER = dataclasses.replace(AutoencoderSettings(), learning_rate=0.008, model=VGAEArchitecture(hidden=16, heads=1, layers=1, latent=16))
_STUDENT_CURRICULUM = dataclasses.replace(CurriculumSettings(), learning_rate=0.002, model=GATArchitecture(hidden=16, heads=1, layers=1, dropout=0.0))
_STUDENT_FUSION = dataclasses.replace(FusionSettings(), learning_rate=0.002, model=DQNArchitecture(hidden=32, layers=1))


@dataclass(frozen=True)
class Settings:
    """The whole configuration, typed. Built once by ``load_settings``."""

    datasets: str | tuple[str, ...] = setting(REQUIRED, 'catalog names (config/datasets.yaml) the default target builds, or "all"', schema=lambda: DATASETS_SCHEMA)
    variants: tuple[str, ...] = setting(REQUIRED, "model variants to build: " + ", ".join(f"{v.name} ({v.summary})" for v in VARIANTS.values()), minItems=1, uniqueItems=True, choices=tuple(VARIANTS), **{"x-expected": "a non-empty list of distinct variants: " + ", ".join(VARIANTS)})
    training_types: tuple[str, ...] = setting(REQUIRED, "stages to build per dataset x variant; each pulls in what it reads: " + ", ".join(STAGE_NAMES), minItems=1, uniqueItems=True, choices=STAGE_NAMES, **{"x-expected": "a non-empty list of distinct stages: " + ", ".join(STAGE_NAMES)})
    variant: str | None = setting(None, "a single variant (job specs); overrides variants", choices=tuple(VARIANTS))
    name: str | None = setting(None, "the job's name (job specs)", pattern=r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]*$", **{"x-expected": "a job name of letters, digits, '_', '.' or '-' such as \"my_job\""})
    data_root: str | None = setting(None, "where raw data lives (<data_root>/<dataset>/<split_dir>/<capture>); null: $CAN_DATA_ROOT, else ./data")
    experiment_root: str | None = setting(None, "where outputs go; $CAN_EXPERIMENT_ROOT wins, else this, else ./experiment_runs")
    catalog: str = setting("config/datasets.yaml", "the dataset catalog")
    dependency_manifests: dict[str, str] = setting({}, 'pinned upstream artifacts: {"default": template, DATASET: template} of stage manifests or dependency bundles (placeholders {dataset}, {experiment_root}); see docs/pinning.md', schema=lambda: MANIFESTS_SCHEMA)
    extra_args: dict[str, Any] = setting({}, "typed overrides, each applied to every stage it concerns (job specs); see EXTRA_ARGS in canids.settings", schema=lambda: {"type": "object", "additionalProperties": False, "properties": extra_args_schema()})
    seeds: tuple[int, ...] | None = setting(None, "a study: train every point with each of these training seeds (training.seed; the data and its splits stay fixed); null: one run with training.seed", schema=lambda: SEEDS_SCHEMA)
    sweep: dict[str, Any] = setting({}, "a study: settings paths (e.g. curriculum.teacher.learning_rate), each with a list of values; every combination (x seeds) is one point, its results beside the default run's (ROOT/DATASET/VARIANT+RUN/...); see canids.study", schema=lambda: SWEEP_SCHEMA)
    max_jobs: int = setting(1000, "a study that would make more stage results than this is refused before any job; raise it on purpose for a bigger one", minimum=1, maximum=1_000_000)
    synthetic: SyntheticSettings = setting(SyntheticSettings(), "the embedded synthetic dataset's generator")
    preprocess: PreprocessSettings = setting(PreprocessSettings(), "captures -> window graphs")
    training: TrainingSettings = setting(TrainingSettings(), "shared by the training stages")
    distillation: DistillationSettings = setting(DistillationSettings(), "student_kd: distillation from the teacher")
    autoencoder: BySize = by_size("VGAE training, per size", teacher=AutoencoderSettings(), student=_STUDENT_AUTOENCODER)
    curriculum: BySize = by_size("GAT curriculum training, per size", teacher=CurriculumSettings(), student=_STUDENT_CURRICULUM)
    fusion: BySize = by_size("DQN fusion training, per size", teacher=FusionSettings(), student=_STUDENT_FUSION)

    # ------------------------------------------------------------------ views
    def root(self) -> Path:
        """``$CAN_EXPERIMENT_ROOT``, else ``experiment_root``, else ``experiment_runs``."""
        return Path(os.environ.get("CAN_EXPERIMENT_ROOT") or self.experiment_root or "experiment_runs")

    def selected_variants(self) -> list[str]:
        return [self.variant] if self.variant else list(self.variants)

    def value(self, path: str) -> Any:
        """The setting at a dotted path (``curriculum.teacher.learning_rate``)."""
        node: Any = to_plain(self)
        for part in path.split("."):
            node = node[part]
        return node

    def points(self) -> list:
        """The study's points (``canids.study``): one, the default run, without seeds or sweep."""
        from canids.study import SEED, points

        paths = [*self.sweep, *([SEED] if self.seeds else [])]
        return points(self.seeds, self.sweep, {p: self.value(p) for p in paths})

    def at(self, run: str) -> "Settings":
        """These settings as one study point's run (``canids.study``) makes them: its overrides applied."""
        if not run:
            return self
        from canids.study import parse_run
        from canids.validation import coerce, node_at

        plain, schema = to_plain(self), _schema_for_reading()
        for path, text in parse_run(run):
            parts = path.split(".")
            node = plain
            for part in parts[:-1]:
                node = node[part]
            node[parts[-1]] = coerce(text, node_at(schema, parts))
        return build(Settings, plain)

    def for_variant(self, stage: str, variant: str) -> Any:
        """The typed section ``stage`` trains ``variant`` with (its size's settings)."""
        return getattr(self, stage)[VARIANTS[variant].size]


#: ``extra_args`` keys: each overrides these settings (``*`` = every size), so a job spec can say
#: "3 epochs" once for all stages. ``dependency_manifest`` is an alias of
#: ``dependency_manifests.default`` (see canids.workflow.pins).
EXTRA_ARGS: Mapping[str, tuple[str, ...]] = {
    "epochs": ("autoencoder.*.epochs", "curriculum.*.epochs"),
    "batch_size": ("autoencoder.*.batch_size", "curriculum.*.batch_size"),
    "optimize_batch_size": ("training.optimize_batch_size",),
    "learning_rate": ("autoencoder.*.learning_rate", "curriculum.*.learning_rate", "fusion.*.learning_rate"),
    "patience": ("autoencoder.*.patience", "curriculum.*.patience"),
    "steps": ("fusion.*.steps",),
    "seed": ("training.seed",),
    "accelerator": ("training.accelerator",),
    "window_size": ("preprocess.window_size",),
    "stride": ("preprocess.stride",),
    "teacher_path": ("distillation.teacher_path",),
    "dependency_manifest": (),
}


# --------------------------------------------------------------------------- the schema


def settings_schema() -> dict:
    """The JSON Schema of the whole configuration: the required keys, and every other key's default."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "canids workflow configuration",
        "description": "GENERATED by `python -m canids.workflow.schemas` from canids.settings; do not edit. config/config.yaml, job specs (--configfile) and --config are layers over these defaults.",
        **section_schema(Settings),
    }


@functools.cache
def _schema_for_reading() -> dict:
    """``settings_schema()`` built once, for code that only reads it (a study's many runs)."""
    return settings_schema()


def _target_schema(path: str) -> dict:
    """Schema of the setting at ``path`` (``*`` = a size), without its default and meaning."""
    cls, value, node = Settings, defaults(Settings), {}
    for part in path.split("."):
        if isinstance(value, BySize):
            cls, value = type(value[SIZES[0]]), value[SIZES[0]]
            continue
        f = next(f for f in fields(cls) if f.name == part)
        node = field_schema(cls, f, getattr(value, part))
        cls, value = type(getattr(value, part)), getattr(value, part)
    return {k: v for k, v in node.items() if k not in ("default", "description")}


def extra_args_schema() -> dict:
    """Each ``extra_args`` key takes the type and bounds of the settings it overrides."""
    out = {}
    for key, targets in EXTRA_ARGS.items():
        if targets:
            out[key] = {**_target_schema(targets[0]), "description": "overrides " + ", ".join(targets)}
        else:
            out[key] = {"type": "string", "minLength": 1, "description": "same as dependency_manifests.default", "x-expected": "a non-empty manifest path template (same as dependency_manifests.default)"}
    return out


# --------------------------------------------------------------------------- resolution


def _override(plain: dict, path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    for key in SIZES if head == "*" else (head,):
        if rest:
            _override(plain[key], rest, value)
        else:
            plain[key] = value


def load_settings(config: Mapping[str, Any]) -> Settings:
    """Typed settings from the merged config layers, with ``extra_args`` applied.

    ``config`` must already have passed the schema check (canids.workflow.config).
    """
    settings = build(Settings, config)
    if not settings.extra_args:
        return settings
    plain = to_plain(settings)
    for key, value in settings.extra_args.items():
        for target in EXTRA_ARGS[key]:
            _override(plain, target, value)
    return build(Settings, plain)


def stage_settings(settings: Settings, stage: str, variant: str | None) -> dict:
    """The flat, resolved settings ``stage`` runs with for ``variant``: what its manifest records.

    Two stage results with equal ``stage_settings`` and equal inputs are comparable; the
    Snakemake rules carry this as a param so a change re-runs the stage.
    """
    if stage == "preprocess":
        pre = settings.preprocess
        return {"stage": stage, **to_plain(pre), "stride": pre.stride or pre.window_size}
    if not STAGES[stage].trains:
        return {"stage": stage, "variant": variant}
    section = settings.for_variant(stage, variant)
    resolved = {"stage": stage, "variant": variant, **to_plain(section), "seed": settings.training.seed, "accelerator": settings.training.accelerator}
    if isinstance(section, OptimiserSettings):
        resolved.update(optimize_batch_size=settings.training.optimize_batch_size, batch_size_max_trials=settings.training.batch_size_max_trials)
    if VARIANTS[variant].teacher:
        resolved["distillation"] = {"temperature": settings.distillation.temperature, "alpha": settings.distillation.alpha}
    return resolved
