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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(gate())
