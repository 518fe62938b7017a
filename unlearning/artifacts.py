"""Model versions: immutable, content-hashed artifact directories in a filesystem store.

A version directory ``<root>/versions/<version-id>/`` holds

- ``model.safetensors``: the weights (``safetensors.torch.save_model``: tied weights stored once);
- ``config.json``: ``{"task": ..., "model_config": ...}`` (enough to rebuild the architecture);
- ``tokenizer_config.json`` (and any other tokenizer files, ``save_pretrained`` format) for language models;
- ``manifest.json``: the sha256 of every other file, the content hash over them, the seed, library versions,
  the parent version, the job that made it and free-form ``training`` / ``metrics`` sections.

The version id is ``mv-`` + the first 20 hex digits of the sha256 of the manifest (without the id). Files are
made read-only after writing; :meth:`ArtifactStore.get` re-hashes everything and raises
:class:`ArtifactIntegrityError` for any modified, missing or extra file.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import platform
import shutil
import stat
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearning.data import sha256_file

if TYPE_CHECKING:  # torch is loaded only to write or load weights: the service reads manifests without it
    import torch
    from torch import nn

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MANIFEST = "manifest.json"


class ArtifactError(Exception):
    """Base class of artifact-store errors."""


class ArtifactNotFound(ArtifactError, LookupError):
    """No such model version in the store."""


class ArtifactIntegrityError(ArtifactError, ValueError):
    """A stored model version does not match its manifest (modified, missing or extra files)."""


def library_versions() -> dict[str, str]:
    import safetensors
    import torch
    import transformers

    from unlearning.federation.protocol import library_versions as federation_versions

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        **federation_versions(),
    }


def _canonical(d: dict[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ModelVersion:
    """A verified model version (read from the store)."""

    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    @property
    def model_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = json.loads((self.path / CONFIG).read_text())["model_config"]
        if cfg.get("tokenizer") == "bundled":  # bring-your-own tokenizers travel inside the version
            cfg = {**cfg, "tokenizer": str(self.path)}
        return cfg

    @property
    def stored_model_config(self) -> dict[str, Any]:
        """The model config as stored (a bundled tokenizer stays ``"bundled"``)."""
        cfg: dict[str, Any] = json.loads((self.path / CONFIG).read_text())["model_config"]
        return cfg

    @property
    def content_hash(self) -> str:
        return str(self.manifest["content_hash"])

    @property
    def parent(self) -> str | None:
        p = self.manifest.get("parent")
        return str(p) if p else None

    def load_state_dict(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.path / WEIGHTS))

    def load_into(self, model: nn.Module) -> nn.Module:
        from safetensors.torch import load_model

        load_model(model, str(self.path / WEIGHTS))
        return model


class ArtifactStore:
    """Model versions under ``root`` (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"

    def put(
        self,
        *,
        model: nn.Module,
        task: str,
        model_config: dict[str, Any],
        seed: int,
        parent: str | None,
        job_id: str,
        tokenizer: Any | None = None,
        training: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Write a new immutable version and return it (verified)."""
        from safetensors.torch import save_model

        self.versions.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.versions))
        try:
            save_model(model, str(tmp / WEIGHTS))
            cfg = dict(model_config)
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
                if cfg.get("tokenizer") not in (None, "byt5"):
                    cfg["tokenizer"] = "bundled"
            else:
                (tmp / "tokenizer_config.json").write_text(json.dumps({"tokenizer": None}) + "\n")
            (tmp / CONFIG).write_text(
                json.dumps({"task": task, "model_config": cfg}, indent=2, sort_keys=True)
            )
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            manifest: dict[str, Any] = {
                "format": 1,
                "task": task,
                "files": files,
                "content_hash": hashlib.sha256(_canonical(files)).hexdigest(),
                "seed": seed,
                "parent": parent,
                "job_id": job_id,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "libraries": library_versions(),
                "training": training or {},
                "metrics": metrics or {},
            }
            version = "mv-" + hashlib.sha256(_canonical(manifest)).hexdigest()[:20]
            manifest["version"] = version
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            for p in tmp.iterdir():
                p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            final = self.versions / version
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(version)

    def path(self, version: str) -> Path:
        if not version.startswith("mv-") or "/" in version or ".." in version:
            raise ArtifactNotFound(f"{version!r} is not a model version id (they look like mv-<20 hex>)")
        return self.versions / version

    def get(self, version: str) -> ModelVersion:
        """Load and verify a version; raises ArtifactNotFound or ArtifactIntegrityError."""
        path = self.path(version)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise ArtifactNotFound(f"model version {version} not found in {self.versions}")
        try:
            manifest: dict[str, Any] = json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise ArtifactIntegrityError(f"model version {version}: manifest.json is not valid JSON") from exc
        claimed = manifest.pop("version", None)
        if claimed != version or "mv-" + hashlib.sha256(_canonical(manifest)).hexdigest()[:20] != version:
            raise ArtifactIntegrityError(f"model version {version}: manifest.json was modified")
        manifest["version"] = version
        files: dict[str, str] = manifest["files"]
        present = {p.name for p in path.iterdir() if p.name != MANIFEST}
        if present != set(files):
            extra, missing = sorted(present - set(files)), sorted(set(files) - present)
            raise ArtifactIntegrityError(
                f"model version {version} was modified: extra files {extra}, missing files {missing}"
            )
        for name, digest in files.items():
            if sha256_file(path / name) != digest:
                raise ArtifactIntegrityError(
                    f"model version {version} was modified: {name} does not match its sha256 in the manifest"
                )
        if hashlib.sha256(_canonical(files)).hexdigest() != manifest["content_hash"]:
            raise ArtifactIntegrityError(f"model version {version}: content hash does not match its files")
        return ModelVersion(version=version, path=path, manifest=manifest)

    def list(self) -> list[str]:
        if not self.versions.is_dir():
            return []
        return sorted(p.name for p in self.versions.iterdir() if p.name.startswith("mv-"))

    def job_of(self, version: str) -> str | None:
        """The job id a version's manifest names, without verifying the version (None: unreadable)."""
        try:
            return str(json.loads((self.path(version) / MANIFEST).read_text()).get("job_id", "")) or None
        except (OSError, ValueError, ArtifactNotFound):
            return None

    def discard_jobs(self, job_ids: set[str], keep: Collection[str] = ()) -> builtins.list[str]:
        """Delete every version written by one of ``job_ids`` (or by its reference retraining, ``<id>-reference``),
        except those in ``keep`` (the versions something refers to: the registry's); returns the versions
        removed. Only for a dead attempt's output."""
        removed: builtins.list[str] = []
        for version in self.list():
            if version in keep:
                continue
            job = self.job_of(version)
            if job is not None and job.removesuffix("-reference") in job_ids:
                shutil.rmtree(self.versions / version, ignore_errors=True)
                removed.append(version)
        return removed
