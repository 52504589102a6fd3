"""A complete stage result is never destroyed before its replacement exists.

Snakemake deletes a job's declared outputs before the job starts. When a run rebuilds a result
that exists (its settings changed, say) and the rebuild then fails, the previous result would
be gone. So before any job runs, the run links every file of each result it will rebuild into
``ROOT/.previous/<the stage directory>/`` (hard links: no copy, and the originals' deletion
does not touch them). A job that succeeds drops its stage's kept result; after a failure it
stays, and the message of the failed job says where. A later run that needs the stage and
finds its outputs missing puts the kept result back first, and then decides from its manifest,
like any other result, whether it is current.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from canids.shape import STAGES, Layout

__all__ = ["PREVIOUS", "drop", "keep", "kept", "put_back", "result_files"]

PREVIOUS = ".previous"


def kept(layout: Layout, dataset: str, variant: str | None, stage: str, run: str = "") -> Path:
    """Where the previous result of a stage is kept."""
    stage_dir = Path(layout.stage_dir(dataset, variant, stage, run))
    return Path(layout.root) / PREVIOUS / stage_dir.relative_to(layout.root)


def result_files(layout: Layout, dataset: str, variant: str | None, stage: str, run: str = "") -> list[Path]:
    """The files of a stage's result: its manifest, its declared artifacts and every other file
    its manifest pins (the shards of a graph cache), inside the stage directory."""
    stage_dir = Path(layout.stage_dir(dataset, variant, stage, run))
    files = [Path(layout.file(dataset, variant, stage, name, run)) for name in ["manifest", *STAGES[stage].artifacts]]
    try:
        pinned = [files[0].parent / str(entry["path"]) for entry in json.loads(files[0].read_bytes())["artifacts"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pinned = []  # no manifest, or not one: its declared outputs are all there is to keep
    inside = [p for p in pinned if os.path.abspath(p).startswith(os.path.abspath(stage_dir) + os.sep)]
    return list(dict.fromkeys(Path(os.path.normpath(p)) for p in [*files, *inside]))


def keep(layout: Layout, dataset: str, variant: str | None, stage: str, run: str = "") -> Path:
    """Hard-link (copy where links are impossible) the stage's files into the kept place."""
    target = kept(layout, dataset, variant, stage, run)
    shutil.rmtree(target, ignore_errors=True)
    for source in result_files(layout, dataset, variant, stage, run):
        if not source.exists():
            continue
        dest = target / source.relative_to(layout.stage_dir(dataset, variant, stage, run))
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, dest)
        except OSError:
            shutil.copy2(source, dest)
    return target


def put_back(layout: Layout, dataset: str, variant: str | None, stage: str, run: str = "") -> bool:
    """Move a kept result back where its outputs are missing; whether there was one."""
    source = kept(layout, dataset, variant, stage, run)
    manifest = Path(layout.file(dataset, variant, stage, run=run))
    if not (source / manifest.name).is_file() or manifest.exists():
        return False
    stage_dir = Path(layout.stage_dir(dataset, variant, stage, run))
    manifest_kept = source / manifest.name
    for path in sorted(source.rglob("*")):
        if path.is_file() and path != manifest_kept:
            dest = stage_dir / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    os.replace(manifest_kept, manifest)  # the manifest last: a result is complete when it is there
    shutil.rmtree(source, ignore_errors=True)
    return True


def drop(layout: Layout, dataset: str, variant: str | None, stage: str, run: str = "") -> None:
    shutil.rmtree(kept(layout, dataset, variant, stage, run), ignore_errors=True)
