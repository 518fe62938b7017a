"""Bad input is a 4xx, never a 500, and changes nothing; an unexpected error is logged with a request id that
its response carries too (issue 15, section 4). On SQLite and PostgreSQL.

The storm: JSON nested 1,000 deep, ids beyond the columns' range in paths, queries and bodies, offset=1e20,
400-digit numbers, NUL characters in texts, paths, queries and forms, a huge behaviour pattern; against the
JSON API and the UI. The limits are governance/bounds.py's (docs/api.md lists them).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from governance.bounds import MAX_ID, MAX_PATTERN
from governance.services import members
from tests.conftest import Person
from tests.integration.test_ui_pages import sign_in

Client = TestClient[Litestar]

HUGE = 2**64  # beyond SQLite's INTEGER
BIG = 2**31  # beyond PostgreSQL's integer
DIGITS_400 = "9" * 400
DEEP_ARRAY = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as c:
        names = inspect(c).get_table_names()
        return {n: c.execute(text(f'SELECT count(*) FROM "{n}"')).scalar_one() for n in names}


def _api_cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx keyword arguments); every one must answer 4xx."""
    json_endpoints = [
        ("POST", "/api/v1/proposals"),
        ("PATCH", "/api/v1/proposals/1"),
        ("POST", "/api/v1/proposals/1/votes"),
        ("POST", "/api/v1/proposals/1/triage"),
        ("POST", "/api/v1/members"),
        ("POST", "/api/v1/members/me/tokens"),
        ("POST", "/api/v1/data-sources"),
        ("POST", "/api/v1/models"),
        ("POST", "/api/v1/jobs/1/retry"),
        ("POST", "/api/v1/webhooks"),
    ]
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for method, path in json_endpoints:
        for body in (DEEP_ARRAY, DEEP_OBJECT):
            cases.append((method, path, {"content": body, "headers": {"content-type": "application/json"}}))
    for n in (HUGE, BIG, -HUGE):
        for path in (
            f"/api/v1/proposals/{n}",
            f"/api/v1/proposals/{n}/tally",
            f"/api/v1/proposals/{n}/votes",
            f"/api/v1/members/{n}",
            f"/api/v1/data-sources/{n}",
            f"/api/v1/data-sources/{n}/proposals",
            f"/api/v1/jobs/{n}",
            f"/api/v1/jobs/{n}/events",
            f"/api/v1/webhooks/{n}/deliveries",
            f"/api/v1/audit/entries/{n}",
            f"/api/v1/proposals?proposer_id={n}",
            f"/api/v1/proposals?offset={n}",
            f"/api/v1/jobs?proposal_id={n}",
            f"/api/v1/models?proposal_id={n}",
            f"/api/v1/models?offset={n}",
            f"/api/v1/members?offset={n}",
            f"/api/v1/data-sources?owner_id={n}",
            f"/api/v1/audit/entries?start={n}",
            f"/api/v1/audit/consistency?first={n}",
        ):
            cases.append(("GET", path, {}))
        cases += [
            ("POST", f"/api/v1/proposals/{n}/votes", {"json": {"choice": "approve"}}),
            ("POST", f"/api/v1/proposals/{n}/submit", {}),
            ("POST", f"/api/v1/proposals/{n}/cancel", {"json": {"reason": "x"}}),
            ("POST", f"/api/v1/notifications/{n}/read", {}),
            ("PUT", f"/api/v1/members/{n}/roles", {"json": {"roles": ["member"]}}),
            ("DELETE", f"/api/v1/members/me/tokens/{n}", {}),
            ("DELETE", f"/api/v1/webhooks/{n}", {}),
            (
                "POST",
                "/api/v1/proposals",
                {"json": {"title": "Forget it", "target": {"kind": "data_source", "data_source_id": n}}},
            ),
            (
                "POST",
                "/api/v1/proposals",
                {
                    "json": {
                        "kind": "election",
                        "title": "Elect someone",
                        "election": {"role": "council", "candidate_id": n},
                    }
                },
            ),
            (
                "POST",
                "/api/v1/models",
                {
                    "json": {
                        "version": "mv-abcdef",
                        "content_hash": "0" * 64,
                        "task": "digits",
                        "proposal_id": n,
                    }
                },
            ),
        ]
    for offset in ("1e20", DIGITS_400, "-1", "NaN"):
        cases.append(("GET", f"/api/v1/proposals?offset={offset}", {}))
        cases.append(("GET", f"/api/v1/proposals?limit={offset}", {}))
    cases.append(("GET", "/api/v1/jobs/1/events?interval=NaN", {}))
    category = {"kind": "category", "category": "cooking"}
    threshold = (
        '{"title": "Forget cooking", "target": {"kind": "category", "category": "cooking"}, '
        '"acceptance_tests": [{"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": %s}]}'
    )
    for number in (DIGITS_400, "-" + DIGITS_400, "1e400", f"{DIGITS_400}.5"):
        cases.append(
            (
                "POST",
                "/api/v1/proposals",
                {"content": threshold % number, "headers": {"content-type": "application/json"}},
            )
        )
    nul = "nul\x00byte"
    cases += [
        ("POST", "/api/v1/proposals", {"json": {"title": nul, "target": category}}),
        ("POST", "/api/v1/proposals", {"json": {"title": "Forget it", "rationale": nul, "target": category}}),
        (
            "POST",
            "/api/v1/proposals",
            {"json": {"title": "Forget it", "target": {**category, "category": nul}}},
        ),
        (
            "POST",
            "/api/v1/proposals",
            {"json": {"title": "Forget it", "target": {"kind": "behaviour", "pattern": nul}}},
        ),
        ("POST", "/api/v1/proposals/1/votes", {"json": {"choice": "object", "reason": nul}}),
        ("POST", "/api/v1/proposals/1/votes", {"json": {"choice": nul}}),
        ("POST", "/api/v1/members", {"json": {"handle": "newbie", "display_name": nul}}),
        ("POST", "/api/v1/members/me/tokens", {"json": {"name": nul}}),
        (
            "POST",
            "/api/v1/data-sources",
            {"json": {"name": nul, "node_id": "n", "content_hash": "0" * 64}},
        ),
        ("POST", "/api/v1/jobs/1/retry", {"json": {"method": nul}}),
        ("POST", "/api/v1/webhooks", {"json": {"url": "http://x/" + nul, "events": [nul]}}),
        ("GET", "/api/v1/proposals?state=%00", {}),
        ("GET", "/api/v1/proposals?kind=a%00b", {}),
        ("GET", "/api/v1/members?role=%00", {}),
        ("GET", "/api/v1/models?state=%00", {}),
        ("GET", "/api/v1/models/mv-%00", {}),
        ("GET", "/api/v1/releases/%00/verdict", {}),
        ("GET", "/api/v1/audit/entries?start=%00", {}),
        # a behaviour pattern of 9 MB, and one just over the limit
        (
            "POST",
            "/api/v1/proposals",
            {"json": {"title": "Forget it", "target": {"kind": "behaviour", "pattern": "x" * 9_000_000}}},
        ),
        (
            "POST",
            "/api/v1/proposals",
            {
                "json": {
                    "title": "Forget it",
                    "target": {"kind": "behaviour", "pattern": "x" * (MAX_PATTERN + 1)},
                }
            },
        ),
        ("POST", "/api/v1/proposals", {"json": {"title": "x" * 100_000, "target": category}}),
        ("PUT", "/api/v1/members/1/roles", {"json": {"roles": ["member"] * 10_000}}),
    ]
    return cases


API_CASES = _api_cases()
PUBLIC = [
    ("GET", f"/api/v1/audit/entries/{HUGE}", {}),
    ("GET", "/audit?actor=%00", {}),
    ("GET", "/audit?action=%00&subject=%00", {}),
    ("GET", f"/audit?before={HUGE}", {}),
    ("GET", f"/audit/{HUGE}", {}),
    ("GET", "/audit/%00", {}),
    ("POST", "/api/v1/proposals", {"content": DEEP_ARRAY, "headers": {"content-type": "application/json"}}),
]


def _ui_cases() -> list[tuple[str, str]]:
    out = []
    for n in (HUGE, BIG):
        out += [
            f"/proposals/{n}",
            f"/proposals/{n}/tally",
            f"/proposals/{n}/edit",
            f"/data-sources/{n}",
            f"/jobs/{n}",
            f"/jobs/{n}/progress",
            f"/audit/{n}",
            f"/models/mv-{n}",
        ]
    out += ["/proposals?state=%00", "/jobs?state=%00", "/models/%00", "/proposals/new?target=%00"]
    return out


def _assert_4xx(r: Any, what: str) -> None:
    assert 400 <= r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"


@pytest.fixture
def storm_env(
    client: Client, community: dict[str, Person], engine: Engine, caplog: pytest.LogCaptureFixture
) -> tuple[Client, dict[str, Person], Engine]:
    caplog.set_level(logging.ERROR)
    return client, community, engine


def test_bad_input_storm_api(
    storm_env: tuple[Client, dict[str, Person], Engine], caplog: pytest.LogCaptureFixture
) -> None:
    client, people, engine = storm_env
    before = _counts(engine)
    for method, path, kw in API_CASES:
        headers = (
            {**people["admin"].auth, **kw.pop("headers", {})} if "headers" in kw else people["admin"].auth
        )
        r = client.request(method, path, headers=headers, **kw)
        _assert_4xx(r, f"{method} {path[:80]}")
        if "application/json" in r.headers.get("content-type", ""):
            body = r.json()
            assert body["request_id"] == r.headers["x-request-id"], body
    for method, path, kw in PUBLIC:  # no token needed to be refused
        r = client.request(method, path, **kw)
        _assert_4xx(r, f"anonymous {method} {path[:80]}")
    assert _counts(engine) == before
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], "an error was logged"


def test_bad_input_storm_ui(
    storm_env: tuple[Client, dict[str, Person], Engine], caplog: pytest.LogCaptureFixture
) -> None:
    client, people, engine = storm_env
    ann = people["ann"]
    from governance.services.context import Ctx

    ctx: Ctx = client.app.state.ctx
    token = sign_in(client, ctx, ann.id, ann.handle)
    before = _counts(engine)
    for path in _ui_cases():
        _assert_4xx(client.get(path), f"UI GET {path}")
    posts: list[tuple[str, dict[str, str]]] = [
        (f"/proposals/{HUGE}/act/vote", {"choice": "approve"}),
        (f"/proposals/{HUGE}/comments", {"body": "hello"}),
        (f"/jobs/{HUGE}/cancel", {"reason": "stop"}),
        (f"/data-sources/{HUGE}/withdraw-consent", {"rationale": "mine"}),
        (f"/members/{HUGE}/roles", {"roles": "member"}),
        (f"/notifications/{HUGE}/read", {}),
        ("/proposals/new", {"title": "Forget \x00 it", "target_kind": "category", "category": "cooking"}),
        ("/proposals/new", {"title": "Forget it", "target_kind": "data_source", "data_source_id": str(HUGE)}),
        (
            "/proposals/new",
            {"title": "Forget it", "target_kind": "behaviour", "pattern": "x" * (MAX_PATTERN + 1)},
        ),
        (
            "/proposals/new",
            {
                "title": "Forget it",
                "target_kind": "category",
                "category": "cooking",
                "test_forget_accuracy_gap": "on",
                "thr_forget_accuracy_gap": DIGITS_400,
            },
        ),
        ("/elections", {"role": "council", "candidate_id": str(HUGE)}),
        ("/me/tokens", {"name": "a\x00b"}),
        ("/data-sources", {"name": "n\x00", "node_id": "n", "content_hash": "0" * 64}),
        ("/login", {"handle": "ann\x00", "password": "x"}),
    ]
    for path, data in posts:
        r = client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)
        _assert_4xx(r, f"UI POST {path}")
    assert _counts(engine) == before
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], "an error was logged"


def test_ids_up_to_the_bound_are_ordinary_misses(client: Client, community: dict[str, Person]) -> None:
    """The largest id the columns hold is a plain 404, one more is a 400."""
    auth = community["ann"].auth
    assert client.get(f"/api/v1/proposals/{MAX_ID}", headers=auth).status_code == 404
    assert client.get(f"/api/v1/proposals/{MAX_ID + 1}", headers=auth).status_code == 400


def test_an_unexpected_error_is_logged_with_the_request_id_it_answers(
    client: Client,
    community: dict[str, Person],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in list_members")

    monkeypatch.setattr(members, "list_members", boom)
    caplog.set_level(logging.ERROR)
    r = client.get("/api/v1/members", headers={**community["admin"].auth, "X-Request-ID": "ci-run-0001"})
    assert r.status_code == 500
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"] == "ci-run-0001"
    assert "a bug in" not in r.text and "Traceback" not in r.text  # the trace stays in the log
    logged = [rec for rec in caplog.records if "ci-run-0001" in rec.getMessage()]
    assert logged and logged[0].exc_info and "a bug in list_members" in str(logged[0].exc_info[1])

    # a request id a client sends that is not a plain token is replaced by a fresh one
    r = client.get("/api/v1/members", headers={**community["admin"].auth, "X-Request-ID": "<script>"})
    assert r.status_code == 500 and r.json()["request_id"] == r.headers["x-request-id"] != "<script>"

    # the UI shows a page naming the request, and logs it the same way
    ann = community["ann"]
    sign_in(client, client.app.state.ctx, ann.id, ann.handle)
    caplog.clear()
    r = client.get("/members")
    assert r.status_code == 500 and "text/html" in r.headers["content-type"]
    rid = r.headers["x-request-id"]
    assert rid in r.text and "a bug in" not in r.text
    assert any(rid in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_every_response_carries_a_request_id(client: Client) -> None:
    for path in ("/api/v1/health", "/login", "/api/v1/nowhere"):
        r = client.get(path)
        assert len(r.headers["x-request-id"]) >= 8, path
