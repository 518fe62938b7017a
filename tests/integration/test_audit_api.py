"""The public audit API and the `commons audit` commands against a real app and database."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy.engine import Engine

from governance.audit import log, merkle
from governance.audit.canonical import dumps_plain
from governance.audit.checkpoint import VerifierKey, open_checkpoint
from governance.audit.verify import verify_export
from governance.cli.audit import audit
from governance.db.engine import write_session
from governance.settings import Settings

API = "/api/v1/audit"


def seed(engine: Engine, n: int) -> None:
    with write_session(engine) as s:
        for i in range(n):
            log.append(
                s,
                actor=f"member:{i}",
                action="proposal.commented",
                subject=f"proposal:{i % 2}",
                payload={"i": i},
                sensitive={"text": f"comment {i}"},
            )


def key_of(client: TestClient[Litestar]) -> VerifierKey:
    return VerifierKey.parse(client.get(f"{API}/public-key").json()["verifier_key"])


def test_checkpoint_and_public_key(client: TestClient[Litestar], engine: Engine) -> None:
    empty = client.get(f"{API}/checkpoint").json()
    assert empty["tree_size"] == 0 and empty["root_hash"] == merkle.EMPTY_ROOT.hex()
    seed(engine, 5)
    body = client.get(f"{API}/checkpoint").json()
    key = key_of(client)
    cp = open_checkpoint(body["checkpoint"], key, body["origin"])
    assert cp.size == 5 and cp.root_hash.hex() == body["root_hash"]
    text = client.get(f"{API}/checkpoint.txt")
    assert text.headers["content-type"].startswith("text/plain") and text.text == body["checkpoint"]
    pem = client.get(f"{API}/public-key").json()["public_key_pem"]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and key.pem() == pem


def test_entries_and_inclusion_proofs(client: TestClient[Litestar], engine: Engine) -> None:
    seed(engine, 9)
    page = client.get(f"{API}/entries", params={"start": 3, "end": 6}).json()
    assert page["tree_size"] == 9 and [e["seq"] for e in page["entries"]] == [3, 4, 5]
    assert "comment 3" not in str(page)  # only commitments leave the service
    assert client.get(f"{API}/entries", params={"start": 50}).json()["entries"] == []
    key = key_of(client)
    for seq in range(9):
        for size in (None, 9, seq + 1):
            params = {"tree_size": size} if size else {}
            body = client.get(f"{API}/entries/{seq}", params=params).json()
            cp = open_checkpoint(body["checkpoint"]["checkpoint"], key)
            leaf = merkle.leaf_hash(dumps_plain(body["entry"]))
            assert leaf.hex() == body["leaf_hash"]
            hashes = [bytes.fromhex(h) for h in body["inclusion_proof"]["hashes"]]
            assert merkle.verify_inclusion(seq, cp.size, leaf, hashes, cp.root_hash)


def test_consistency(client: TestClient[Litestar], engine: Engine) -> None:
    seed(engine, 4)
    old = open_checkpoint(client.get(f"{API}/checkpoint").json()["checkpoint"], key_of(client))
    seed(engine, 7)
    body = client.get(f"{API}/consistency", params={"first": old.size}).json()
    new = open_checkpoint(body["checkpoint"]["checkpoint"], key_of(client))
    hashes = [bytes.fromhex(h) for h in body["hashes"]]
    assert new.size == 11
    assert merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, hashes)


def test_export_verifies_offline(client: TestClient[Litestar], engine: Engine) -> None:
    seed(engine, 6)
    response = client.get(f"{API}/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    result = verify_export(response.content, trusted_key=key_of(client))
    assert result.tree_size == 6 and result.revealed == 0


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/entries/99", {}, 404),
        # beyond governance/bounds.py's MAX_OFFSET (2^31 - 1): refused before the log is read
        ("/entries/99999999999999999999999", {}, 400),
        ("/entries", {"start": 99999999999999999999999}, 400),
        ("/entries/1", {"tree_size": 99999999999999999999999}, 400),
        ("/consistency", {"first": 99999999999999999999999}, 400),
        ("/entries/2", {"tree_size": 2}, 422),
        ("/entries/0", {"tree_size": 50}, 422),
        ("/entries", {"start": 5, "end": 2}, 422),
        ("/entries", {"start": -1}, 400),
        ("/entries", {"start": "x"}, 400),
        ("/consistency", {"first": 5, "second": 2}, 422),
        ("/consistency", {"first": 1, "second": 40}, 422),
        ("/consistency", {}, 400),
    ],
)
def test_bad_requests_are_client_errors(
    client: TestClient[Litestar], engine: Engine, path: str, params: dict[str, object], status: int
) -> None:
    seed(engine, 3)
    response = client.get(API + path, params=params)
    assert response.status_code == status, response.text
    if status != 200:
        assert response.json()["detail"]


# -- the CLI ----------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("COMMONS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COMMONS_DATABASE_URL", settings.effective_database_url)
    return settings


def test_cli_export_verify_and_tamper(cli_env: Settings, engine: Engine, tmp_path: Path) -> None:
    runner = CliRunner()
    seed(engine, 4)
    saved = tmp_path / "checkpoint.txt"
    result = runner.invoke(audit, ["checkpoint"])
    assert result.exit_code == 0, result.output
    saved.write_text(result.output)
    seed(engine, 3)

    out = tmp_path / "log.jsonl"
    result = runner.invoke(audit, ["export", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(audit, ["verify", str(out), "--against", str(saved), "--strict"])
    assert result.exit_code == 0, result.output
    assert "OK: 7 entries" in result.output and "saved checkpoint of 4 entries" in result.output

    lines = out.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b'"i":2', b'"i":3')
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines))
    result = runner.invoke(audit, ["verify", str(bad)])
    assert result.exit_code == 1
    assert "entry 2 " in result.output

    sensitive = tmp_path / "full.jsonl"
    assert runner.invoke(audit, ["export", str(sensitive), "--include-sensitive"]).exit_code == 0
    result = runner.invoke(audit, ["verify", str(sensitive)])
    assert result.exit_code == 0 and "7 revealed" in result.output


def test_cli_verify_with_trusted_key(cli_env: Settings, engine: Engine, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from governance.audit.checkpoint import SigningKey

    seed(engine, 2)
    runner = CliRunner()
    out = tmp_path / "log.jsonl"
    assert runner.invoke(audit, ["export", str(out)]).exit_code == 0
    other = SigningKey("commons.local/audit", Ed25519PrivateKey.generate()).verifier.encode()
    result = runner.invoke(audit, ["verify", str(out), "--key", other])
    assert result.exit_code == 1 and "trusted key" in result.output


def test_cli_prove(cli_env: Settings, engine: Engine) -> None:
    seed(engine, 5)
    runner = CliRunner()
    result = runner.invoke(audit, ["prove", "3"])
    assert result.exit_code == 0, result.output
    assert '"inclusion_proof"' in result.output and '"seq": 3' in result.output
    result = runner.invoke(audit, ["prove", "3", "--size", "4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(audit, ["prove", "9"])
    assert result.exit_code == 1 and "no audit entry 9" in result.output


def test_cli_over_the_api(client: TestClient[Litestar], engine: Engine, tmp_path: Path) -> None:
    seed(engine, 6)
    runner = CliRunner()
    result = runner.invoke(audit, ["prove", "4", "--api", "http://testserver.local"], obj=client)
    assert result.exit_code == 0, result.output
    assert '"tree_size": 6' in result.output
    result = runner.invoke(audit, ["checkpoint", "--api", "x"], obj=client)
    assert result.exit_code == 0 and result.output.splitlines()[1] == "6"
    saved = tmp_path / "cp.txt"
    saved.write_text(result.output)
    seed(engine, 2)
    out = tmp_path / "log.jsonl"
    assert runner.invoke(audit, ["export", str(out), "--api", "x"], obj=client).exit_code == 0
    result = runner.invoke(audit, ["verify", str(out), "--against", str(saved)])
    assert result.exit_code == 0 and "OK: 8 entries" in result.output, result.output
    result = runner.invoke(audit, ["prove", "40", "--api", "x"], obj=client)
    assert result.exit_code == 1 and "404" in result.output
