"""Outbound webhooks: signed deliveries, retries with backoff, every attempt recorded, and a receiver that
fails or hangs never blocks the service."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from governance.domain.clock import FixedClock
from governance.domain.jobs import SIGNATURE_HEADER, verify_signature
from governance.jobs.webhooks import Deliverer
from governance.schemas import ProposalCreate
from governance.services import events, proposals
from governance.services.context import Ctx
from tests.conftest import Person


class Receiver:
    def __init__(self, behaviour: list[str]) -> None:
        self.behaviour = behaviour  # per request: "ok", "fail" or "hang"
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(({k: v for k, v in self.headers.items()}, body))
                mode = outer.behaviour.pop(0) if outer.behaviour else "ok"
                if mode == "hang":
                    time.sleep(3)
                self.send_response(204 if mode == "ok" else 500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([])
    yield r
    r.close()


def submit_proposal(ctx: Ctx, who: Person) -> int:
    p = proposals.create(
        ctx,
        ProposalCreate(title="Forget ads", target={"kind": "category", "category": "ads"}, submit=True),
        who.actor,
    )
    return p.id


def test_signed_delivery_with_retry_and_attempts_recorded(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person], receiver: Receiver
) -> None:
    hook = events.add_webhook(ctx, receiver.url, ["proposal.state_changed"], community["admin"].actor)
    assert hook["secret"].startswith("whsec_")
    receiver.behaviour = ["fail", "ok"]
    submit_proposal(ctx, community["bob"])  # draft -> submitted: one event
    d = Deliverer(ctx, timeout=2)
    assert d.deliver_due() == 1  # fails with 500
    assert d.deliver_due() == 0  # not due before its backoff
    clock.advance(seconds=11)
    assert d.deliver_due() == 1  # retried, delivered
    (delivery,) = events.deliveries(ctx, hook["id"], community["admin"].actor)
    assert delivery["state"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 204]
    headers, body = receiver.received[-1]
    assert verify_signature(hook["secret"], headers[SIGNATURE_HEADER], body, clock.now())
    assert not verify_signature("whsec_other", headers[SIGNATURE_HEADER], body, clock.now())
    assert not verify_signature(hook["secret"], headers[SIGNATURE_HEADER], body + b" ", clock.now())
    clock.advance(minutes=10)  # a replayed delivery is refused by a receiver checking the timestamp
    assert not verify_signature(hook["secret"], headers[SIGNATURE_HEADER], body, clock.now())
    payload = json.loads(body)
    assert payload["event"] == "proposal.state_changed" and payload["data"]["to"] == "submitted"


def test_a_hanging_receiver_never_blocks_the_service(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person], receiver: Receiver
) -> None:
    events.add_webhook(ctx, receiver.url, ["proposal.state_changed"], community["admin"].actor)
    receiver.behaviour = ["hang"]
    d = Deliverer(ctx, timeout=0.5, poll=0.05)
    d.start()
    try:
        t0 = time.perf_counter()
        for _ in range(5):  # the service keeps answering while deliveries time out
            submit_proposal(ctx, community["bob"])
        assert time.perf_counter() - t0 < 5
    finally:
        d.stop()


def test_webhook_management_is_validated_and_admin_only(ctx: Ctx, community: dict[str, Person]) -> None:
    from governance.domain.errors import InvalidInput, PermissionDenied

    with pytest.raises(PermissionDenied):
        events.add_webhook(ctx, "https://ci.example/hook", ["release"], community["ann"].actor)
    with pytest.raises(InvalidInput, match="unknown webhook event"):
        events.add_webhook(ctx, "https://ci.example/hook", ["release", "party"], community["admin"].actor)
    with pytest.raises(InvalidInput, match="http"):
        events.add_webhook(ctx, "ftp://ci.example/hook", ["release"], community["admin"].actor)
    with pytest.raises(InvalidInput, match="16 to 200"):
        events.add_webhook(
            ctx, "https://ci.example/hook", ["release"], community["admin"].actor, secret="short"
        )
    own = events.add_webhook(
        ctx, "https://ci.example/h", ["release"], community["admin"].actor, secret="s" * 20
    )
    assert own["secret"] == "s" * 20
    events.remove_webhook(ctx, own["id"], community["admin"].actor)
    assert [h["active"] for h in events.list_webhooks(ctx, community["admin"].actor)] == [False]


def test_unreachable_receiver_is_retried_then_given_up(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    hook = events.add_webhook(
        ctx, "http://127.0.0.1:9/nothing", ["proposal.state_changed"], community["admin"].actor
    )
    submit_proposal(ctx, community["bob"])
    d = Deliverer(ctx, timeout=0.5, client=httpx.Client(timeout=0.5))
    for _ in range(10):
        d.deliver_due()
        clock.advance(hours=7)
    (delivery,) = events.deliveries(ctx, hook["id"], community["admin"].actor)
    assert delivery["state"] == "failed" and len(delivery["attempts"]) == 7
    assert all(a["error"] for a in delivery["attempts"])


def test_vote_reminders_go_only_to_those_who_have_not_voted(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid = submit_proposal(ctx, community["bob"])
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, pid, community[r].actor, "approve", None)
    opened = events.list_notifications(ctx, community["ann"].id)
    assert any(n["kind"] == "vote_open" for n in opened)
    proposals.vote(ctx, pid, community["ann"].actor, "approve", None)
    assert events.remind_voters(ctx) == 0  # the deadline is a week away
    clock.advance(days=6, hours=1)
    sent = events.remind_voters(ctx)
    assert sent == len(community) - 1
    assert events.remind_voters(ctx) == 0  # once
    assert not any(n["kind"] == "vote_reminder" for n in events.list_notifications(ctx, community["ann"].id))
    assert any(n["kind"] == "vote_reminder" for n in events.list_notifications(ctx, community["cat"].id))
