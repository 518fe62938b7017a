"""Timestamps of a Deployment Engine exchange, for finding where its time goes (off unless asked for).

With ``COMMONS_FEDERATION_TRACE=DIR`` in the environment of a federation's processes (``LocalFederation``
passes its own environment on), the ServerApp (server.py), each SuperNode and each ClientApp executor
(node_runtime.py) append one line per step of an exchange to ``DIR/<component>-<pid>.trace``::

    <unix time, s> <component> <event> key=value ...

for example ``serverapp push.start messages=3``, ``supernode receive.end message=ab12...``,
``clientapp objects.end objects=6 retries=2``. The clocks of processes on one machine agree, so the files
merged and sorted by time show an exchange hop by hop (``bench/federation_trace.py`` does that). Unset, the
calls cost one dictionary lookup.
"""

from __future__ import annotations

import os
import threading
import time
from typing import IO, Any

TRACE_ENV = "COMMONS_FEDERATION_TRACE"

_lock = threading.Lock()
_files: dict[tuple[int, str], IO[str]] = {}


def enabled() -> bool:
    return bool(os.environ.get(TRACE_ENV))


def event(component: str, what: str, **fields: object) -> None:
    """Append ``what`` (with ``fields``) to this process's trace file, when tracing is on."""
    directory = os.environ.get(TRACE_ENV)
    if not directory:
        return
    now = time.time()
    line = f"{now:.6f} {component} {what}"
    if fields:
        line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
    key = (os.getpid(), component)  # a forked ServerApp child writes its own file
    with _lock:
        out = _files.get(key)
        if out is None:
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, f"{component}-{os.getpid()}.trace")
            out = _files[key] = open(path, "a", buffering=1)  # noqa: SIM115 (kept open, line-buffered)
        out.write(line + "\n")


def short(message_id: str) -> str:
    """A message id as the trace prints it (its first 12 hex digits)."""
    return message_id[:12]


class TracedClient:
    """A Flower ``RuntimeHttpClient`` whose calls are traced (``rpc`` events: method, seconds, and for
    ``PullObject`` whether the object was there yet); ``AcquireTask`` only when it acquired a task."""

    def __init__(self, client: Any, component: str) -> None:
        self._client, self._component = client, component

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not (callable(method) and name[:1].isupper()):
            return method

        def call(request: Any) -> Any:
            t0 = time.perf_counter()
            reply = method(request)
            took = f"{time.perf_counter() - t0:.4f}"
            if name == "AcquireTask":
                if reply.HasField("task"):
                    event(self._component, "rpc", method=name, took=took)
            elif name == "PullObject":
                available = bool(reply.object_available)
                event(self._component, "rpc", method=name, took=took, available=available)
            else:
                event(self._component, "rpc", method=name, took=took)
            return reply

        return call
