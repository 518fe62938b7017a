"""A hidden tally stays hidden: while the poll is open, nothing anyone else can read (API, UI, the audit log's
entries, proofs and export) tells a vote's choice; after the close, the choices are in the log and a recount
of the exported log equals the tally."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient

from governance.audit.recount import recount
from governance.audit.verify import verify_export
from governance.cli import main
from governance.services.context import Ctx
from tests.conftest import PassTime, Person
from tests.integration.test_api_governance import new_proposal, ok, to_voting
from tests.integration.test_ui_pages import sign_in

Client = TestClient[Litestar]

VOTES: dict[str, tuple[str, str | None]] = {  # the latest vote of each; cat first approves, then blocks
    "ann": ("approve", None),
    "bob": ("object", "secret-reason-of-bob"),
    "cat": ("block", "secret-reason-of-cat"),
    "coun1": ("abstain", None),
    "rev1": ("approve", "secret-reason-of-rev1"),
}
LEAK = re.compile(r"choice\W{0,12}(approve|object|abstain|block)", re.I)


def _cast(client: Client, pid: int, people: dict[str, Person]) -> None:
    ok(client.post(f"/api/v1/proposals/{pid}/votes", json={"choice": "approve"}, headers=people["cat"].auth))
    for handle, (choice, reason) in VOTES.items():
        body = {"choice": choice, "reason": reason or ""}
        ok(client.post(f"/api/v1/proposals/{pid}/votes", json=body, headers=people[handle].auth))


def _readable(client: Client, pid: int, headers: dict[str, str]) -> dict[str, str]:
    """Every page and API answer about the proposal and the audit log this reader can fetch."""
    size = ok(client.get("/api/v1/audit/checkpoint"))["tree_size"]
    paths = [
        "/api/v1/audit/entries?start=0",
        "/api/v1/audit/export",
        "/api/v1/audit/checkpoint",
        f"/api/v1/audit/consistency?first=1&second={size}",
        "/api/v1/proposals",
        f"/api/v1/proposals/{pid}",
        f"/api/v1/proposals/{pid}/tally",
        f"/api/v1/proposals/{pid}/votes",
        f"/api/v1/proposals/{pid}/votes?history=true",
        "/audit",
        f"/audit?subject=proposal:{pid}",
        "/proposals",
        f"/proposals/{pid}",
        f"/proposals/{pid}/tally",
        "/",
    ]
    paths += [f"/api/v1/audit/entries/{seq}" for seq in range(size)]
    paths += [f"/audit/{seq}" for seq in range(size)]
    seen = {}
    for path in paths:
        r = client.get(path, headers=headers)
        assert r.status_code < 500, (path, r.status_code)
        if r.status_code == 200:
            seen[path] = r.text
    return seen


def _vote_entries(export: bytes, pid: int) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in export.splitlines()[1:]]
    return [
        line["entry"]
        for line in lines
        if line["entry"]["subject"] == f"proposal:{pid}"
        and line["entry"]["action"] in ("proposal.vote_cast", "proposal.vote_changed")
    ]


def test_hidden_tally_reveals_no_choice_while_open_and_recounts_after_close(
    client: Client, community: dict[str, Person], ctx: Ctx, pass_time: PassTime
) -> None:
    people = community
    p = new_proposal(client, people["bob"], secret_tally=True)
    pid = p["id"]
    to_voting(client, p, people)
    _cast(client, pid, people)

    # the log commits to every choice: no choice in a payload, a commitment to the choice and to a reason
    export = client.get("/api/v1/audit/export").content
    entries = _vote_entries(export, pid)
    assert len(entries) == len(VOTES) + 1
    for e in entries:
        assert "choice" not in e["payload"] and set(e["sensitive"]) == {"choice", "reason"}, e
    assert b'"reveal"' not in export

    readers = {"anonymous": {}, "member": people["dan"].auth, "reviewer": people["rev3"].auth}
    for who, headers in readers.items():
        client.cookies.clear()
        seen = _readable(client, pid, headers)
        if who != "anonymous":  # and through the UI, signed in
            person = people["dan" if who == "member" else "rev3"]
            sign_in(client, ctx, person.id, person.handle)
            seen |= {f"ui {k}": v for k, v in _readable(client, pid, {}).items()}
        assert f"/api/v1/proposals/{pid}/votes" not in seen  # refused while open
        for path, text in seen.items():
            assert not LEAK.search(text), (who, path, LEAK.search(text))
            assert "secret-reason" not in text, (who, path)
        if who != "anonymous":
            tally = json.loads(seen[f"/api/v1/proposals/{pid}/tally"])
            assert tally["hidden"] and tally["turnout"] == len(VOTES) and tally["approve"] is None
    client.cookies.clear()

    # the close reveals the choices into the log, in its own transaction
    pass_time(days=8)
    tally = ok(client.get(f"/api/v1/proposals/{pid}/tally", headers=people["dan"].auth))
    assert not tally["hidden"] and tally["closed"]
    export = client.get("/api/v1/audit/export").content
    verify_export(export, strict=True)
    (poll,) = recount(export, pid)
    assert poll.closed and poll.matches and poll.hidden_votes == len(VOTES) + 1, poll
    assert poll.counts == {c: tally[c] for c in ("approve", "object", "abstain", "block")}
    assert poll.counts == {"approve": 2, "object": 1, "abstain": 1, "block": 1}
    assert poll.electorate == tally["electorate"]
    sign_in(client, ctx, people["dan"].id, "dan")
    page = client.get(f"/proposals/{pid}").text  # the timeline shows the revealed choices after the close
    assert LEAK.search(page), page


def test_recount_refuses_a_reveal_that_does_not_match_its_commitment(
    client: Client, community: dict[str, Person], pass_time: PassTime, tmp_path: Path
) -> None:
    people = community
    p = new_proposal(client, people["bob"], secret_tally=True)
    to_voting(client, p, people)
    _cast(client, p["id"], people)
    assert recount(client.get("/api/v1/audit/export").content, p["id"])[0].unrevealed  # open: not guessed
    pass_time(days=8)
    export = client.get("/api/v1/audit/export").content
    forged = export.replace(b'"choice":"object"', b'"choice":"approve"', 1)
    assert forged != export
    try:
        recount(forged, p["id"])
    except ValueError as exc:
        assert "does not match its commitment" in str(exc)
    else:
        raise AssertionError("a forged reveal was counted")
    # what a community member runs on the export: `commons audit recount EXPORT PROPOSAL`
    (tmp_path / "log.jsonl").write_bytes(export)
    (tmp_path / "forged.jsonl").write_bytes(forged)
    done = CliRunner().invoke(main, ["audit", "recount", str(tmp_path / "log.jsonl"), str(p["id"])])
    assert done.exit_code == 0 and done.output.startswith("OK: approve 2, object 1"), done.output
    done = CliRunner().invoke(main, ["audit", "recount", str(tmp_path / "forged.jsonl"), str(p["id"])])
    assert done.exit_code == 1 and "does not match its commitment" in done.output, done.output


def test_an_open_tally_still_logs_choices_in_clear(
    client: Client, community: dict[str, Person], pass_time: PassTime
) -> None:
    people = community
    p = new_proposal(client, people["bob"])
    to_voting(client, p, people)
    _cast(client, p["id"], people)
    entries = _vote_entries(client.get("/api/v1/audit/export").content, p["id"])
    assert entries[-1]["payload"]["choice"] == "approve" and "choice" not in entries[-1]["sensitive"]
    pass_time(days=8)
    (poll,) = recount(client.get("/api/v1/audit/export").content, p["id"])
    assert poll.matches and poll.hidden_votes == 0
