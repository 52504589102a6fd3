"""What the Snakefile asks of Python: targets, raw inputs, each rule's inputs, settings.

Kept out of the .smk files so the rules stay declarative and this logic is unit-testable
without Snakemake. Stages, their edges and their paths come from ``canids.shape``; a rule's
inputs are the outputs of the stages it reads (``Pipeline.inputs``).

A job spec's dependency manifests pin upstream stages (canids.workflow.pins): for a pinned
(dataset, stage, variant), ``upstream`` and ``teacher`` return the verified pinned manifest
or checkpoint instead of the workflow's own output path, and the rules mark those inputs
``before_update`` so that Snakemake never schedules a job to (re)build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from canids.data.catalog import Catalog, load_catalog
from canids.settings import Settings, stage_settings
from canids.shape import DEFAULT_STUDY, STAGES, STUDY_FILES, VARIANTS, Layout, dependencies, file_name, output_key
from canids.study import SEED, parse_run, restrict, run_name
from canids.workflow.config import ConfigSources, JobSpecError
from canids.workflow.pins import Pin, check_template, resolve_pins

__all__ = ["Pipeline", "REPO_ROOT", "resolve_repo_path", "selected_datasets"]

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


def selected_datasets(settings: Settings, catalog: Catalog, origin: Callable[[str], str]) -> list[str]:
    """The job's datasets, each checked against the catalog (the message names the field)."""
    value = settings.datasets
    items = [value] if isinstance(value, str) else list(value or [])
    known = ", ".join(catalog.names)
    if not items:
        raise JobSpecError(f"{origin('datasets')}: datasets: expected \"all\" or a non-empty list of dataset names from {catalog.source} ({known}), got []")
    for i, item in enumerate(items):
        if item != "all" and item not in catalog.names:
            raise JobSpecError(f"{origin('datasets')}: datasets[{i}]: unknown dataset {item!r}; expected \"all\" or one of {known} (catalog {catalog.source})")
    return catalog.expand(value)


@dataclass
class Pipeline:
    settings: Settings
    catalog: Catalog
    layout: Layout
    #: (dataset, stage, variant or None for a shared stage) -> verified pinned manifest
    pins: dict[tuple[str, str, str | None], Pin] = field(default_factory=dict)
    #: run name -> the settings of that study point (``Settings.at``), built once per run
    _at: dict[str, Settings] = field(default_factory=dict, repr=False)

    @property
    def root(self) -> str:
        return self.layout.root

    @classmethod
    def from_settings(cls, settings: Settings, sources: ConfigSources | None = None) -> "Pipeline":
        """Resolve roots and catalog, check the selected datasets and verify every pinned manifest.

        ``sources`` says which config file set each key, so errors name the job spec.
        Everything here runs at parse time: a bad spec or a tampered pin fails ``snakemake -n``.
        """
        origin = (sources or ConfigSources()).origin
        root = str(settings.root())
        catalog = load_catalog(resolve_repo_path(settings.catalog), data_root=settings.data_root, experiment_root=root)
        pipeline = cls(settings=settings, catalog=catalog, layout=Layout(root))
        datasets = selected_datasets(settings, catalog, origin)
        if settings.distillation.teacher_path:
            field = "extra_args.teacher_path" if "teacher_path" in settings.extra_args else "distillation.teacher_path"
            check_template(settings.distillation.teacher_path, f"{origin(field.split('.')[0])}: {field}")
        pipeline.pins = resolve_pins(settings, datasets=datasets, catalog_names=catalog.names, root=root, origin=origin)
        pipeline.check_study_size(origin)
        return pipeline

    def study_results(self) -> set[tuple[str, str | None, str, str]]:
        """Every distinct stage result the targets need over all study points (pins excluded)."""
        out: set[tuple[str, str | None, str, str]] = set()
        todo = [self.layout.parse(t) for t in self.targets()]
        while todo:
            key = todo.pop()
            if key is None or key in out:
                continue
            out.add(key)
            dataset, variant, stage, run = key
            for dep_stage, dep_variant in dependencies(stage, variant):
                if self.pin(dataset, dep_variant, dep_stage) is None:
                    todo.append((dataset, dep_variant, dep_stage, restrict(run, dep_stage, dep_variant)))
        return out

    def check_study_size(self, origin: Callable[[str], str]) -> None:
        """Refuse a study bigger than ``max_jobs`` stage results before any job."""
        if len(self.settings.points()) < 2:
            return
        n = len(self.study_results())
        if n > self.settings.max_jobs:
            raise JobSpecError(
                f"{origin('sweep' if self.settings.sweep else 'seeds')}: the study makes {n} stage results ({len(self.settings.points())} points x datasets x variants), "
                f"more than max_jobs {self.settings.max_jobs}; expected a smaller sweep or fewer seeds, or a bigger study asked for on purpose "
                f'("max_jobs": {n} in the job spec, or --config max_jobs={n})'
            )

    # ------------------------------------------------------------------ targets
    def datasets(self) -> list[str]:
        return self.catalog.expand(self.settings.datasets)

    def variants(self) -> list[str]:
        return self.settings.selected_variants()

    def stage_path(self, dataset: str, variant: str | None, stage: str, artifact: str = "manifest", run: str = "") -> str:
        return self.layout.file(dataset, variant, stage, artifact, run)

    def targets(self) -> list[str]:
        """Every requested result: datasets x variants x training types x study points (``canids.study``)."""
        found = [self.layout.target(d, v, s, p.run(s, v)) for d in self.datasets() for v in self.variants() for s in self.settings.training_types for p in self.settings.points()]
        return list(dict.fromkeys(found))

    # ------------------------------------------------------------------ a study's summary
    def is_study(self) -> bool:
        """Seeds or a sweep, with evaluations to summarise: the study rule's table is a target."""
        return len(self.settings.points()) > 1 and "evaluation" in self.settings.training_types

    def study_name(self) -> str:
        return self.settings.name or DEFAULT_STUDY

    def study_targets(self) -> list[str]:
        return [self.layout.study(self.study_name(), artifact) for artifact in STUDY_FILES] if self.is_study() else []

    def evaluations(self) -> list[str]:
        """The metrics.json of every evaluation the study asks for."""
        return [t for t in self.targets() if (key := self.layout.parse(t)) is not None and key[2] == "evaluation"]

    def expected_evaluations(self) -> list[tuple[str, str, str, int]]:
        """(dataset, variant, point, seed) of each evaluation (``canids.workflow.tables``)."""
        out = set()
        for dataset in self.datasets():
            for variant in self.variants():
                for point in self.settings.points():
                    run = point.run("evaluation", variant)
                    seed = point.seed if point.seed is not None else self.settings.training.seed
                    out.add((dataset, variant, run_name((p, v) for p, v in parse_run(run) if p != SEED), int(seed)))
        return sorted(out)

    # ------------------------------------------------------------------ inputs
    def raw_inputs(self, dataset: str) -> list[str]:
        """Raw capture files (checked now, so a missing directory fails the dry run)."""
        spec = self.catalog.get(dataset)
        if spec.generated:
            return [self.layout.generated_receipt(dataset)]  # the generator rule's output
        spec.check_layout()
        onboarding = [str(f.path) for _, files in self.catalog.onboarding_files(dataset).values() for f in files]
        return [str(f.path) for f in spec.capture_files()] + onboarding

    def pin(self, dataset: str, variant: str | None, stage: str) -> Pin | None:
        """The pinned manifest standing in for this stage output, if the spec pins it."""
        return self.pins.get((dataset, *output_key(stage, variant)))

    def is_pinned(self, path: str) -> bool:
        """Whether an input path is a pinned artifact (used as it is on disk, never rebuilt)."""
        return path in self._pinned_paths()

    def _pinned_paths(self) -> set[str]:
        paths = set()
        for pin in self.pins.values():
            paths.add(pin.path("manifest"))
            paths.update(str(pin.manifest.artifact(name)) for name in pin.manifest.data["artifacts"])
        return paths

    def upstream(self, dataset: str, variant: str | None, stage: str, artifact: str = "manifest", run: str = "") -> str:
        """Path of an upstream stage's manifest or artifact: pinned by the spec, else built here.

        ``run``: the reading stage's run name; the upstream result is the part of it that reaches it.
        """
        pin = self.pin(dataset, variant, stage)
        if pin is not None:
            return pin.path(artifact)
        return self.stage_path(dataset, variant, stage, artifact, restrict(run, stage, variant))

    def teacher(self, dataset: str, variant: str, stage: str, artifact: str = "manifest", run: str = "") -> list[str]:
        """A distilled variant reads its teacher's same stage (pinned, distillation.teacher_path, or built here)."""
        teacher = VARIANTS[variant].teacher
        if teacher is None or not STAGES[stage].trains:
            return []
        pin = self.pin(dataset, teacher, stage)
        if pin is not None:
            return [pin.path(artifact)]
        template = self.settings.distillation.teacher_path
        if template:  # a teacher variant directory: <teacher_path>/<stage>/<file>
            base = Path(template.format(dataset=dataset, experiment_root=self.root))
            return [str(base / stage / file_name(stage, artifact))]
        return [self.stage_path(dataset, teacher, stage, artifact, restrict(run, stage, teacher))]

    def inputs(self, dataset: str, variant: str | None, stage: str, run: str = "") -> dict[str, str]:
        """A rule's named inputs: each stage it reads (manifest, and checkpoint where it has one)."""
        named: dict[str, str] = {}
        for up in STAGES[stage].reads:
            named[up] = self.upstream(dataset, variant, up, run=run)
            if "checkpoint" in STAGES[up].artifacts:
                named[f"{up}_checkpoint"] = self.upstream(dataset, variant, up, "checkpoint", run)
        return named

    def settings_at(self, run: str) -> Settings:
        if run not in self._at:
            self._at[run] = self.settings.at(run)
        return self._at[run]

    def settings_of(self, stage: str, variant: str | None, run: str = "") -> dict:
        return stage_settings(self.settings_at(run), stage, variant)

