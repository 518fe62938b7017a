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
    assert r.exit_code == 3 and "COMMONS_SECRET_KEY" in r.output  # invalid settings: an error, not a refusal
    monkeypatch.setenv("COMMONS_SECRET_KEY", "short")
    r = runner.invoke(main, ["db", "upgrade"])
    assert r.exit_code == 3 and "at least 32 characters" in r.output


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
    assert r.exit_code == 3 and "exactly one target" in r.output  # bad usage: 3, never click's 2
    r = runner.invoke(
        main,
        ["proposal", "new", "--title", "Bad test", "--category", "a", "--test", "mia_auc=3"],
        obj=api(client, bob),
    )
    assert r.exit_code == 3 and "METRIC<=NUMBER" in r.output
    r = runner.invoke(
        main,
        ["proposal", "new", "--title", "Bad metric", "--category", "a", "--test", "nope<=3"],
        obj=api(client, bob),
    )
    assert r.exit_code == 1 and "unknown metric" in r.output
    r = runner.invoke(main, ["vote", "1", "maybe"], obj=api(client, bob))
    assert r.exit_code == 3


def test_cli_without_token(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMMONS_API_TOKEN", raising=False)
    r = runner.invoke(main, ["proposal", "list"])
    assert r.exit_code == 3 and "COMMONS_API_TOKEN" in r.output


def test_cli_unreachable_service(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unreachable is an error (3), never a refusal (1), and the message names the URL tried."""
    monkeypatch.setenv("COMMONS_API_TOKEN", "cmn_x")
    monkeypatch.setenv("COMMONS_API_URL", "http://127.0.0.1:9")
    r = runner.invoke(main, ["proposal", "list"])
    assert r.exit_code == 3 and "cannot reach the Commons service at http://127.0.0.1:9" in r.output


def test_the_default_server_follows_commons_port(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without COMMONS_API_URL the CLI calls the address `commons serve` listens on (COMMONS_HOST, _PORT)."""
    from governance.settings import Settings

    for name in ("COMMONS_API_URL", "COMMONS_HOST", "COMMONS_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().effective_api_url == "http://127.0.0.1:8000"
    assert Settings(port=8123).effective_api_url == "http://127.0.0.1:8123"
    assert Settings(host="0.0.0.0", port=9000).effective_api_url == "http://127.0.0.1:9000"
    assert (
        Settings(api_url="https://commons.example/", port=9000).effective_api_url == "https://commons.example"
    )
    monkeypatch.setenv("COMMONS_API_TOKEN", "cmn_x")
    monkeypatch.setenv("COMMONS_PORT", "9")
    for args in (
        ["proposal", "list"],
        ["vote", "1", "approve"],
        ["registry", "list"],
        ["data-source", "list"],
    ):
        r = runner.invoke(main, args)
        assert r.exit_code == 3 and "at http://127.0.0.1:9:" in r.output, (args, r.output)
    r = runner.invoke(main, ["gate", "mv-abcdef"])
    assert r.exit_code == 3 and "http://127.0.0.1:9" in r.output, r.output
    r = runner.invoke(main, ["release", "verify", "mv-abcdef"])
    assert r.exit_code == 3 and "http://127.0.0.1:9" in r.output, r.output


def _api_commands() -> list[list[str]]:
    """Every command that calls the service, as its path under `commons`."""
    import click

    out: list[list[str]] = []
    ctx = click.Context(main)
    for name in ("proposal", "vote", "data-source", "registry", "gate", "release"):
        cmd = main.get_command(ctx, name)
        assert cmd is not None
        if isinstance(cmd, click.Group):
            offline = {"hash", "adopt", "verify-bundle"}
            out += [[name, sub] for sub in cmd.list_commands(ctx) if sub not in offline]
        else:
            out.append([name])
    return out


@pytest.mark.parametrize("path", _api_commands(), ids=" ".join)
def test_help_says_which_server_and_token(runner: CliRunner, path: list[str]) -> None:
    r = runner.invoke(main, [*path, "--help"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "COMMONS_API_URL" in text and "COMMONS_API_TOKEN" in text, text
    assert "COMMONS_PORT" in text and "127.0.0.1:8000" in text, text


def test_audit_api_help_names_the_server(runner: CliRunner) -> None:
    for sub in ("prove", "checkpoint", "export"):
        r = runner.invoke(main, ["audit", sub, "--help"])
        text = " ".join(r.output.split())
        assert r.exit_code == 0 and "--api URL" in text and "no token needed" in text, text


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
    assert run(community["coun1"], "override", version).exit_code == 3  # --reason is required: bad usage
    r = run(community["coun1"], "override", version, "--reason", reason)
    assert r.exit_code == 0 and "is open: 1 of 3 council approved" in r.output, r.output
    r = run(community["coun2"], "override", version, "--reason", reason, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["state"] == "granted"
    verdict = client.get(f"/api/v1/releases/{version}/verdict", headers=community["ann"].auth).json()
    assert verdict["verdict"] == "allow" and verdict["override"]["reason"] == reason


def test_data_sources_and_the_registry_from_the_cli(
    runner: CliRunner,
    client: TestClient[Litestar],
    ctx: Ctx,
    community: dict[str, Person],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A newcomer registers a data source (its sha256 computed from the file or directory), finds it, adopts a
    trained base version from the service's store and gets the version id `commons gate` takes, with no UI."""
    import hashlib

    from unlearning import init_model

    bob, admin = community["bob"], community["admin"]
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"text": "my recipes"}\n')
    r = runner.invoke(main, ["data-source", "hash", str(notes)])
    assert r.exit_code == 0 and r.output.strip() == hashlib.sha256(notes.read_bytes()).hexdigest()
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_text("a\n")
    (folder / "sub" / "b.jsonl").write_text("b\n")
    listing = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}\n"
        for rel, p in (("a.jsonl", folder / "a.jsonl"), ("sub/b.jsonl", folder / "sub" / "b.jsonl"))
    )  # what `cd corpus && sha256sum a.jsonl sub/b.jsonl` prints
    r = runner.invoke(
        main,
        ["data-source", "register", "recipes", str(folder), "--node", "node-1", "--description", "mine"],
        obj=api(client, bob),
    )
    assert r.exit_code == 0, r.output
    assert hashlib.sha256(listing.encode()).hexdigest() in r.output
    source_id = int(r.output.split("#")[1].split()[0])
    r = runner.invoke(main, ["data-source", "list", "--mine"], obj=api(client, bob))
    assert r.exit_code == 0 and f"#{source_id}" in r.output and "node-1/recipes" in r.output, r.output
    r = runner.invoke(main, ["data-source", "list", "--mine"], obj=api(client, admin))
    assert r.exit_code == 0 and r.output.strip() == "no data sources"
    r = runner.invoke(main, ["data-source", "show", str(source_id), "--json"], obj=api(client, admin))
    assert r.exit_code == 0 and json.loads(r.output)["owner_id"] == bob.id
    r = runner.invoke(main, ["data-source", "show", str(source_id)], obj=api(client, bob))
    assert r.exit_code == 0 and f"--data-source {source_id}" in r.output

    # an operator adopts a trained base version of the service's artifact store (on the database)
    base = init_model(ctx.settings.artifact_dir, "digits")
    monkeypatch.setenv("COMMONS_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("COMMONS_DATABASE_URL", ctx.settings.effective_database_url)
    monkeypatch.setenv("COMMONS_ENVIRONMENT", "test")
    monkeypatch.setenv("COMMONS_SECRET_KEY", ctx.settings.secret_key)
    r = runner.invoke(main, ["registry", "adopt", base.version])
    assert r.exit_code == 0 and f"{base.version} is released" in r.output, r.output
    r = runner.invoke(main, ["registry", "adopt", base.version])
    assert r.exit_code == 1 and "never changes" in r.output, r.output  # refused: adopted once

    r = runner.invoke(main, ["registry", "list"], obj=api(client, bob))
    assert r.exit_code == 0 and base.version in r.output and "released" in r.output, r.output
    r = runner.invoke(main, ["registry", "show", base.version], obj=api(client, bob))
    assert r.exit_code == 0 and f"commons gate {base.version}" in r.output, r.output
    r = runner.invoke(main, ["registry", "list", "--state", "released", "--json"], obj=api(client, bob))
    assert [v["version"] for v in json.loads(r.output)] == [base.version]
    r = runner.invoke(main, ["gate", base.version, "--token", bob.token], obj=client)
    assert r.exit_code == 0, r.output

    # release and reject: refusals exit 1 with the service's reason
    other, content_hash = store_version(ctx, "made-elsewhere")
    body = {"version": other, "content_hash": content_hash, "task": "digits", "kind": "train"}
    assert client.post("/api/v1/models", json=body, headers=admin.auth).status_code == 201
    r = runner.invoke(main, ["registry", "release", other], obj=api(client, admin))
    assert r.exit_code == 1, r.output  # not verified: the gate does not allow it
    r = runner.invoke(main, ["registry", "release", other], obj=api(client, bob))
    assert r.exit_code == 1, r.output  # bob is neither council nor admin
    r = runner.invoke(main, ["registry", "reject", other, "--reason", "not ours"], obj=api(client, bob))
    assert r.exit_code == 1, r.output
    r = runner.invoke(main, ["registry", "reject", other, "--reason", "not ours"], obj=api(client, admin))
    assert r.exit_code == 0 and f"{other} is rejected" in r.output, r.output
    r = runner.invoke(main, ["registry", "release", other], obj=api(client, admin))
    assert r.exit_code == 1, r.output
