"""Commons' machine-learning library: federated training and unlearning on Flower, model artifacts.

Never imports ``governance``. The service calls :func:`run_job` with a :class:`JobSpec` and gets a
:class:`JobResult`; see unlearning/jobs.py for the fields and docs/unlearning.md for the methods. What crosses
between the service and the library (targets, metrics, acceptance tests, methods and their settings) is in
:mod:`unlearning.contract`, which imports neither torch nor Flower.

The names below are loaded on first use, so that importing :mod:`unlearning.contract` (or any other pure
module of the package) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unlearning.api import init_dataset, init_model, run_job
    from unlearning.artifacts import ArtifactIntegrityError, ArtifactNotFound, ArtifactStore, ModelVersion
    from unlearning.contract import Target
    from unlearning.jobs import JobCost, JobResult, JobSpec, JobSpecError, ProgressEvent, RoundCost

_WHERE = {
    "init_dataset": "unlearning.api",
    "init_model": "unlearning.api",
    "run_job": "unlearning.api",
    "ArtifactIntegrityError": "unlearning.artifacts",
    "ArtifactNotFound": "unlearning.artifacts",
    "ArtifactStore": "unlearning.artifacts",
    "ModelVersion": "unlearning.artifacts",
    "Target": "unlearning.contract",
    "JobCost": "unlearning.jobs",
    "JobResult": "unlearning.jobs",
    "JobSpec": "unlearning.jobs",
    "JobSpecError": "unlearning.jobs",
    "ProgressEvent": "unlearning.jobs",
    "RoundCost": "unlearning.jobs",
}


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'unlearning' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ArtifactIntegrityError",
    "ArtifactNotFound",
    "ArtifactStore",
    "JobCost",
    "JobResult",
    "JobSpec",
    "JobSpecError",
    "ModelVersion",
    "ProgressEvent",
    "RoundCost",
    "Target",
    "init_dataset",
    "init_model",
    "run_job",
]
