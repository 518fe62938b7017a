"""Bad invocations of `commons` end in one line and a non-zero exit code, never a traceback: 1 where the service
(or a rule) refused the request, 3 for every error (bad usage, a missing file, an unreachable service or
database, an unknown migration revision, invalid settings). docs/api.md lists the codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from litestar import Litestar
from litestar.testing import TestClient

from governance.cli import main
from governance.cli.common import ApiContext
from governance.client import CommonsClient
from tests.conftest import Person

UNREACHABLE_DB = "postgresql+psycopg://x:y@127.0.0.1:1/nope"

# (args, environment, through the real app as bob?, exit code, words the one-line message holds)
CASES: list[tuple[list[str], dict[str, str], bool, int, str]] = [
    (["--bogus"], {}, False, 3, "No such option"),
    (["nope"], {}, False, 3, "No such command"),
    (["proposal", "show", "abc"], {}, True, 3, "not a valid integer"),
    (["proposal", "show", "999"], {}, True, 1, "no proposal 999"),
    (["proposal", "show", "0"], {}, True, 1, ""),
    (["vote", "1", "maybe"], {}, True, 3, "maybe"),
    (
        ["proposal", "new", "--title", "Two", "--category", "a", "--data-source", "1"],
        {},
        True,
        3,
        "one target",
    ),
    (
        ["proposal", "new", "--title", "Unknown", "--category", "a", "--test", "nope<=3"],
        {},
        True,
        1,
        "metric",
    ),
    (["data-source", "register", "n", "{tmp}/missing", "--node", "n"], {}, True, 3, "does not exist"),
    (["data-source", "register", "n", "{tmp}/empty", "--node", "n"], {}, True, 3, "holds no file"),
    (["data-source", "show", "999"], {}, True, 1, "999"),
    (["registry", "show", "mv-nope"], {}, True, 1, ""),
    (["registry", "reject", "mv-abcdef"], {}, True, 3, "--reason"),
    (["registry", "adopt", "not-a-version"], {}, False, 3, "not a model version id"),
    (["registry", "adopt", "mv-abcdef"], {}, False, 1, "not in the artifact store"),
    (["proposal", "list"], {"COMMONS_API_URL": "http://127.0.0.1:9"}, False, 3, "at http://127.0.0.1:9"),
    (["proposal", "list"], {"COMMONS_API_TOKEN": ""}, False, 3, "COMMONS_API_TOKEN"),
    (["gate"], {}, False, 3, "Missing argument"),
    (["gate", "mv-abcdef", "--server", "http://127.0.0.1:9"], {}, False, 3, "http://127.0.0.1:9"),
    (["audit", "prove", "1", "--api", "http://127.0.0.1:9"], {}, False, 3, "cannot reach"),
    (["audit", "verify", "{tmp}/missing.jsonl"], {}, False, 3, "cannot read"),
    (["release", "verify-bundle", "{tmp}/missing.json"], {}, False, 3, "does not exist"),
    (["db", "upgrade", "--revision", "nope"], {}, False, 3, "Can't locate revision"),
    (["member", "list"], {"COMMONS_DATABASE_URL": UNREACHABLE_DB}, False, 3, "cannot use the database"),
    (["member", "list"], {"COMMONS_DATABASE_URL": "nope"}, False, 3, "invalid database URL"),
    (["member", "list"], {"COMMONS_QUORUM": "many"}, False, 3, "invalid settings"),
    (["token", "create", "nobody"], {}, False, 1, "no member"),
    (["model", "init", "--task", "{tmp}/empty"], {}, False, 3, "not a transformers model directory"),
]


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory, and the environment of a fresh operator: its own data directory, a token."""
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMMONS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COMMONS_API_TOKEN", "cmn_x")
    for name in ("COMMONS_DATABASE_URL", "COMMONS_API_URL", "COMMONS_ENVIRONMENT", "COMMONS_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _check(r: Result, code: int, words: str) -> None:
    assert isinstance(r.exception, SystemExit), r.exc_info  # ended by the CLI, not by an exception
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output and words in r.output, r.output
    message = [line for line in r.output.splitlines() if line.startswith(("Error: ", "gate: error: "))]
    assert len(message) == 1 and len(message[0].split(": ", 1)[1]) > 10, r.output


def _args(args: list[str], scratch: Path) -> list[str]:
    return [a.replace("{tmp}", str(scratch)) for a in args]


@pytest.mark.parametrize(
    ("args", "env", "code", "words"),
    [(a, e, c, w) for a, e, bob, c, w in CASES if not bob],
    ids=lambda v: str(v)[:60],
)
def test_bad_invocations_end_in_one_line_without_a_traceback(
    args: list[str],
    env: dict[str, str],
    code: int,
    words: str,
    scratch: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _check(CliRunner().invoke(main, _args(args, scratch)), code, words)


def test_bad_requests_to_the_service_end_in_one_line(
    scratch: Path, client: TestClient[Litestar], community: dict[str, Person]
) -> None:
    """The same through the real app, as a member (one app for every case)."""
    bob = ApiContext(CommonsClient(client, community["bob"].token))
    for args, _, as_bob, code, words in CASES:
        if as_bob:
            _check(CliRunner().invoke(main, _args(args, scratch), obj=bob), code, words)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["member", "list"], {"COMMONS_DATABASE_URL": UNREACHABLE_DB}),
        (["db", "upgrade", "--revision", "nope"], {}),
    ],
)
def test_the_real_command_prints_no_traceback(args: list[str], env: dict[str, str], tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "COMMONS_DATABASE_URL"}
    environ.update(COMMONS_DATA_DIR=str(tmp_path), **env)
    out = subprocess.run(
        [sys.executable, "-m", "governance.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        cwd=tmp_path,
    )
    assert out.returncode == 3, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_traceback_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception is one line and exit 3; `commons --traceback` lets it through for a bug report."""
    from governance.cli import operator

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(operator, "load_settings", boom)
    r = CliRunner().invoke(main, ["db", "upgrade"])
    assert r.exit_code == 3 and "unexpected error: RuntimeError: something nobody expected" in r.output
    r = CliRunner().invoke(main, ["--traceback", "db", "upgrade"])
    assert isinstance(r.exception, RuntimeError)
