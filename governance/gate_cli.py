"""``commons gate VERSION``: the release gate for CI pipelines. Asks the service for the verdict over HTTP
(``GET /api/v1/releases/{version}/verdict``) and exits 0 allow, 1 deny, 2 pending, 3 error (server
unreachable, unknown version, bad token), with a one-line reason on stderr and, with ``--json``, the full
verdict on stdout. Imports neither torch nor the database: it runs anywhere httpx does.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
import httpx

EXIT = {"allow": 0, "deny": 1, "pending": 2}
ERROR = 3
DEFAULT_URL = "http://127.0.0.1:8000"


class GateError(Exception):
    pass


def fetch_verdict(http: httpx.Client, version: str, token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = http.get(f"/api/v1/releases/{version}/verdict", headers=headers)
    except httpx.HTTPError as exc:
        raise GateError(f"cannot reach the Commons service: {exc}") from exc
    if r.status_code >= 400:
        try:
            detail = str(r.json().get("detail", r.text))
        except ValueError:
            detail = r.text or r.reason_phrase
        what = {401: "bad or missing token", 403: "forbidden", 404: "unknown model version"}.get(
            r.status_code, "error"
        )
        raise GateError(f"{what} (HTTP {r.status_code}): {detail}")
    try:
        body: dict[str, Any] = r.json()
    except ValueError as exc:
        raise GateError("the service answered with something that is not JSON") from exc
    if body.get("verdict") not in EXIT:
        raise GateError(f"the service answered with an unknown verdict {body.get('verdict')!r}")
    return body


@click.command("gate")
@click.argument("version")
@click.option(
    "--server", envvar="COMMONS_API_URL", default=DEFAULT_URL, show_default=True, help="or COMMONS_API_URL"
)
@click.option("--token", envvar="COMMONS_API_TOKEN", default=None, help="API token (or COMMONS_API_TOKEN)")
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
    http = ctx.obj if isinstance(ctx.obj, httpx.Client) else httpx.Client(base_url=server, timeout=30.0)
    deadline = time.monotonic() + wait
    try:
        while True:
            body = fetch_verdict(http, version, token)
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
    ctx.exit(EXIT[body["verdict"]])


@click.group("release")
def release() -> None:
    """Provenance bundles of model versions (fetch over the API; check offline)."""


@release.command("bundle")
@click.argument("version")
@click.option(
    "--server", envvar="COMMONS_API_URL", default=DEFAULT_URL, show_default=True, help="or COMMONS_API_URL"
)
@click.option("--token", envvar="COMMONS_API_TOKEN", default=None, help="API token (or COMMONS_API_TOKEN)")
@click.option(
    "--out", "out_file", type=click.Path(dir_okay=False), default=None, help="write here (default: stdout)"
)
@click.pass_context
def bundle(ctx: click.Context, version: str, server: str, token: str | None, out_file: str | None) -> None:
    """Fetch the provenance bundle of VERSION (JSON)."""
    http = (
        ctx.find_root().obj
        if isinstance(ctx.find_root().obj, httpx.Client)
        else httpx.Client(base_url=server, timeout=60.0)
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = http.get(f"/api/v1/releases/{version}/bundle", headers=headers)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the Commons service: {exc}") from None
    if r.status_code >= 400:
        raise click.ClickException(f"HTTP {r.status_code}: {r.text}")
    text = json.dumps(r.json(), indent=2, sort_keys=True) + "\n"
    if out_file:
        with open(out_file, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"bundle of {version} written to {out_file}", err=True)
    else:
        click.echo(text, nl=False)


@release.command("verify-bundle")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--key", "key_text", default=None, help="the log's verifier key you trust (default: the bundle's own)"
)
def verify_bundle_cmd(bundle_file: str, key_text: str | None) -> None:
    """Check a provenance bundle offline: signed checkpoint, inclusion proofs, claims against the log."""
    from governance.bundle_verify import verify_bundle

    with open(bundle_file, encoding="utf-8") as fh:
        data = json.load(fh)
    problems = verify_bundle(data, key_text)
    if problems:
        for p in problems:
            click.echo(f"FAIL: {p}", err=True)
        raise SystemExit(1)
    entries = len((data.get("audit") or {}).get("entries") or [])
    verdict = (data.get("verdict") or {}).get("verdict")
    click.echo(f"OK: {entries} audit entries proven against the signed checkpoint; verdict {verdict}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(gate())
