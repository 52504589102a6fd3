"""One definition of the pipeline's shape: stages, variants, split names, paths, settings.

canids.shape and canids.settings are the only places these facts are written. These tests fail
when a literal list of them appears anywhere else in src/ or workflow/, when a generated file
(schemas, the settings reference) differs from what the code says, or when a rule's outputs
differ from the artifacts its stage declares.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from canids.shape import DETECTOR_STAGES, SIZES, SPLITS, STAGE_NAMES, STAGES, TRAINING_STAGES, VARIANTS, Layout, dependencies
from canids.workflow import schemas

from conftest import REPO

FACTS = {"stage": set(STAGE_NAMES), "variant": set(VARIANTS), "split": set(SPLITS)}
#: The modules that define the facts (everything else must import them).
DEFINITIONS = {REPO / "src/canids/shape.py"}
GENERATED = {REPO / "workflow/schemas" / name for name in schemas.FILES}


def _python_files() -> list[Path]:
    return sorted(p for p in (REPO / "src").rglob("*.py") if p not in DEFINITIONS) + sorted((REPO / "workflow").rglob("*.py"))


def _literal_lists(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """(line, fact, names) for every literal tuple/list/set/dict-keys holding two or more names of one fact."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        strings = [e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        for fact, names in FACTS.items():
            hits = sorted(set(strings) & names)
            if len(hits) >= 2:
                found.append((node.lineno, fact, hits))
    return found


def _alternations(text: str) -> list[tuple[str, list[str]]]:
    """Regex-style alternations (``teacher|student``) naming two or more of one fact."""
    found = []
    for match in re.finditer(r"[A-Za-z0-9_]+(?:\|[A-Za-z0-9_]+)+", text):
        words = set(match.group().split("|"))
        for fact, names in FACTS.items():
            if len(words & names) >= 2:
                found.append((fact, sorted(words & names)))
    return found


def test_no_literal_list_of_stages_variants_or_splits_outside_the_definition():
    offenders = []
    for path in _python_files():
        text = path.read_text()
        offenders += [f"{path.relative_to(REPO)}:{line}: {fact}s {names}" for line, fact, names in _literal_lists(ast.parse(text))]
        offenders += [f"{path.relative_to(REPO)}: {fact}s {names} as a pattern" for fact, names in _alternations(text)]
    for path in sorted((REPO / "workflow").rglob("*.smk")) + [REPO / "workflow/Snakefile"]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            quoted = {a or b for a, b in re.findall(r"\"([^\"]*)\"|'([^']*)'", code)}
            for fact, names in FACTS.items():
                if len(quoted & names) >= 2:
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {fact}s {sorted(quoted & names)} spelt out")
            offenders += [f"{path.relative_to(REPO)}:{number}: {fact}s {names} as a pattern" for fact, names in _alternations(code)]
    for path in sorted((REPO / "workflow/schemas").iterdir()):
        if path not in GENERATED:
            offenders.append(f"{path.relative_to(REPO)}: a hand-written schema (generate it from canids.settings / canids.shape)")
    assert not offenders, "facts written outside canids.shape:\n" + "\n".join(offenders)


def test_the_checker_finds_a_literal_list():
    """The scan above would catch a copy (a test that cannot fail is no test)."""
    assert _literal_lists(ast.parse('VARIANTS = ("teacher", "student")')) == [(1, "variant", ["student", "teacher"])]
    assert _literal_lists(ast.parse('x = {"autoencoder": 1, "fusion": 2}')) == [(1, "stage", ["autoencoder", "fusion"])]
    assert _alternations('variant=r"teacher|student_kd"') == [("variant", ["student_kd", "teacher"])]
    assert _literal_lists(ast.parse('one = ("teacher", "x")')) == []


def test_generated_schemas_and_settings_reference_are_current():
    """workflow/schemas/* and config/README.md's reference are what `python -m canids.workflow.schemas` writes."""
    proc = subprocess.run([sys.executable, "-m", "canids.workflow.schemas", "--check"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_dag_edges_follow_from_what_each_stage_reads():
    assert dependencies("preprocess", "teacher") == []
    assert dependencies("fusion", "student") == [("preprocess", None), ("autoencoder", "student"), ("curriculum", "student")]
    assert dependencies("curriculum", "student_kd")[-1] == ("curriculum", "teacher")
    assert ("evaluation", "teacher") not in dependencies("evaluation", "student_kd")  # evaluation trains nothing
    for stage in STAGES.values():
        assert all(STAGE_NAMES.index(up) < STAGE_NAMES.index(stage.name) for up in stage.reads), stage.name
    assert set(DETECTOR_STAGES) == set(TRAINING_STAGES) and all(v.size in SIZES for v in VARIANTS.values())


def test_layout_spells_the_public_paths():
    layout = Layout("/runs")
    assert layout.file("hcrl_sa", "teacher", "preprocess", "train_graphs") == "/runs/hcrl_sa/preprocess/graphs/train/index.json"
    assert layout.file("hcrl_sa", "student", "fusion", "checkpoint") == "/runs/hcrl_sa/student/fusion/model.ckpt"
    assert layout.target("hcrl_sa", "student_kd", "evaluation") == "/runs/hcrl_sa/student_kd/evaluation/metrics.json"
    assert layout.target("hcrl_sa", None, "preprocess") == "/runs/hcrl_sa/preprocess/manifest.json"
    assert layout.log("hcrl_sa", "teacher", "preprocess") == "/runs/hcrl_sa/logs/preprocess.log"
    assert layout.log("hcrl_sa", "teacher", "curriculum") == "/runs/hcrl_sa/logs/teacher/curriculum.log"
    assert layout.resume_dir("hcrl_sa", "teacher", "fusion") == "/runs/.resume/hcrl_sa/teacher/fusion"
    with pytest.raises(KeyError, match="stage 'fusion' has no artifact 'metrics'"):
        layout.file("d", "teacher", "fusion", "metrics")


@pytest.mark.integration
def test_every_rule_writes_exactly_its_stage_artifacts(tmp_path):
    """A rule's named outputs are its manifest plus the artifacts canids.shape declares (nothing undeclared)."""
    from conftest import workflow_rules

    rules = workflow_rules(workdir=tmp_path)
    for name, stage in STAGES.items():
        assert rules[name]["outputs"] == sorted(["manifest", *stage.artifacts]), name
        assert rules[name]["threads"] >= 1, name
