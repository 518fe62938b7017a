"""Federation on Flower (Message API): the apps, the in-process grid, the server algorithms, runtimes.

The only package of ``unlearning`` that imports Flower: everything else sees parameters as tensors (see
unlearning.methods.blocks) and runtimes through the table in runtimes.py.
"""

from __future__ import annotations

import functools


@functools.cache
def register_runtimes() -> None:
    """Fill the runtime table (``in-process``, ``simulation``, ``deployment``) once; later calls do nothing."""
    from unlearning.federation.flower_runtimes import run_in_process, run_in_simulation, run_on_superlink
    from unlearning.federation.runtimes import register_runtime

    register_runtime("in-process", run_in_process)
    register_runtime("simulation", run_in_simulation)
    register_runtime("deployment", run_on_superlink)
