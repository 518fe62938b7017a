"""Jobs (list, detail, live progress as server-sent events, cancel, retry), webhooks, notifications."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from litestar import Controller, delete, get, post
from litestar.params import Parameter, QueryParameter
from litestar.response import ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field

from governance.bounds import Filter, Id, OptionalId
from governance.domain.jobs import FINAL_JOB_STATES, JobState
from governance.domain.review import ActorView
from governance.services import events, jobs
from governance.services.context import Ctx


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=4000)


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str | None = Field(default=None, description="another registered unlearning method")
    method_config: dict[str, Any] | None = Field(default=None, description="e.g. a larger repair budget")


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000)
    events: list[str]
    secret: str | None = Field(default=None, description="16-200 characters; omit for a random one")


def _jsonable(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class JobController(Controller):
    path = "/api/v1/jobs"
    tags = ["jobs"]

    @get("/", sync_to_thread=True)
    def list_jobs(
        self,
        ctx: Ctx,
        actor: ActorView,
        state_filter: Annotated[Filter, QueryParameter(name="state")] = None,
        proposal_id: OptionalId = None,
        limit: int = Parameter(default=50, ge=1, le=500),
    ) -> list[dict[str, Any]]:
        return jobs.list_jobs(ctx, state=state_filter, proposal_id=proposal_id, limit=limit, viewer=actor)

    @get("/{job_id:int}", sync_to_thread=True)
    def detail(self, ctx: Ctx, actor: ActorView, job_id: Id) -> dict[str, Any]:
        """State, attempts and their settings, progress (phase, round, last metrics), cost, report."""
        return jobs.get(ctx, job_id, actor)

    @get("/{job_id:int}/events")
    async def stream(
        self,
        ctx: Ctx,
        actor: ActorView,
        job_id: Id,
        interval: float = Parameter(default=1.0, ge=0.0, le=60.0),
    ) -> ServerSentEvent:
        """Server-sent events: a ``progress`` event whenever the job's state or progress changes, then ``end``."""
        first = await asyncio.to_thread(jobs.get, ctx, job_id, actor)  # 404 before the stream starts
        pause = min(max(interval, 0.2), 10.0)

        async def gen() -> AsyncGenerator[dict[str, str], None]:
            last = None
            job = first
            while True:
                snapshot = _jsonable(
                    {k: job[k] for k in ("state", "progress", "attempt", "model_version", "error")}
                )
                if snapshot != last:
                    yield {"event": "progress", "data": snapshot}
                    last = snapshot
                if JobState(job["state"]) in FINAL_JOB_STATES:
                    yield {"event": "end", "data": _jsonable({"state": job["state"]})}
                    return
                await asyncio.sleep(pause)
                job = await asyncio.to_thread(jobs.get, ctx, job_id, actor)

        return ServerSentEvent(gen())

    @post("/{job_id:int}/cancel", status_code=200, sync_to_thread=True)
    def cancel(self, ctx: Ctx, actor: ActorView, job_id: Id, data: CancelIn) -> dict[str, Any]:
        """Council or admin: stop at the next round boundary, with a reason."""
        return jobs.request_cancel(ctx, job_id, actor, data.reason)

    @post("/{job_id:int}/retry", status_code=200, sync_to_thread=True)
    def retry(self, ctx: Ctx, actor: ActorView, job_id: Id, data: RetryIn) -> dict[str, Any]:
        """Reviewers: retry a failed job, optionally with another method or settings."""
        return jobs.retry(ctx, job_id, actor, data.method_config, data.method)


class WebhookController(Controller):
    path = "/api/v1/webhooks"
    tags = ["webhooks"]

    @get("/", sync_to_thread=True)
    def list_hooks(self, ctx: Ctx, actor: ActorView) -> list[dict[str, Any]]:
        return events.list_webhooks(ctx, actor)

    @post("/", sync_to_thread=True)
    def add(self, ctx: Ctx, actor: ActorView, data: WebhookIn) -> dict[str, Any]:
        """Admins register a URL and the events it receives; the signing secret is in this response only."""
        return events.add_webhook(ctx, data.url, data.events, actor, secret=data.secret)

    @delete("/{webhook_id:int}", status_code=204, sync_to_thread=True)
    def remove(self, ctx: Ctx, actor: ActorView, webhook_id: Id) -> None:
        events.remove_webhook(ctx, webhook_id, actor)

    @get("/{webhook_id:int}/deliveries", sync_to_thread=True)
    def deliveries(self, ctx: Ctx, actor: ActorView, webhook_id: Id) -> list[dict[str, Any]]:
        """Every delivery and every attempt, with status codes and errors."""
        return events.deliveries(ctx, webhook_id, actor)


class NotificationController(Controller):
    path = "/api/v1/notifications"
    tags = ["notifications"]

    @get("/", sync_to_thread=True)
    def mine(self, ctx: Ctx, actor: ActorView, unread: bool = False) -> list[dict[str, Any]]:
        assert actor.member_id is not None
        return events.list_notifications(ctx, actor.member_id, unread)

    @post("/{notification_id:int}/read", status_code=204, sync_to_thread=True)
    def read(self, ctx: Ctx, actor: ActorView, notification_id: Id) -> None:
        assert actor.member_id is not None
        events.mark_read(ctx, actor.member_id, notification_id)
