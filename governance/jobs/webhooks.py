"""Delivers queued webhook events: POST JSON with an HMAC-SHA256 signature and a timestamp, retry with
backoff, record every attempt. Runs in its own threads with short timeouts, so a receiver that fails or hangs
never blocks a job or a request."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlmodel import col, select

from governance.db.engine import write_session
from governance.db.models import Webhook, WebhookAttempt, WebhookDelivery
from governance.domain.jobs import SIGNATURE_HEADER, next_attempt_delay, sign
from governance.services.context import Ctx

log = logging.getLogger("commons.webhooks")


class Deliverer:
    def __init__(
        self,
        ctx: Ctx,
        *,
        timeout: float = 5.0,
        poll: float = 1.0,
        parallel: int = 4,
        client: httpx.Client | None = None,
    ) -> None:
        self.ctx, self.poll = ctx, poll
        self.client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self.pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="commons-webhook")
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="commons-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.deliver_due()
            except Exception:
                log.exception("webhook delivery pass failed")
            self.stopping.wait(self.poll)

    def deliver_due(self, limit: int = 50) -> int:
        """Send every delivery that is due (in parallel); returns how many were attempted."""
        now = self.ctx.clock.now()
        with write_session(self.ctx.engine) as s:
            due = s.exec(
                select(WebhookDelivery, Webhook.url, Webhook.secret)
                .join(Webhook, col(Webhook.id) == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.state == "pending", col(WebhookDelivery.next_attempt_at) <= now)
                .order_by(col(WebhookDelivery.id))
                .limit(limit)
            ).all()
            batch: list[tuple[int, str, str, dict[str, Any]]] = [
                (d.id, url, secret, d.payload) for d, url, secret in due if d.id is not None
            ]
            for d, _, _ in due:  # claimed: not picked again while this pass sends it
                d.next_attempt_at = None
                s.add(d)
        futures = [self.pool.submit(self._send, *item) for item in batch]
        for f in futures:
            f.result()
        return len(batch)

    def _send(self, delivery_id: int, url: str, secret: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        ts = int(self.ctx.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, ts, body),
            "X-Commons-Event": str(payload.get("event", "")),
            "X-Commons-Delivery": str(delivery_id),
        }
        status: int | None = None
        error: str | None = None
        t0 = time.perf_counter()
        try:
            r = self.client.post(url, content=body, headers=headers)
            status = r.status_code
            if not 200 <= r.status_code < 300:
                error = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
        duration_ms = int((time.perf_counter() - t0) * 1000)
        now = self.ctx.clock.now()
        with write_session(self.ctx.engine) as s:
            d = s.get(WebhookDelivery, delivery_id)
            if d is None:
                return
            d.attempts += 1
            d.last_status, d.last_error = status, error
            s.add(
                WebhookAttempt(
                    delivery_id=delivery_id, at=now, status_code=status, error=error, duration_ms=duration_ms
                )
            )
            if error is None:
                d.state, d.delivered_at = "delivered", now
            else:
                delay = next_attempt_delay(d.attempts)
                if delay is None:
                    d.state = "failed"
                else:
                    d.next_attempt_at = now + delay
            s.add(d)
