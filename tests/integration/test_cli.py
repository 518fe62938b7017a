"""The `commons` CLI: operator commands on the database, member commands through the real app in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient

from governance.cli import main
from governance.cli.common import ApiContext
from governance.client import CommonsClient
from governance.services import jobs
from governance.services.context import Ctx
from tests.conftest import Person
from tests.trust import store_version


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def api(client: TestClient[Litestar], who: Person) -> ApiContext:
    return ApiContext(CommonsClient(client, who.token))


def test_operator_commands(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMONS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("COMMONS_DATABASE_URL", raising=False)
    r = runner.invoke(main, ["db", "upgrade"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "data" / "commons.db").exists()
    r = runner.invoke(main, ["member", "add", "alice", "--name", "Alice", "--role", "reviewer"])
    assert r.exit_code == 0, r.output
    assert "alice (member, reviewer)" in r.output
    r = runner.invoke(main, ["member", "add", "alice"])
    assert r.exit_code == 1 and "already exists" in r.output
    r = runner.invoke(main, ["member", "add", "Not A Handle!"])
    assert r.exit_code == 1 and "handle" in r.output
    r = runner.invoke(main, ["token", "create", "alice", "--name", "ci"])
    assert r.exit_code == 0 and r.stdout.strip().startswith("cmn_")
    r = runner.invoke(main, ["token", "create", "nobody"])
    assert r.exit_code == 1 and "no member" in r.output
    r = runner.invoke(main, ["member", "list"])
    assert "alice" in r.output


def test_production_refuses_the_default_secret(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMONS_ENVIRONMENT", "production")
    monkeypatch.delenv("COMMONS_SECRET_KEY", raising=False)
    r = runner.invoke(main, ["db", "upgrade"])
    assert r.exit_code == 1 and "COMMONS_SECRET_KEY" in r.output
    monkeypatch.setenv("COMMONS_SECRET_KEY", "short")
    r = runner.invoke(main, ["db", "upgrade"])
    assert r.exit_code == 1 and "at least 32 characters" in r.output


def test_member_commands_over_the_api(
    runner: CliRunner, client: TestClient[Litestar], community: dict[str, Person]
) -> None:
    bob = community["bob"]
    r = runner.invoke(
        main,
        [
            "proposal",
            "new",
            "--title",
            "Forget cooking",
            "--category",
            "cooking",
            "--test",
            "forget_accuracy_gap<=0.02",
        ],
        obj=api(client, bob),
    )
    assert r.exit_code == 0, r.output
    assert "is submitted" in r.output
    pid = int(r.output.split("#")[1].split()[0])
    for rev in ("rev1", "rev2"):
        r = runner.invoke(main, ["proposal", "triage", str(pid), "approve"], obj=api(client, community[rev]))
        assert r.exit_code == 0, r.output
    assert "voting" in r.output
    r = runner.invoke(main, ["vote", str(pid), "object"], obj=api(client, community["ann"]))
    assert r.exit_code == 1 and "needs a reason" in r.output
    r = runner.invoke(main, ["vote", str(pid), "approve"], obj=api(client, community["ann"]))
    assert r.exit_code == 0 and "approve" in r.output
    r = runner.invoke(main, ["proposal", "show", str(pid)], obj=api(client, bob))
    assert r.exit_code == 0 and "tally: approve 1" in r.output and "forget_accuracy_gap <= 0.02" in r.output
    r = runner.invoke(main, ["proposal", "show", str(pid), "--json"], obj=api(client, bob))
    assert json.loads(r.output)["state"] == "voting"
    r = runner.invoke(main, ["proposal", "list", "--state", "voting"], obj=api(client, bob))
    assert f"#{pid}" in r.output
    r = runner.invoke(main, ["proposal", "show", "999"], obj=api(client, bob))
    assert r.exit_code == 1 and "no proposal 999" in r.output


def test_cli_input_errors(
    runner: CliRunner, client: TestClient[Litestar], community: dict[str, Person]
) -> None:
    bob = community["bob"]
    r = runner.invoke(
        main,
        ["proposal", "new", "--title", "Two targets", "--category", "a", "--data-source", "1"],
        obj=api(client, bob),
    )
    assert r.exit_code == 2 and "exactly one target" in r.output
    r = runner.invoke(
        main,
        ["proposal", "new", "--title", "Bad test", "--category", "a", "--test", "mia_auc=3"],
        obj=api(client, bob),
    )
    assert r.exit_code == 2 and "METRIC<=NUMBER" in r.output
    r = runner.invoke(
        main,
        ["proposal", "new", "--title", "Bad metric", "--category", "a", "--test", "nope<=3"],
        obj=api(client, bob),
    )
    assert r.exit_code == 1 and "unknown metric" in r.output
    r = runner.invoke(main, ["vote", "1", "maybe"], obj=api(client, bob))
    assert r.exit_code == 2


def test_cli_without_token(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMMONS_API_TOKEN", raising=False)
    r = runner.invoke(main, ["proposal", "list"])
    assert r.exit_code == 1 and "COMMONS_API_TOKEN" in r.output


def test_cli_unreachable_service(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMONS_API_TOKEN", "cmn_x")
    monkeypatch.setenv("COMMONS_API_URL", "http://127.0.0.1:9")
    r = runner.invoke(main, ["proposal", "list"])
    assert r.exit_code == 1 and "cannot reach" in r.output


def test_release_verify_and_override_over_the_api(
    runner: CliRunner, client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    """`commons release verify` queues the service's verification of a version made outside it;
    `commons release override` proposes and seconds the council's override, which the gate then shows."""
    from governance.cli.gate import release

    version, content_hash = store_version(ctx, "made-elsewhere")
    body = {"version": version, "content_hash": content_hash, "task": "digits", "kind": "train"}
    assert client.post("/api/v1/models", json=body, headers=community["admin"].auth).status_code == 201

    def run(who: Person, *args: str) -> Any:
        return runner.invoke(release, [*args, "--token", who.token], obj=client)

    r = run(community["coun1"], "verify", version)
    assert r.exit_code == 0 and f"verification of {version} queued as job" in r.output, r.output
    (job,) = jobs.list_jobs(ctx)
    assert job["kind"] == "verify" and job["spec"]["verify_version"] == version
    r = run(community["ann"], "verify", version, "--json")
    assert r.exit_code == 1 and "HTTP 403" in r.output
    r = run(community["coun1"], "verify", "mv-nope")
    assert r.exit_code == 1 and "HTTP 404" in r.output

    reason = "a court order requires this exact model to ship"
    r = run(community["admin"], "override", version, "--reason", reason)
    assert r.exit_code == 1 and "HTTP 403" in r.output  # an admin cannot override
    r = run(community["coun1"], "override", version, "--reason", "short")
    assert r.exit_code == 1 and "HTTP 400" in r.output
    assert run(community["coun1"], "override", version).exit_code == 2  # --reason is required
    r = run(community["coun1"], "override", version, "--reason", reason)
    assert r.exit_code == 0 and "is open: 1 of 3 council approved" in r.output, r.output
    r = run(community["coun2"], "override", version, "--reason", reason, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["state"] == "granted"
    verdict = client.get(f"/api/v1/releases/{version}/verdict", headers=community["ann"].auth).json()
    assert verdict["verdict"] == "allow" and verdict["override"]["reason"] == reason
