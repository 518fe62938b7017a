"""Issue 15, section 6: HTML pages send security headers; members see a job's error summary, operators its
trace; a token keeps when it was last used."""

from __future__ import annotations

from datetime import datetime, timedelta

from litestar import Litestar
from litestar.testing import TestClient

from governance.db.engine import write_session
from governance.db.models import Job
from governance.domain.clock import FixedClock
from governance.services import members
from governance.services.context import Ctx
from tests.conftest import Person

TRACE = """Traceback (most recent call last):
  File "/srv/commons/governance/jobs/worker.py", line 120, in run
    result = run_job(spec)
FileNotFoundError: [Errno 2] No such file or directory: '/srv/commons/artifacts/mv-1/model.safetensors'"""


def test_html_pages_send_security_headers(client: TestClient[Litestar]) -> None:
    for path in ("/login", "/audit"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-frame-options"] == "DENY"
    static = client.get("/static/htmx.min.js")
    assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"


def test_members_see_an_error_summary_operators_the_trace(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    with write_session(ctx.engine) as s:
        job = Job(kind="unlearn", state="failed", spec={"method": "gradient_ascent_ewc"}, error=TRACE)
        s.add(job)
        s.flush()
        job_id = job.id
    member = client.get("/api/v1/jobs/", headers=community["ann"].auth).json()
    (row,) = [j for j in member if j["id"] == job_id]
    assert row["error"] == "FileNotFoundError: [Errno 2] No such file or directory: '…/model.safetensors'"
    detail = client.get(f"/api/v1/jobs/{job_id}", headers=community["ann"].auth).json()
    assert "/srv/" not in str(detail) and "Traceback" not in str(detail)
    admin = client.get(f"/api/v1/jobs/{job_id}", headers=community["admin"].auth).json()
    assert admin["error"] == TRACE


def test_a_token_keeps_its_last_use_at_most_once_a_minute(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    ann = community["ann"]

    def last_used() -> datetime | None:
        (token,) = members.list_tokens(ctx, ann.id)
        return token.last_used_at

    clock.advance(hours=1)
    assert client.get("/api/v1/proposals/", headers=ann.auth).status_code == 200
    first = clock.now()
    assert last_used() == first
    clock.advance(seconds=30)  # within the minute: the read writes nothing
    assert client.get("/api/v1/members/me", headers=ann.auth).status_code == 200
    assert last_used() == first
    clock.advance(seconds=31)
    assert client.get("/api/v1/members/me", headers=ann.auth).status_code == 200
    assert last_used() == clock.now()
    # an unknown token touches nothing
    clock.advance(minutes=5)
    assert client.get("/api/v1/members/me", headers={"Authorization": "Bearer cmn_nope"}).status_code == 401
    assert last_used() == first + timedelta(seconds=61)
