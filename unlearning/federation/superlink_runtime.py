"""A SuperLink whose pulls wait for work: Flower's ``flower-superlink`` with long-polled ``PullMessages``.

Flower 1.41's SuperLink answers every pull at once. A SuperNode that found no message sleeps and asks again
(Flower: 3 s; the warm node of node_runtime.py: 0.25 s), and a ServerApp waiting for replies does the same
(Flower: 3 s; server.py: 0.05-0.25 s). On a warm federation those sleeps were a third of each message
exchange's overhead (bench/RESULTS.md "Federation runtimes": 0.12 s until a node saw its message, 0.14 s
until the ServerApp saw the last reply), and shortening them further means more requests that the SuperLink
serves on the same CPUs as the work.

``python -m unlearning.federation.superlink_runtime <flower-superlink arguments>`` runs Flower's own
SuperLink (same arguments, same state, same APIs on the same port) with one change, written by hand because
Flower has no long poll to switch on: a ``PullMessages`` that finds nothing, on the Fleet API (a SuperNode
asking for instructions) or on the Runtime API (a ServerApp asking for replies), is held for up to
``COMMONS_SUPERLINK_HOLD_S`` seconds (default 1) and answered the moment a message for it may have come
(a ServerApp pushed instructions, a node pushed a reply), or at the end of the hold with nothing, as
before. Flower's handlers still answer every request; a held request only calls its handler again when
something was pushed (and every ``TICK_S``, for the replies Flower's state makes up by itself when a
node's heartbeats stop). Both clients are unchanged: a SuperNode or ServerApp that does not know about the
hold only sees quicker answers. At most ``MAX_HELD`` requests are held at once (the SuperLink serves sync
routes from a bounded thread pool; the rest are answered at once), so a large federation cannot starve
the pushes that would end the holds.

This touches two module attributes of each handler module (``flwr.superlink.servicer.fleet.fleet_handlers``
and ``flwr.superlink.servicer.runtime.runtime_handlers``: ``pull_messages`` and ``push_messages``), which
Flower's routes look up at each request: pinned to flwr 1.41 like the rest of the adapter.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

HOLD_ENV = "COMMONS_SUPERLINK_HOLD_S"
DEFAULT_HOLD_S = 1.0
HELD_PULL_S = 0.5
"""A pull that took this long was held (its client already waited for work): the warm SuperNode and the
ServerApp ask again at once after one instead of sleeping."""
MAX_HELD = 24  # of the 40 threads Starlette runs sync routes on: the pushes that end a hold need some


class _Holds:
    """Long polls for one kind of pull: ``hold(call, empty)`` answers ``call()`` once it is not ``empty``, or
    after ``hold_s``; :meth:`pushed` wakes every held request to call again."""

    def __init__(self, hold_s: float, tick_s: float, max_held: int = MAX_HELD) -> None:
        self.hold_s, self.tick_s, self.max_held = hold_s, tick_s, max_held
        self._cond = threading.Condition()
        self._pushes = 0  # a counter, so that a push between a call and the wait is not missed
        self.held = 0

    def pushed(self) -> None:
        with self._cond:
            self._pushes += 1
            self._cond.notify_all()

    def hold(self, call: Callable[[], Any], empty: Callable[[Any], bool]) -> Any:
        deadline = time.monotonic() + self.hold_s
        with self._cond:
            seen = self._pushes
        reply = call()
        if not empty(reply) or self.hold_s <= 0:
            return reply
        with self._cond:
            if self.held >= self.max_held:
                return reply
            self.held += 1
        try:
            while True:
                with self._cond:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return reply
                    if self._pushes == seen:
                        self._cond.wait(min(remaining, self.tick_s))
                    seen = self._pushes
                reply = call()
                if not empty(reply):
                    return reply
        finally:
            with self._cond:
                self.held -= 1


def _no_messages(reply: Any) -> bool:
    return len(reply.messages_list) == 0


def _after(handler: Callable[..., Any], then: Callable[[], None]) -> Callable[..., Any]:
    @functools.wraps(handler)
    def pushed(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        finally:
            then()

    return pushed


def install(hold_s: float, fleet: Any = None, runtime: Any = None) -> tuple[_Holds, _Holds]:
    """Hold the pulls of Flower's Fleet and Runtime handler modules (``fleet``, ``runtime``: the modules, for
    tests) and wake them on the other side's pushes; the two ``_Holds`` (nodes', ServerApps')."""
    if fleet is None:
        import flwr.superlink.servicer.fleet.fleet_handlers as fleet
    if runtime is None:
        import flwr.superlink.servicer.runtime.runtime_handlers as runtime
    # a node's pull can only be answered by a ServerApp's push: no tick needed beyond the hold
    nodes = _Holds(hold_s, tick_s=hold_s)
    # replies also appear without a push (Flower's error replies for a node whose heartbeats stopped)
    servers = _Holds(hold_s, tick_s=0.25)
    fleet_pull, runtime_pull = fleet.pull_messages, runtime.pull_messages

    def node_pull(request: Any, state: Any, store: Any) -> Any:
        return nodes.hold(lambda: fleet_pull(request=request, state=state, store=store), _no_messages)

    def server_pull(request: Any, state: Any, task: Any) -> Any:
        if not request.message_ids:  # not a wait for replies (e.g. an agent app's instructions)
            return runtime_pull(request, state, task)
        return servers.hold(lambda: runtime_pull(request, state, task), _no_messages)

    fleet.pull_messages = node_pull
    runtime.pull_messages = server_pull
    fleet.push_messages = _after(fleet.push_messages, servers.pushed)  # a node's reply
    runtime.push_messages = _after(runtime.push_messages, nodes.pushed)  # a ServerApp's instructions
    return nodes, servers


def hold_seconds() -> float:
    raw = os.environ.get(HOLD_ENV, str(DEFAULT_HOLD_S))
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{HOLD_ENV} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value <= 20:
        raise SystemExit(f"{HOLD_ENV} must be between 0 (no hold) and 20 seconds, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    """``flower-superlink`` with long-polled pulls (same arguments)."""
    from flwr.superlink.cli.flower_superlink import flower_superlink

    install(hold_seconds())
    sys.argv = ["flower-superlink", *(sys.argv[1:] if argv is None else argv)]
    flower_superlink()


if __name__ == "__main__":
    main()
