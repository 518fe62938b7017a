"""The Litestar app factory. Tests build their own app with their own settings, engine and clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy.engine import Engine

from governance.db.engine import make_engine
from governance.domain.clock import Clock
from governance.services.context import Ctx
from governance.services.votes import VoteBatcher
from governance.settings import Settings, get_settings
from governance.web import openapi
from governance.web.api.data_sources import DataSourceController
from governance.web.api.delegations import DelegationController
from governance.web.api.jobs import JobController, NotificationController, WebhookController
from governance.web.api.members import MemberController
from governance.web.api.models import ModelController, ReleaseController
from governance.web.api.nudges import NudgeController
from governance.web.api.outcomes import OutcomeController
from governance.web.api.probes import EvaluationController, ProbeController
from governance.web.api.proposals import MetaController, ProposalController
from governance.web.deps import provide_actor, provide_ctx, provide_session, provide_settings
from governance.web.errors import (
    EXCEPTION_HANDLERS,
    CommonsRequest,
    refuse_nul_in_url,
    send_request_id,
)
from governance.web.ui import static_router, template_config, ui_router


class Background(Protocol):
    """A service that runs beside the app (governance/service.py composes them): started and stopped with it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def route_handlers() -> list[Any]:
    handlers: list[Any] = [
        MemberController,
        DataSourceController,
        ProposalController,
        NudgeController,
        OutcomeController,
        MetaController,
        JobController,
        WebhookController,
        NotificationController,
        ModelController,
        ReleaseController,
        ProbeController,
        EvaluationController,
        DelegationController,
    ]
    from governance.web.api.audit import AuditController

    handlers.append(AuditController)
    from governance.web.api.ledger import LedgerController

    handlers.append(LedgerController)
    openapi.document(handlers)  # the bearer scheme and the error bodies, on every operation
    return handlers


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
    ctx: Ctx | None = None,
    services: Sequence[Background] = (),
) -> Litestar:
    """Build the web app over ``ctx`` (or a context of ``settings``, ``engine`` and ``clock``). ``services``
    start and stop with the app; :func:`governance.service.build` passes the background services."""
    settings = settings or (ctx.settings if ctx is not None else get_settings())
    if ctx is None:
        engine = engine or make_engine(settings.effective_database_url)
        ctx = Ctx.create(engine, settings, clock)
    # group commit for concurrent votes; on SQLite the batch is written on the event loop itself
    ctx.vote_batcher = VoteBatcher(ctx, inline=ctx.engine.dialect.name == "sqlite")

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
        # bad input is a 4xx, never a 500 (governance/bounds.py); every response carries X-Request-ID
        request_class=CommonsRequest,
        middleware=[refuse_nul_in_url],
        before_send=[send_request_id],
        state=State({"ctx": ctx}),
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        openapi_config=openapi.config(
            "Community governance for federated unlearning. Authenticate with "
            "'Authorization: Bearer <API token>' (create one with `commons token create`)."
        ),
        signature_namespace={"Ctx": Ctx},
        debug=False,
    )
