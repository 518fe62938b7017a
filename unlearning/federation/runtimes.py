"""The table of ways ``run_job`` can run the Flower apps, by ``JobSpec.runtime``: a runtime takes a JobSpec
(and the optional progress callback, cancel event and settings) and returns a JobResult. This module imports no runtime;
:func:`unlearning.federation.register_runtimes` fills the table once with ``in-process``, ``simulation`` and
``deployment`` (see flower_runtimes.py), and anyone may add another with :func:`register_runtime`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from unlearning.jobs import JobResult, JobSpec, ProgressCallback

# (spec, progress, cancel, settings): settings is the runtime's own configuration object
# (flower_runtimes.FlowerSettings for the built-in ones; None: the runtime's defaults)
Runtime = Callable[[JobSpec, ProgressCallback | None, threading.Event | None, Any], JobResult]
RUNTIMES: dict[str, Runtime] = {}


def register_runtime(name: str, fn: Runtime) -> None:
    RUNTIMES[name] = fn
