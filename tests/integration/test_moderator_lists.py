"""The moderator's day (issue 19): a job's progress and outcome read plainly; proposals and the audit log can
be searched and paged; reviewers see who has not voted yet and remind them; rationales render links safely."""

from __future__ import annotations

import threading
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

from governance.domain.clock import FixedClock
from governance.jobs.worker import Worker
from governance.services import jobs
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_jobs import approved_proposal, fake_result, verifier
from tests.integration.test_ui_pages import sign_in
from unlearning import JobResult, ProgressEvent


def three_phase_runner(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> JobResult:
    progress(ProgressEvent("x", "info", 1, 1, {"nodes": 3.0}, 3))
    for r in (1, 2, 3):  # the nodes' replies carry their partition ids: a mean of them is no measurement
        progress(ProgressEvent("x", "ascent", r, 4, {"forget_loss": 2.5 + r, "partition-id": 1.0098}, 3))
    progress(ProgressEvent("x", "repair", 1, 1, {"retain_loss": 1.25, "node-id": 7.0}, 2))
    return fake_result(claim)


def test_a_jobs_progress_and_outcome_read_plainly(
    client: TestClient[Litestar], ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid = approved_proposal(ctx, clock, community)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    Worker(ctx, "w1", runner=three_phase_runner, verifier=verifier(False)).run_once()
    done = jobs.get(ctx, job["id"])
    assert done["state"] == "succeeded" and done["progress"]["nodes_done"] == 2
    assert done["progress"]["nodes_total"] == 3 and done["progress"]["phase"] == "repair"

    sign_in(client, ctx, community["rev1"].id, "rev1")
    html = client.get(f"/jobs/{job['id']}").text
    assert "finished · verification failed" in html and ">succeeded<" not in html
    assert "partition-id" not in html and "node-id" not in html  # identifiers are not metrics
    assert "retain_loss" in html
    assert "1 of 3: unlearning" in html  # overall step of steps
    assert "2 of 3 node(s) answered" in html
    assert "round 1 of 1" not in html and "<progress" not in html  # a one-round phase has no bar


def test_a_running_phase_shows_round_of_rounds_nodes_and_time_left(
    client: TestClient[Litestar], ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid = approved_proposal(ctx, clock, community)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    pages: list[str] = []
    sign_in(client, ctx, community["rev1"].id, "rev1")

    class Peek(Worker):  # the runner reads what the worker's heartbeat would store
        def _work(self, claim: jobs.Claim, live: Any) -> None:
            self.live = live
            super()._work(claim, live)

    def runner(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> JobResult:
        progress(ProgressEvent("x", "info", 1, 1, {"nodes": 3.0}, 3))
        progress(ProgressEvent("x", "ascent", 1, 4, {"forget_loss": 3.0}, 3))
        clock.advance(seconds=30)
        progress(ProgressEvent("x", "ascent", 2, 4, {"forget_loss": 4.0}, 3))
        jobs.heartbeat(ctx, claim.job_id, "w1", w.live.progress)
        pages.append(client.get(f"/jobs/{claim.job_id}/progress").text)
        return fake_result(claim)

    w = Peek(ctx, "w1", runner=runner, verifier=verifier(True))
    w.run_once()
    (page,) = pages
    assert "round 2 of 4" in page and "3 of 3 node(s) answered" in page and "<progress" in page
    assert "about 30 s left in this phase" in page  # 30 s for 2 rounds since the phase began: 2 more left
    assert "finished · verification passed" in client.get(f"/jobs/{job['id']}").text
