"""``canids export-manifest``: a dependency bundle pinning a finished run, for reuse by other jobs."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from canids.data.catalog import check_name
from canids.shape import STAGE_NAMES, VARIANTS, Layout, output_key
from canids.util import atomic_write_json
from canids.validation import schema_errors
from canids.workflow.config import JobSpecError
from canids.workflow.pins import Pin, check_chain, read_manifest, verify_manifest
from canids.workflow.schemas import BUNDLE_KIND, bundle_schema, pinnable_stages

__all__ = ["export_bundle"]


def export_bundle(root: str | os.PathLike, dataset: str, variant: str, out: str | os.PathLike, *, relative_to_root: bool = False) -> dict:
    """Write a dependency bundle pinning the finished stages of ``root/dataset/variant``.

    Every stage manifest is verified first (artifacts' sha256, one coherent chain), and the
    bundle records each manifest's own sha256, so it pins exactly this run. Paths are absolute
    (reusable from any experiment root on this file system) or, with ``relative_to_root``,
    ``{experiment_root}/...`` (reusable after moving or copying the whole root elsewhere).
    """
    check_name(dataset)
    if variant not in VARIANTS:
        raise JobSpecError(f"--variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    base = Path(os.path.abspath(root))
    layout = Layout(str(base))
    found = {stage: Path(layout.file(dataset, variant, stage)) for stage in STAGE_NAMES if stage in pinnable_stages()}
    where = f"export {dataset}/{variant}"
    pins: dict[tuple[str, str, str | None], Pin] = {}
    for stage, path in found.items():
        if path.exists():
            key = output_key(stage, variant)
            m = read_manifest(path, where, stage=stage, dataset=dataset, variant=key[1])
            verify_manifest(m, where)
            pins[(dataset, *key)] = Pin(dataset, stage, key[1], m, str(path))
    if not pins:
        raise JobSpecError(f"{where}: no finished stage under {base}; looked for {', '.join(map(str, found.values()))}")
    check_chain(pins, set())

    def spell(path: Path) -> str:
        if relative_to_root and path.is_relative_to(base):
            return "{experiment_root}/" + path.relative_to(base).as_posix()
        return str(path)

    bundle = {
        "kind": BUNDLE_KIND,
        "schema_version": 1,
        "dataset": dataset,
        "variant": variant,
        "manifests": {pin.stage: spell(pin.manifest.path) for pin in pins.values()},
        "manifest_sha256": {pin.stage: pin.manifest.sha256 for pin in pins.values()},
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "exported_from": str(base),
    }
    problems = schema_errors(bundle, bundle_schema(), str(out))
    if problems:  # a bug here, not a user error
        raise AssertionError("\n".join(problems))
    atomic_write_json(Path(out), bundle)
    return bundle
