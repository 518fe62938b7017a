"""Verification on the Deployment Engine: the verifier runs as a Flower run, so that its node-side queries
(``query.probe`` / ``query.score`` / ``query.relearn`` and utility's ``evaluate``) reach the members'
SuperNodes through the SuperLink, and nothing of theirs is needed where the service runs.

The service side (:func:`verify_on_superlink`, what :func:`unlearning.api.verify` calls for a spec whose
``runtime`` is ``deployment``) copies what the operator publishes of the dataset (``manifest.json`` and, when
there is one, the ``heldout/`` split; never a node directory) into the job's folder of the artifact store,
submits a run whose run config ``verify-spec`` is the VerifySpec without any path of this machine, forwards
the progress the ServerApp writes and returns the report it writes (``jobs/<key>/report.json``).

The ServerApp side (:func:`serve_verification`, called by apps.py for a run with ``verify-spec``) takes the
artifact store from its own configured root (as a deployment job does, ``COMMONS_SERVERAPP_ARTIFACT_ROOT``
or run config ``artifact-root``), the dataset from the copy in the job's folder, and runs
:func:`unlearning.verification.verify` with the run's ``Grid``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from unlearning.federation.flower_runtimes import FlowerSettings
from unlearning.verification.spec import (
    VerificationReport,
    VerifyProgress,
    VerifyProgressCallback,
    VerifySpec,
)

VERIFY_SPEC_KEY = "verify-spec"
PUBLISHED = ("manifest.json", "heldout")  # what of a dataset directory the verifier reads


class VerificationFailed(RuntimeError):
    """The verification run did not complete (Flower's reason, or the ServerApp wrote no report)."""


def verification_key(spec: VerifySpec) -> str:
    """The job folder of one verification in the artifact store (``jobs/<key>/``)."""
    raw = f"{spec.job_id or 'verify'}-verify-{spec.candidate_version}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


def job_dir(artifact_root: str | Path, key: str) -> Path:
    return Path(artifact_root) / "jobs" / key


def publish_dataset(dataset_dir: Path, dest: Path) -> Path:
    """Copy the published part of ``dataset_dir`` (manifest and held-out split) to ``dest``."""
    if not (dataset_dir / "manifest.json").is_file():
        raise VerificationFailed(f"no dataset manifest at {dataset_dir / 'manifest.json'}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in PUBLISHED:
        src = dataset_dir / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


class _ProgressTail:
    def __init__(self, path: Path, progress: VerifyProgressCallback | None) -> None:
        self.path, self.progress, self._offset = path, progress, 0

    def poll(self) -> None:
        if self.progress is None or not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self.progress(VerifyProgress(**json.loads(line)))


def verify_on_superlink(
    spec: VerifySpec,
    progress: VerifyProgressCallback | None = None,
    settings: FlowerSettings | None = None,
) -> VerificationReport:
    """Run ``spec`` as a Flower run on the SuperLink of ``settings`` (blocking) and return its report."""
    from unlearning.federation.deployment import DeploymentRunner, FederationError, RunFailed

    spec.validate()
    settings = settings or FlowerSettings.from_env()
    key = verification_key(spec)
    folder = job_dir(Path(spec.artifact_root).resolve(), key)
    report_path, progress_path = folder / "report.json", folder / "progress.jsonl"
    report_path.unlink(missing_ok=True)
    progress_path.unlink(missing_ok=True)
    publish_dataset(Path(spec.dataset_dir), folder / "dataset")
    remote = replace(spec, artifact_root="", dataset_dir="", runtime="deployment")
    tail = _ProgressTail(progress_path, progress)

    def poll() -> bool:
        tail.poll()
        return False

    try:
        with DeploymentRunner(
            settings.superlink,
            insecure=settings.insecure,
            root_certificates=settings.root_certificates,
            poll_interval=settings.poll_interval_s,
        ) as runner:
            runner.run(
                {VERIFY_SPEC_KEY: remote.to_json()},
                timeout=settings.job_timeout_s,
                cancel=poll,
            )
    except RunFailed as exc:
        raise VerificationFailed(
            f"verification run {exc.state.run_id} {exc.state.sub_status}: {exc.state.details}"
        ) from exc
    except FederationError as exc:
        raise VerificationFailed(str(exc)) from exc
    tail.poll()
    if not report_path.is_file():
        raise VerificationFailed(f"the verification run completed but wrote no report at {report_path}")
    return VerificationReport.from_json(report_path.read_text())


def serve_verification(grid: Any, run_config: dict[str, Any], artifact_root: str) -> VerificationReport:
    """The ServerApp of a verification run: verify with this run's grid; write the report and progress into
    the job's folder of the artifact store."""
    from unlearning.verification import verify

    spec = VerifySpec.from_dict(json.loads(str(run_config[VERIFY_SPEC_KEY])))
    key = verification_key(spec)
    folder = job_dir(artifact_root, key)
    spec = replace(spec, artifact_root=artifact_root, dataset_dir=str(folder / "dataset"))
    folder.mkdir(parents=True, exist_ok=True)
    progress_file = folder / "progress.jsonl"

    def write(p: VerifyProgress) -> None:
        with progress_file.open("a") as f:
            f.write(json.dumps(asdict(p)) + "\n")

    report = verify(spec, write, grid=grid)
    tmp = folder / "report.json.part"
    tmp.write_text(report.to_json())
    os.replace(tmp, folder / "report.json")
    return report
