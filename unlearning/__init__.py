"""Commons' machine-learning library: federated training and unlearning on Flower, model artifacts.

Never imports ``governance``. The service calls :func:`run_job` with a :class:`JobSpec` and gets a
:class:`JobResult`; see unlearning/jobs.py for the fields and docs/unlearning.md for the methods.
"""

from unlearning.api import init_dataset, init_model, run_job
from unlearning.artifacts import ArtifactIntegrityError, ArtifactNotFound, ArtifactStore, ModelVersion
from unlearning.jobs import JobCost, JobResult, JobSpec, JobSpecError, ProgressEvent, RoundCost
from unlearning.tasks.base import Target

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
