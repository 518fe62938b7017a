"""``commons gate VERSION``: the release gate for CI pipelines. Asks the service for the verdict over HTTP
(``GET /api/v1/releases/{version}/verdict``) and exits 0 allow, 1 deny, 2 pending, 3 error (server
unreachable, unknown version, bad token), with a one-line reason on stderr and, with ``--json``, the full
verdict on stdout. A usage error (a missing version, ``--wait -1``) is an error too (3), never "pending"
(click's own code for it is 2). Under GitHub Actions (``GITHUB_STEP_SUMMARY`` set) the gate also appends a
job summary (verdict, reasons, proposals covered, links) and prints an ``::error::`` annotation on deny.
``commons release bundle`` fetches a version's provenance bundle; ``verify-bundle`` checks
one offline; ``release verify`` asks the service to verify a version made outside it and ``release override``
proposes or seconds the council's override. Imports neither torch nor the database: it runs anywhere httpx does.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import quote

import click

from governance.cli.common import CliUsageError, CommonsGroup, api_failure, client_for, default_server
from governance.client import ApiError, CommonsClient, NotJson, Unreachable

EXIT = {"allow": 0, "deny": 1, "pending": 2}
ERROR = 3
_HTTP_WORDS = {401: "bad or missing token", 403: "forbidden", 404: "unknown model version"}

server_option = click.option(
    "--server",
    envvar="COMMONS_API_URL",
    default=None,
    metavar="URL",
    help="The service to ask (default: COMMONS_API_URL, else http://COMMONS_HOST:COMMONS_PORT, i.e. "
    "http://127.0.0.1:8000).",
)
token_option = click.option(
    "--token", envvar="COMMONS_API_TOKEN", default=None, help="API token (default: COMMONS_API_TOKEN)."
)


class GateError(Exception):
    pass


class GateCommand(click.Command):
    """A click command whose usage errors exit 3 (error), so that a CI script never reads a typo as 2
    (pending)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise CliUsageError(exc.format_message(), exc.ctx) from None


def _github_summary(body: dict[str, Any], version: str, server: str) -> str:
    """The job summary's Markdown: the verdict, its reasons, the proposals covered and links."""
    base = server.rstrip("/")
    page = f"{base}/models/{quote(version, safe='')}"
    lines = [
        f"## Release gate: `{version}` is **{body['verdict'].upper()}**",
        "",
        *[f"- {r}" for r in body.get("reasons") or ["no reason given"]],
    ]
    if body.get("override"):
        over = body["override"]
        lines += ["", f"Allowed by a **council override**, not by a passing report: {over.get('reason')}"]
    proposals = body.get("proposals") or []
    if proposals:
        lines += ["", "| proposal | title | state | role |", "|---|---|---|---|"]
        lines += [
            f"| [#{p.get('id')}]({base}/proposals/{p.get('id')}) | {p.get('title')} | {p.get('state')} "
            f"| {p.get('role')} |"
            for p in proposals
        ]
    lines += [
        "",
        f"[Model version]({page}) · [Verdict (JSON)]({base}/api/v1/releases/{quote(version)}/verdict)",
    ]
    if body.get("report_url"):
        lines[-1] += f" · [Verification report]({body['report_url']})"
    return "\n".join(lines) + "\n"


def _annotate_for_github(body: dict[str, Any], version: str, server: str) -> None:
    """Under GitHub Actions: append the job summary, and an error annotation when the gate denies."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return
    try:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(_github_summary(body, version, server))
    except OSError as exc:
        click.echo(f"gate: could not write the job summary: {exc}", err=True)
    if body["verdict"] == "deny":
        reasons = "; ".join(body.get("reasons") or []) or "no reason given"
        # workflow commands escape %, CR and LF in their message
        message = reasons.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        click.echo(f"::error title=Release gate denied {version}::{message}")


def fetch_verdict(client: CommonsClient, version: str) -> dict[str, Any]:
    """The verdict on ``version``; every failure is a GateError with its one-line reason."""
    try:
        body = client.verdict(version)
    except (Unreachable, NotJson) as exc:
        raise GateError(exc.detail) from exc
    except ApiError as exc:
        what = _HTTP_WORDS.get(exc.status, "error")
        raise GateError(f"{what} (HTTP {exc.status}): {exc.detail}") from exc
    verdict = body.get("verdict") if isinstance(body, dict) else None
    if verdict not in EXIT:
        raise GateError(f"the service answered with an unknown verdict {verdict!r}")
    return dict(body)


@click.command("gate", cls=GateCommand)
@click.argument("version")
@server_option
@token_option
@click.option(
    "--wait", type=click.FloatRange(min=0), default=0.0, help="keep asking while pending, this many seconds"
)
@click.option(
    "--interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="seconds between asks"
)
@click.option("--json", "as_json", is_flag=True, help="print the full verdict as JSON on stdout")
@click.pass_context
def gate(
    ctx: click.Context,
    version: str,
    server: str,
    token: str | None,
    wait: float,
    interval: float,
    as_json: bool,
) -> None:
    """May model VERSION be released? Exit 0 allow, 1 deny, 2 pending, 3 error."""
    server = server or default_server()
    client = client_for(ctx, server, token, timeout=30.0)
    deadline = time.monotonic() + wait
    try:
        while True:
            body = fetch_verdict(client, version)
            if body["verdict"] != "pending" or time.monotonic() + interval > deadline:
                break
            time.sleep(interval)
    except GateError as exc:
        click.echo(f"gate: error: {exc}", err=True)
        ctx.exit(ERROR)
    if as_json:
        click.echo(json.dumps(body, indent=2, sort_keys=True))
    reasons = "; ".join(body.get("reasons") or []) or "no reason given"
    click.echo(f"gate: {body['verdict']}: {version}: {reasons}", err=True)
    _annotate_for_github(body, version, server)
    ctx.exit(EXIT[body["verdict"]])


@click.group("release", cls=CommonsGroup)
def release() -> None:
    """Provenance bundles (fetch over the API; check offline), the service's verification of a version made
    outside it, and the council's override. Exit 0 done, 1 refused by the service, 3 error."""


@release.command("bundle")
@click.argument("version")
@server_option
@token_option
@click.option(
    "--out", "out_file", type=click.Path(dir_okay=False), default=None, help="write here (default: stdout)"
)
@click.pass_context
def bundle(ctx: click.Context, version: str, server: str, token: str | None, out_file: str | None) -> None:
    """Fetch the provenance bundle of VERSION (JSON)."""
    client = client_for(ctx, server, token, timeout=60.0)
    try:
        data = client.bundle(version)
    except ApiError as exc:  # refused: its raw body; unreachable, not JSON, a 5xx: an error (exit 3)
        if 400 <= exc.status < 500:
            raise click.ClickException(f"HTTP {exc.status}: {exc.text}") from None
        raise api_failure(exc) from None
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if out_file:
        with open(out_file, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"bundle of {version} written to {out_file}", err=True)
    else:
        click.echo(text, nl=False)


def _refused(exc: ApiError) -> click.ClickException:
    """An API error as the release commands word it: a refusal (exit 1) with its HTTP status, else an error
    (exit 3) in the client's words."""
    return api_failure(exc, status_prefix=True)


@release.command("verify")
@click.argument("version")
@server_option
@token_option
@click.option("--json", "as_json", is_flag=True, help="print the queued job as JSON")
@click.pass_context
def verify_version(ctx: click.Context, version: str, server: str, token: str | None, as_json: bool) -> None:
    """Ask the service to verify VERSION, a stored version made outside it (the council or an admin). The job
    worker verifies and signs the report; `commons gate VERSION` answers pending until then."""
    client = client_for(ctx, server, token, timeout=30.0)
    try:
        job = client.request_verification(version)
    except ApiError as exc:
        raise _refused(exc) from None
    if as_json:
        click.echo(json.dumps(job, indent=2, sort_keys=True))
    else:
        click.echo(f"verification of {version} queued as job {job['job_id']} ({job['state']})")


@release.command("override")
@click.argument("version")
@click.option("--reason", required=True, help="why the council releases against the gate (10+ characters)")
@server_option
@token_option
@click.option("--json", "as_json", is_flag=True, help="print the override as JSON")
@click.pass_context
def override(
    ctx: click.Context, version: str, reason: str, server: str, token: str | None, as_json: bool
) -> None:
    """Propose, or second, the council's override of the release gate for VERSION (council members). It is
    granted at a majority of the council, audited, and every verdict and bundle shows it as an override."""
    client = client_for(ctx, server, token, timeout=30.0)
    try:
        over = client.override(version, reason)
    except ApiError as exc:
        raise _refused(exc) from None
    if as_json:
        click.echo(json.dumps(over, indent=2, sort_keys=True))
        return
    approvals = len(over.get("approvals") or [])
    if over.get("state") == "granted":
        click.echo(
            f"override {over['id']} of {version} granted ({approvals} of {over['council_size']} council)"
        )
    else:
        click.echo(
            f"override {over['id']} of {version} is open: {approvals} of {over['council_size']} council "
            "approved; a majority grants it"
        )


@release.command("verify-bundle")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--key", "key_text", default=None, help="the log's verifier key you trust (default: the bundle's own)"
)
def verify_bundle_cmd(bundle_file: str, key_text: str | None) -> None:
    """Check a provenance bundle offline: signed checkpoint, inclusion proofs, claims against the log."""
    from governance.bundle_verify import override_of, verify_bundle

    with open(bundle_file, encoding="utf-8") as fh:
        data = json.load(fh)
    problems = verify_bundle(data, key_text)
    if problems:
        for p in problems:
            click.echo(f"FAIL: {p}", err=True)
        raise SystemExit(1)
    entries = len((data.get("audit") or {}).get("entries") or [])
    verdict = (data.get("verdict") or {}).get("verdict")
    over = override_of(data)
    if over is not None:  # never a plain allow
        click.echo(
            f"OVERRIDE: {entries} audit entries proven against the signed checkpoint; the gate was overridden "
            f"by the council ({len(over.get('approvals') or [])} of {over.get('council_size')}): {over.get('reason')}"
        )
        return
    click.echo(f"OK: {entries} audit entries proven against the signed checkpoint; verdict {verdict}")
