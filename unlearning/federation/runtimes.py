"""How run_job runs the Flower apps, by ``JobSpec.runtime``. ``in-process`` (the default, no Ray) is here;
other runtimes (the Flower simulation engine, the Deployment Engine) register themselves with
:func:`register_runtime` under their own name and must return the same JobResult."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID

from unlearning.jobs import JobResult, JobSpec, ProgressCallback

Runtime = Callable[[JobSpec, ProgressCallback | None, threading.Event | None], JobResult]
RUNTIMES: dict[str, Runtime] = {}


def register_runtime(name: str, fn: Runtime) -> None:
    RUNTIMES[name] = fn


def run_in_process(
    spec: JobSpec, progress: ProgressCallback | None, cancel: threading.Event | None
) -> JobResult:
    """The unmodified ServerApp and ClientApp on a :class:`LocalGrid` in this thread."""
    from unlearning.federation.apps import build_client_app, build_server_app
    from unlearning.federation.local_grid import LOCAL_RUN_ID, LocalGrid

    grid = LocalGrid.for_dataset(build_client_app(), Path(spec.dataset_dir))
    sink: list[JobResult] = []
    app = build_server_app(spec, progress=progress, cancel=cancel, sink=sink)
    app(
        grid,
        Context(
            run_id=LOCAL_RUN_ID, node_id=SUPERLINK_NODE_ID, node_config={}, state=RecordDict(), run_config={}
        ),
    )
    return sink[0]


register_runtime("in-process", run_in_process)

# "simulation" (Flower's simulation engine, a subprocess per job) and "deployment" (a SuperLink's Control API)
from unlearning.federation.flower_runtimes import register as _register_flower_runtimes  # noqa: E402

_register_flower_runtimes()
