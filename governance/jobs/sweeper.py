"""The deadline sweeper: closes votes and appeal windows and expires unreviewed proposals when their deadlines
pass, and reminds voters before a vote closes. Reads never do this; ``commons serve`` runs one sweeper."""

from __future__ import annotations

import logging
import threading

from governance.services import events, lifecycle
from governance.services.context import Ctx

log = logging.getLogger("commons")


class DeadlineSweeper:
    """Every ``interval`` seconds: :func:`governance.services.lifecycle.sweep` and the voter reminders."""

    def __init__(self, ctx: Ctx, interval: float = 30.0) -> None:
        self.ctx, self.interval = ctx, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="commons-deadlines", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run_once(self) -> None:
        for pid, action in lifecycle.sweep(self.ctx):
            log.info("proposal %s: %s (deadline passed)", pid, action)
        events.remind_voters(self.ctx)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # keep sweeping; the next pass retries
                log.exception("deadline sweep failed")
