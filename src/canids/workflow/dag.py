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
from canids.shape import STAGES, VARIANTS, Layout, file_name, output_key
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
        return pipeline

    # ------------------------------------------------------------------ targets
    def datasets(self) -> list[str]:
        return self.catalog.expand(self.settings.datasets)

    def variants(self) -> list[str]:
        return self.settings.selected_variants()

    def stage_path(self, dataset: str, variant: str | None, stage: str, artifact: str = "manifest") -> str:
        return self.layout.file(dataset, variant, stage, artifact)

    def targets(self) -> list[str]:
        return [self.layout.target(d, v, s) for d in self.datasets() for v in self.variants() for s in self.settings.training_types]

    # ------------------------------------------------------------------ inputs
    def raw_inputs(self, dataset: str) -> list[str]:
        """Raw capture files (checked now, so a missing directory fails the dry run)."""
        spec = self.catalog.get(dataset)
        if spec.generated:
            return [self.layout.generated_receipt(dataset)]  # the generator rule's output
        spec.check_layout()
        return [str(f.path) for f in spec.capture_files()]

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

    def upstream(self, dataset: str, variant: str | None, stage: str, artifact: str = "manifest") -> str:
        """Path of an upstream stage's manifest or artifact: pinned by the spec, else built here."""
        pin = self.pin(dataset, variant, stage)
        if pin is not None:
            return pin.path(artifact)
        return self.stage_path(dataset, variant, stage, artifact)

    def teacher(self, dataset: str, variant: str, stage: str, artifact: str = "manifest") -> list[str]:
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
        return [self.stage_path(dataset, teacher, stage, artifact)]

    def inputs(self, dataset: str, variant: str | None, stage: str) -> dict[str, str]:
        """A rule's named inputs: each stage it reads (manifest, and checkpoint where it has one)."""
        named: dict[str, str] = {}
        for up in STAGES[stage].reads:
            named[up] = self.upstream(dataset, variant, up)
            if "checkpoint" in STAGES[up].artifacts:
                named[f"{up}_checkpoint"] = self.upstream(dataset, variant, up, "checkpoint")
        return named

    def settings_of(self, stage: str, variant: str | None) -> dict:
        return stage_settings(self.settings, stage, variant)

