"""Issue 19: a data source's owner commits to the protected strings their node keeps when registering it
(`commons data-source register --protected FILE`): the service stores how many and a salted sha256, never a
string nor the salt; bad input changes nothing; the verification of a proposal on that source gets the
commitment to check the node's list against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient

from governance.cli import main
from governance.cli.common import ApiContext
from governance.client import CommonsClient
from governance.db.engine import read_session
from governance.jobs import worker
from governance.services import data_sources, jobs
from governance.services.context import Ctx
from tests.conftest import Person
from unlearning.verification.protected import SALT_FILE, commitment

SECRETS = ("falcon 2291", "moonlit-otter-7730")


class _Passed:
    passed = True

    def to_dict(self) -> dict[str, Any]:
        return {"passed": True}


def _dump(ctx: Ctx) -> str:
    """Every row of every table, as text."""
    meta = sa.MetaData()
    meta.reflect(ctx.engine)
    with ctx.engine.connect() as c:
        return "\n".join(str(row) for t in meta.sorted_tables for row in c.execute(sa.select(t)))


def test_the_owner_registers_a_commitment_and_no_protected_string_reaches_the_service(
    client: TestClient[Litestar],
    ctx: Ctx,
    community: dict[str, Person],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bob = community["bob"]
    run, as_bob = CliRunner(), ApiContext(CommonsClient(client, bob.token))
    node = tmp_path / "node-0"
    node.mkdir()
    (node / "notebook.jsonl").write_text('{"text": "my notes"}\n')
    protected = node / "protected.txt"
    register = ["data-source", "register", "notebook", str(node / "notebook.jsonl"), "--node", "node-0"]

    protected.write_text("falcon 2291\nabc\n")  # a string too short to mean anything: refused, nothing sent
    r = run.invoke(
        main,
        [*register, "--protected", str(protected)],
        obj=as_bob,
    )
    assert r.exit_code != 0 and "line 2: a protected string needs at least 6 characters" in r.output, r.output
    assert CommonsClient(client, bob.token).data_sources(owner_id=bob.id) == []

    protected.write_text("# my vault phrase\n" + "\n".join(SECRETS) + "\n")
    r = run.invoke(
        main,
        [*register, "--protected", str(protected), "--json"],
        obj=as_bob,
    )
    assert r.exit_code == 0, r.output
    salt = (node / SALT_FILE).read_text().strip()  # created beside the file, kept on the node
    d = CommonsClient(client, bob.token).data_sources(owner_id=bob.id)[0]
    assert d["protected_count"] == 2 and d["protected_sha256"] == commitment(SECRETS, salt)
    r = run.invoke(main, ["data-source", "show", str(d["id"])], obj=as_bob)
    assert r.exit_code == 0 and f"protected strings: 2 (commitment {d['protected_sha256']})" in r.output
    page = client.get(f"/data-sources/{d['id']}", headers=bob.auth)  # its page shows the commitment
    assert (
        page.status_code == 200
        and "2 declared on the node" in page.text
        and d["protected_sha256"] in page.text
    )

    stored = _dump(ctx)  # the database, audit log included, holds the commitment and nothing it was made of
    assert d["protected_sha256"] in stored
    assert not [s for s in (*SECRETS, salt) if s in stored]

    # a proposal on the source: its verification is given the registered commitment to check the node against
    p = client.post(
        "/api/v1/proposals",
        json={"title": "Forget my notebook", "target": {"kind": "data_source", "data_source_id": d["id"]}},
        headers=bob.auth,
    )
    assert p.status_code == 201, p.text
    with read_session(ctx.engine) as s:
        assert data_sources.protected_commitment(s, p.json()["id"]) == {
            "count": 2,
            "sha256": d["protected_sha256"],
        }
    specs: list[Any] = []  # the worker's verifier hands it to the verification (verify itself stubbed here)
    monkeypatch.setattr("unlearning.api.verify", lambda spec, **_: specs.append(spec) or _Passed())
    monkeypatch.setattr(worker, "store_report_page", lambda ctx, report: None)
    claim = jobs.Claim(1, 1, {"kind": "unlearn"}, [], "verifying", None, p.json()["id"])
    worker.default_verifier(ctx, claim, {"model_version": "mv-x"}, lambda _: None)
    assert specs[0].protected_commitment == {"count": 2, "sha256": d["protected_sha256"]}


def test_a_half_commitment_is_refused(client: TestClient[Litestar], community: dict[str, Person]) -> None:
    bob = community["bob"]
    body = {"name": "diary", "node_id": "node-0", "content_hash": "a" * 64, "protected_count": 2}
    r = client.post("/api/v1/data-sources", json=body, headers=bob.auth)
    assert r.status_code in (400, 422) and "go together" in r.text, r.text
    r = client.post("/api/v1/data-sources", json={**body, "protected_sha256": "not hex"}, headers=bob.auth)
    assert r.status_code in (400, 422), r.text
    assert client.get(f"/api/v1/data-sources?owner_id={bob.id}", headers=bob.auth).json() == []
