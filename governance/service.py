"""The composition root: what ``commons serve`` runs. It builds the context (engine, settings, clock,
policy) once, the web app over it, and the background services beside it: the deadline sweeper, the webhook
deliverer and (unless ``COMMONS_EMBEDDED_WORKER=false``) one job worker. The web app itself starts nothing
but its vote batcher, so tests and other hosts build it with :func:`governance.web.app.create_app`."""

from __future__ import annotations

from litestar import Litestar

from governance.db.engine import make_engine
from governance.jobs.sweeper import DeadlineSweeper
from governance.jobs.webhooks import Deliverer
from governance.jobs.worker import Worker
from governance.services.context import Ctx
from governance.settings import Settings
from governance.web.app import Background, create_app


def background_services(ctx: Ctx) -> list[Background]:
    """The services that run beside the web app, in start order (stopped in reverse)."""
    services: list[Background] = [DeadlineSweeper(ctx), Deliverer(ctx)]
    if ctx.settings.embedded_worker:
        services.append(Worker(ctx))
    return services


def build(settings: Settings) -> Litestar:
    """The whole service on ``settings``: the web app with its background services."""
    ctx = Ctx.create(make_engine(settings.effective_database_url), settings)
    return create_app(settings, ctx=ctx, services=background_services(ctx))
