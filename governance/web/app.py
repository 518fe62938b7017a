"""The Litestar app factory. Tests build their own app with their own settings, engine and clock."""

from __future__ import annotations

import logging
import threading
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from sqlalchemy.engine import Engine

from governance.db.engine import make_engine
from governance.domain.clock import Clock
from governance.services import events, lifecycle
from governance.services.context import Ctx
from governance.services.votes import VoteBatcher
from governance.settings import Settings, get_settings
from governance.web.api.data_sources import DataSourceController
from governance.web.api.jobs import JobController, NotificationController, WebhookController
from governance.web.api.members import MemberController
from governance.web.api.models import ModelController, ReleaseController
from governance.web.api.proposals import MetaController, ProposalController
from governance.web.deps import provide_actor, provide_ctx, provide_session, provide_settings
from governance.web.errors import EXCEPTION_HANDLERS
from governance.web.ui import static_router, template_config, ui_router

log = logging.getLogger("commons")


class DeadlineSweeper:
    """Closes votes, appeal windows and expired reviews when their deadlines pass (every ``interval`` s)."""

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

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                for pid, action in lifecycle.sweep(self.ctx):
                    log.info("proposal %s: %s (deadline passed)", pid, action)
                events.remind_voters(self.ctx)
            except Exception:  # keep sweeping; the next pass retries
                log.exception("deadline sweep failed")


def route_handlers() -> list[Any]:
    handlers: list[Any] = [
        MemberController,
        DataSourceController,
        ProposalController,
        MetaController,
        JobController,
        WebhookController,
        NotificationController,
        ModelController,
        ReleaseController,
    ]
    try:
        from governance.web.api.audit import AuditController
    except ModuleNotFoundError:  # pragma: no cover - the audit API lands with the audit log
        pass
    else:
        handlers.append(AuditController)
    return handlers


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
    background: bool = False,
) -> Litestar:
    """Build the app. ``background=True`` also runs the deadline sweeper, the webhook deliverer and (unless
    ``COMMONS_EMBEDDED_WORKER=false``) one job worker: what ``commons serve`` does."""
    settings = settings or get_settings()
    engine = engine or make_engine(settings.effective_database_url)
    ctx = Ctx.create(engine, settings, clock)
    # group commit for concurrent votes; on SQLite the batch is written on the event loop itself
    ctx.vote_batcher = VoteBatcher(ctx, inline=engine.dialect.name == "sqlite")
    services: list[Any] = []
    if background:
        from governance.jobs.webhooks import Deliverer
        from governance.jobs.worker import Worker

        services = [DeadlineSweeper(ctx), Deliverer(ctx)]
        if settings.embedded_worker:
            services.append(Worker(ctx))

    def on_startup(app: Litestar) -> None:
        for service in services:
            service.start()

    def on_shutdown(app: Litestar) -> None:
        for service in reversed(services):
            service.stop()
        ctx.vote_batcher.stop()

    return Litestar(
        route_handlers=[*route_handlers(), ui_router(), static_router()],
        template_config=template_config(),
        dependencies={
            "ctx": Provide(provide_ctx, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "session": Provide(provide_session),
            "actor": Provide(provide_actor, sync_to_thread=True),
        },
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        state=State({"ctx": ctx}),
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        openapi_config=OpenAPIConfig(
            title="Commons",
            version="1",
            description="Community governance for federated unlearning. Authenticate with "
            "'Authorization: Bearer <API token>' (create one with `commons token create`).",
        ),
        signature_namespace={"Ctx": Ctx},
        debug=False,
    )
