"""Flower simulation engine (Ray) adapter: one subprocess per job.

``run_simulation_job(run_config, num_nodes=...)`` starts ``python -m unlearning.federation.simulation`` in a
new process group. The child loads the ServerApp and ClientApp named in the app project's
``[tool.flwr.app.components]``, fuses ``run_config`` with the project's ``[tool.flwr.app.config]`` exactly as
a SuperLink does (unknown keys are refused), and runs them on Flower's simulation engine with ``num_nodes``
virtual SuperNodes (node config ``partition-id`` / ``num-partitions``). ServerApp and ClientApps see the same
``context.run_config`` they would see in deployment.

Why a subprocess: Flower keeps the run's identity in process-global state and starts (and shuts down) a Ray
cluster for every run, so two simulations cannot share a process; a child also frees Ray's ~2 GB when it
exits, and cancelling is a signal to its process group. Results are not passed back through this module:
the ServerApp writes them into the artifact store keyed by job id, as in deployment.

Flower's public ``run_simulation`` passes an empty run config; the child therefore uses the same internal
entry point that Flower's own ``flwr-simulation`` process uses (``flwr.simulation.run_simulation.
_run_simulation``). That, and the other internals imported below, are pinned by ``flwr==1.41.*``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearning.federation.deployment import (
    APP_DIR,
    ConfigValue,
    FederationError,
    die_with_parent,
    flower_environment,
)

log = logging.getLogger(__name__)

RAY_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Ray's services (GCS, raylet, object manager, workers, agents) listen on 127.0.0.1 only. Ray binds them
to the node's IP, and takes the machine's routable address for it, even from ``_node_ip_address=
"127.0.0.1"`` (``resolve_ip_for_localhost``), unless "clusters" are off: this variable (despite its name,
honoured on Linux too) makes Ray take the loopback address as the node's. A simulation is one machine."""


class SimulationFailed(FederationError):
    """The simulation subprocess ended with an error (``reason``) or was cancelled."""

    def __init__(self, reason: str, output: str = "", cancelled: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.output = output
        self.cancelled = cancelled


@dataclass(frozen=True)
class SimulationOutcome:
    """What the simulation subprocess reported (the job's own results are in the artifact store)."""

    wall_s: float
    run_config: dict[str, ConfigValue]
    output: str


def app_components(app_dir: Path = APP_DIR) -> tuple[str, str]:
    """``(serverapp, clientapp)`` object references (``module:attribute``) of the app project."""
    with (Path(app_dir) / "pyproject.toml").open("rb") as f:
        components = tomllib.load(f)["tool"]["flwr"]["app"]["components"]
    return str(components["serverapp"]), str(components["clientapp"])


def fused_run_config(
    run_config: Mapping[str, ConfigValue], app_dir: Path = APP_DIR
) -> dict[str, ConfigValue]:
    """The project's declared run config with ``run_config`` applied; unknown keys raise ``ValueError``
    (the SuperLink refuses them the same way)."""
    from flwr.common.config import get_fused_config_from_dir

    return dict(get_fused_config_from_dir(Path(app_dir), dict(run_config)))


def _load(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def backend_config(num_cpus: int, cpus_per_node: float = 1.0) -> dict[str, Any]:
    """Ray settings for a small machine: ``num_cpus`` for the whole cluster, ``cpus_per_node`` per ClientApp
    actor (so ``num_cpus / cpus_per_node`` ClientApps run at once), no dashboard, quiet logs."""
    return {
        "client_resources": {"num_cpus": cpus_per_node, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": num_cpus,
            "include_dashboard": False,  # no dashboard: nothing listens beyond Ray's own services
            "logging_level": "WARNING",
            "log_to_driver": False,
        },
    }


def run_in_this_process(
    run_config: Mapping[str, ConfigValue],
    *,
    num_nodes: int,
    app_dir: Path = APP_DIR,
    num_cpus: int = 2,
    cpus_per_node: float = 1.0,
) -> dict[str, ConfigValue]:
    """Run one job on Flower's simulation engine in *this* process (the child's body). Not re-entrant:
    call it at most once per process. Returns the fused run config."""
    from flwr.app import Context, RecordDict
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.constant import NOOP_FEDERATION_ID
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.supercore.telemetry import EventType

    app_dir = Path(app_dir).resolve()
    config = fused_run_config(run_config, app_dir)
    server_ref, client_ref = app_components(app_dir)
    server_app, client_app = _load(server_ref), _load(client_ref)

    run_id = int.from_bytes(os.urandom(8), "big") >> 1
    run = Run.create_empty(run_id=run_id)
    run.override_config = dict(run_config)
    run.primary_task_id = 1
    run.federation_id = NOOP_FEDERATION_ID
    # What flwr-simulation does before it runs an app: messages are stamped with this identity.
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    context = Context(
        run_id=run_id, node_id=SUPERLINK_NODE_ID, node_config={}, state=RecordDict(), run_config=config
    )
    # The ClientApps' contexts fuse the run's override config with the pyproject in app_dir.
    _run_simulation(
        num_supernodes=num_nodes,
        exit_event=EventType.FLWR_SIMULATION_RUN_LEAVE,
        client_app=client_app,
        server_app=server_app,
        backend_config=backend_config(num_cpus, cpus_per_node),
        server_app_context=context,
        app_dir=str(app_dir),
        run=run,
        is_app=True,  # without it the ClientApps get an empty run config
    )
    return config


def _quiet_flower() -> None:
    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_simulation_job(
    run_config: Mapping[str, ConfigValue],
    *,
    num_nodes: int,
    app_dir: Path = APP_DIR,
    num_cpus: int | None = None,
    cpus_per_node: float = 1.0,
    torch_threads: int = 1,
    timeout: float | None = None,
    cancel: Callable[[], bool] | None = None,
    on_output: Callable[[str], None] | None = None,
    workdir: Path | None = None,
    python: str = sys.executable,
) -> SimulationOutcome:
    """Run one job on Flower's simulation engine in a fresh subprocess and wait for it.

    ``cancel()`` returning true, or ``timeout`` passing, terminates the subprocess's process group (Ray's
    workers included) and raises ``SimulationFailed`` (``cancelled=True`` for a cancel). Each line the
    child prints is passed to ``on_output``. Raises ``SimulationFailed`` with the child's error when the
    ServerApp or a ClientApp fails."""
    fused_run_config(run_config, app_dir)  # refuse unknown keys before paying for a process and Ray
    num_cpus = num_cpus if num_cpus is not None else max(1, min(os.cpu_count() or 1, num_nodes))
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="commons-sim-")))
        workdir.mkdir(parents=True, exist_ok=True)
        request = workdir / "request.json"
        status_file = workdir / "status.json"
        status_file.unlink(missing_ok=True)
        request.write_text(
            json.dumps(
                {
                    "run_config": dict(run_config),
                    "num_nodes": num_nodes,
                    "app_dir": str(Path(app_dir).resolve()),
                    "num_cpus": num_cpus,
                    "cpus_per_node": cpus_per_node,
                    "status_file": str(status_file),
                }
            )
        )
        env = flower_environment(workdir / "flwr-home")
        threads = str(torch_threads)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, COMMONS_TORCH_THREADS=threads)
        env.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a Ray FutureWarning
        env.update(RAY_LOOPBACK_ENV)
        started = time.monotonic()
        child = subprocess.Popen(
            [python, "-m", "unlearning.federation.simulation", str(request)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: cancelling reaches Ray's workers too
            preexec_fn=die_with_parent,  # and it ends if we are killed (this thread waits for it)
        )
        lines: list[str] = []
        reader = _start_reader(child, lines, on_output)
        cancelled = timed_out = False
        try:
            while child.poll() is None:
                if cancel is not None and cancel():
                    cancelled = True
                    break
                if timeout is not None and time.monotonic() - started > timeout:
                    timed_out = True
                    break
                time.sleep(0.2)
        finally:
            if child.poll() is None:
                _terminate_group(child)
            reader.join(timeout=5)
        output = "".join(lines)
        wall = time.monotonic() - started
        if cancelled:
            raise SimulationFailed("simulation cancelled", output, cancelled=True)
        if timed_out:
            raise SimulationFailed(f"simulation did not finish within {timeout} s", output)
        status = json.loads(status_file.read_text()) if status_file.exists() else None
        if child.returncode != 0 or status is None or not status.get("ok"):
            reason = (status or {}).get("error") or f"simulation process exited with {child.returncode}"
            raise SimulationFailed(str(reason), output)
        return SimulationOutcome(wall_s=wall, run_config=dict(status.get("run_config", {})), output=output)
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow exceptions


def _start_reader(
    child: subprocess.Popen[bytes], lines: list[str], on_output: Callable[[str], None] | None
) -> threading.Thread:
    def pump() -> None:
        assert child.stdout is not None
        for raw in child.stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            if on_output is not None:
                with contextlib.suppress(Exception):
                    on_output(line.rstrip("\n"))

    thread = threading.Thread(target=pump, name="simulation-output", daemon=True)
    thread.start()
    return thread


def _terminate_group(child: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=5)


def _child_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unlearning.federation.simulation")
    parser.add_argument("request", type=Path, help="JSON written by run_simulation_job")
    args = parser.parse_args(argv)
    request = json.loads(args.request.read_text())
    status_file = Path(request["status_file"])
    _quiet_flower()
    os.environ.update(RAY_LOOPBACK_ENV)  # before Ray is imported (it reads the variable at import)
    threads = int(os.environ.get("COMMONS_TORCH_THREADS", "1"))
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(threads)

    # SIGTERM (a cancel) becomes an exception in the main thread, so that Ray is shut down on the way out.
    def _on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    started = time.monotonic()
    try:
        config = run_in_this_process(
            request["run_config"],
            num_nodes=int(request["num_nodes"]),
            app_dir=Path(request["app_dir"]),
            num_cpus=int(request["num_cpus"]),
            cpus_per_node=float(request["cpus_per_node"]),
        )
    except BaseException as exc:  # report every failure, including a cancel, then exit non-zero
        cause = exc.__cause__ or exc
        reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        status_file.write_text(json.dumps({"ok": False, "error": reason}))
        print(f"simulation failed: {reason}", file=sys.stderr, flush=True)
        return 1
    status_file.write_text(
        json.dumps({"ok": True, "run_config": config, "wall_s": round(time.monotonic() - started, 3)})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main())
