"""Manifests: schema-validated on write and read; artifacts verified by sha256."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canids.util import atomic_write_bytes, sha256_file
from canids.workflow.manifest import ManifestError, load_manifest, write_manifest


def _write(tmp_path: Path, stage: str = "autoencoder", dataset: str = "synthetic") -> Path:
    ckpt = tmp_path / stage / "model.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"weights" * 100)
    manifest = tmp_path / stage / "manifest.json"
    write_manifest(manifest, dataset=dataset, stage=stage, variant="teacher", artifacts={"checkpoint": ckpt}, hyperparameters={"epochs": 3}, upstream=[], data_fingerprint={"sha256": "0" * 64, "n_files": 0}, wall_time_s=1.5, metrics={"val_f1": float("nan"), "ok": 1.0})
    return manifest


def test_written_manifest_pins_artifact_and_roundtrips(tmp_path):
    path = _write(tmp_path)
    data = json.loads(path.read_text())
    assert data["artifacts"]["checkpoint"] == {"path": "model.ckpt", "sha256": sha256_file(path.parent / "model.ckpt"), "size_bytes": 700}
    assert data["metrics"]["val_f1"] is None  # NaN is not JSON: written as null
    assert data["package_versions"]["torch"]
    assert data["code_version"]["package"]
    loaded = load_manifest(path, stage="autoencoder", dataset="synthetic", variant="teacher")
    assert loaded.artifact("checkpoint") == (path.parent / "model.ckpt").resolve()


def test_tampered_artifact_is_refused_with_both_digests(tmp_path):
    path = _write(tmp_path)
    ckpt = path.parent / "model.ckpt"
    expected = sha256_file(ckpt)
    ckpt.write_bytes(b"tampered")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    message = str(err.value)
    assert str(ckpt) in message and expected in message and sha256_file(ckpt) in message


def test_missing_artifact_and_wrong_stage_are_refused(tmp_path):
    path = _write(tmp_path)
    with pytest.raises(ManifestError, match="expected stage 'curriculum'"):
        load_manifest(path, stage="curriculum")
    with pytest.raises(ManifestError, match="expected dataset 'hcrl_sa'"):
        load_manifest(path, dataset="hcrl_sa")
    (path.parent / "model.ckpt").unlink()
    with pytest.raises(ManifestError, match="missing"):
        load_manifest(path)


def test_invalid_manifest_names_the_field(tmp_path):
    path = _write(tmp_path)
    data = json.loads(path.read_text())
    data["artifacts"]["checkpoint"]["sha256"] = "not-a-digest"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"artifacts\.checkpoint\.sha256: expected a lowercase hex sha256 \(64 characters\), got .not-a-digest."):
        load_manifest(path)
    path.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(path)
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.json")


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "model.ckpt"
    atomic_write_bytes(target, b"complete")

    class Boom(Exception):
        pass

    from canids.util import atomic_path

    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise Boom()
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]
