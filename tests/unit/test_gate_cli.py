"""`commons gate`: exit codes against canned service answers (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from governance.cli.gate import gate

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _not_under_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)  # these tests' own CI may set it


def client(handler: Handler) -> httpx.Client:
    return httpx.Client(base_url="http://commons.test", transport=httpx.MockTransport(handler))


def answer(verdict: str, *reasons: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/releases/mv-abc123/verdict"
        assert request.headers["authorization"] == "Bearer T"
        return httpx.Response(
            200, json={"version": "mv-abc123", "verdict": verdict, "reasons": list(reasons)}
        )

    return handler


@pytest.mark.parametrize(("verdict", "code"), [("allow", 0), ("deny", 1), ("pending", 2)])
def test_exit_codes_follow_the_verdict(verdict: str, code: int) -> None:
    r = CliRunner().invoke(gate, ["mv-abc123", "--token", "T"], obj=client(answer(verdict, "because")))
    assert r.exit_code == code, r.output
    assert r.stderr.strip() == f"gate: {verdict}: mv-abc123: because"
    assert r.stdout == ""


def test_json_prints_the_full_verdict_on_stdout() -> None:
    r = CliRunner().invoke(gate, ["mv-abc123", "--token", "T", "--json"], obj=client(answer("deny", "x")))
    assert r.exit_code == 1 and json.loads(r.stdout)["verdict"] == "deny"


@pytest.mark.parametrize(
    ("status", "words"),
    [(404, "unknown model version"), (401, "bad or missing token"), (500, "error (HTTP 500)")],
)
def test_errors_exit_3_with_one_line(status: int, words: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": "nope"})

    r = CliRunner().invoke(gate, ["mv-abc123", "--token", "T"], obj=client(handler))
    assert r.exit_code == 3
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unreachable_server_and_garbage_exit_3() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    r = CliRunner().invoke(gate, ["mv-abc123"], obj=client(down))
    assert r.exit_code == 3 and "cannot reach" in r.stderr
    r = CliRunner().invoke(gate, ["mv-abc123"], obj=client(lambda q: httpx.Response(200, text="<html>")))
    assert r.exit_code == 3 and "not JSON" in r.stderr
    r = CliRunner().invoke(
        gate, ["mv-abc123"], obj=client(lambda q: httpx.Response(200, json={"verdict": "maybe"}))
    )
    assert r.exit_code == 3


def test_wait_polls_while_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["pending", "pending", "allow"])
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={"verdict": next(answers), "reasons": []})

    monkeypatch.setattr("governance.cli.gate.time.sleep", lambda s: None)
    r = CliRunner().invoke(gate, ["mv-abc123", "--wait", "100", "--interval", "1"], obj=client(handler))
    assert r.exit_code == 0 and len(calls) == 3
    r = CliRunner().invoke(
        gate, ["mv-abc123"], obj=client(lambda q: httpx.Response(200, json={"verdict": "pending"}))
    )
    assert r.exit_code == 2  # no --wait: one ask


def test_the_gate_command_is_registered_and_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from governance.cli import main; "
        "r = CliRunner().invoke(main, ['gate', '--help']); assert r.exit_code == 0, r.output; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("args", [[], ["mv-abc123", "--wait", "-1"], ["mv-abc123", "--no-such-option"]])
def test_a_usage_error_is_an_error_not_pending(args: list[str]) -> None:
    r = CliRunner().invoke(gate, args, obj=client(answer("allow")))
    assert r.exit_code == 3, r.output


def test_under_github_actions_a_job_summary_and_an_error_annotation_on_deny(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "version": "mv-abc123",
                "verdict": "deny",
                "reasons": ["proposal #4 is not verified", "50% done\nnext"],
                "proposals": [{"id": 4, "title": "Forget spam", "state": "unlearning", "role": "produced"}],
            },
        )

    r = CliRunner().invoke(
        gate, ["mv-abc123", "--token", "T", "--server", "http://commons.test"], obj=client(handler)
    )
    assert r.exit_code == 1
    assert r.stdout.startswith(
        "::error title=Release gate denied mv-abc123::proposal #4 is not verified; 50%25 done%0Anext"
    )
    text = summary.read_text()
    assert "`mv-abc123` is **DENY**" in text and "- proposal #4 is not verified" in text
    assert "[#4](http://commons.test/proposals/4) | Forget spam | unlearning | produced" in text
    assert "http://commons.test/models/mv-abc123" in text
    # allow: a summary, no annotation
    r = CliRunner().invoke(gate, ["mv-abc123", "--token", "T"], obj=client(answer("allow", "verified")))
    assert r.exit_code == 0 and "::error" not in r.stdout and "**ALLOW**" in summary.read_text()
