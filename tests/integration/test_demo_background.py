"""`commons serve` on an empty database: the demo community is there at once, its base model is trained by
the service's worker as a job (its progress and time left on the dashboard and in the terminal), and
unlearning waits for it instead of failing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from governance import demo
from governance.cli.operator import _offer_demo
from governance.domain.jobs import time_left
from governance.jobs.worker import Worker
from governance.services import jobs, members, registry, training
from governance.services.context import Ctx
from tests.integration.test_ui_pages import sign_in


def test_time_left_follows_the_pace_so_far() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert time_left(t0, t0 + timedelta(seconds=30), 3, 10) == 70.0
    assert time_left(t0, t0 + timedelta(seconds=30), 10, 10) == 0.0
    assert time_left(t0, t0 + timedelta(seconds=30), 0, 10) is None  # nothing done yet: no estimate
    assert time_left(t0.replace(tzinfo=None), t0 + timedelta(seconds=8), 1, 2) == 8.0


# the job queue and the registry run on both databases elsewhere (test_jobs, test_release_gate); training an LM
# twice here would only repeat them at the cost of a minute
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_demo_is_served_at_once_and_its_model_trained_in_the_background(
    ctx: Ctx, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(demo.SIZES, "small", {"rounds": 1, "model": "small"})  # one round is enough here
    _offer_demo(ctx, True, "small")
    # the community exists before any model does: members can sign in and file proposals
    (item,) = training.preparing(ctx)
    assert item.state == "queued" and "the demo's base model" in item.describe()
    assert registry.list_versions(ctx, limit=10) == []
    alice = members.find_member(ctx, "alice")
    sign_in(client, ctx, alice.id, "alice")
    page = client.get("/").text
    assert "Still being prepared: the demo&#39;s base model (job #" in page

    worker = Worker(ctx, "embedded")
    assert worker.run_once()  # the service's worker takes the training job
    job = jobs.get(ctx, item.job_id)
    assert job["state"] == "succeeded" and job["kind"] == "train", job.get("error")
    assert job["report"]["passed"] is True  # verified by the service's verifier like every version
    released = registry.get_version(ctx, job["model_version"])
    assert released.state == "released"
    assert training.preparing(ctx) == []
    assert "Still being prepared" not in client.get("/").text
