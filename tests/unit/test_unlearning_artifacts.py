"""Model versions: immutable, hashed; a modified artifact is refused with a clear error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from unlearning import ArtifactIntegrityError, ArtifactNotFound, ArtifactStore, init_model


def _writable(path: Path) -> None:
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_roundtrip_and_manifest(tmp_path: Path) -> None:
    v = init_model(tmp_path, "digits", size="tiny", seed=3)
    store = ArtifactStore(tmp_path)
    again = store.get(v.version)
    assert again.manifest == v.manifest
    m = v.manifest
    assert set(m["files"]) == {"model.safetensors", "config.json", "tokenizer_config.json"}
    assert m["seed"] == 3 and m["parent"] is None and m["job_id"] == "init"
    assert {"torch", "transformers", "flwr", "safetensors", "python"} <= set(m["libraries"])
    model = v.load_into(v_task_model(v))
    assert sum(p.numel() for p in model.parameters()) > 0
    assert store.list() == [v.version]
    assert not os.access(v.path / "model.safetensors", os.W_OK) or os.geteuid() == 0


def v_task_model(v: object) -> torch.nn.Module:
    from unlearning.tasks import make_task

    return make_task(v.task, v.model_config).build_model(0)  # type: ignore[attr-defined]


def test_same_content_same_hash(tmp_path: Path) -> None:
    a = init_model(tmp_path / "a", "digits", size="tiny", seed=1)
    b = init_model(tmp_path / "b", "digits", size="tiny", seed=1)
    assert a.content_hash == b.content_hash


@pytest.mark.parametrize("what", ["weights", "extra", "missing", "manifest"])
def test_modified_artifact_is_refused(tmp_path: Path, what: str) -> None:
    v = init_model(tmp_path, "digits", size="tiny")
    store = ArtifactStore(tmp_path)
    if what == "weights":
        p = v.path / "model.safetensors"
        _writable(p)
        data = bytearray(p.read_bytes())
        data[-1] ^= 0xFF
        p.write_bytes(bytes(data))
    elif what == "extra":
        (v.path / "notes.txt").write_text("hello")
    elif what == "missing":
        (v.path / "tokenizer_config.json").unlink()
    else:
        p = v.path / "manifest.json"
        _writable(p)
        p.write_text(p.read_text().replace('"seed": 0', '"seed": 1'))
    with pytest.raises(ArtifactIntegrityError, match="modified"):
        store.get(v.version)


def test_unknown_version(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFound):
        ArtifactStore(tmp_path).get("mv-00000000000000000000")
    with pytest.raises(ArtifactNotFound):
        ArtifactStore(tmp_path).get("../etc")
