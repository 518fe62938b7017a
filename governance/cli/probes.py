"""Evaluation probes over the JSON API: ``commons probe add | list | show | accept | reject``. Members add
probes; reviewers accept or reject them; accepted probes run on every later candidate and a failing one
blocks the release gate (docs/verification.md, "Community evaluation")."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from governance.cli.common import ApiGroup, api, domain_errors, echo


def _line(p: dict[str, Any]) -> str:
    return f"#{p['id']:<5} {p['state']:<10} {p['kind']:<9} {p['title']}"


@click.group(cls=ApiGroup)
def probe() -> None:
    """Add, list and triage evaluation probes (over the API)."""


@probe.command("add")
@click.option("--title", required=True, help="what the probe checks, in a few words")
@click.option("--description", default="", help="why it matters (shown to reviewers)")
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help='the probe as a JSON file ("-": standard input); see docs/verification.md',
)
@click.option("--prompt", default=None, help="a forbidden-completion probe: the prompt")
@click.option(
    "--forbidden", multiple=True, help="a completion that must not follow --prompt (repeat for several)"
)
@click.option("--max-new-tokens", type=click.IntRange(1, 256), default=32, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def probe_add(
    click_ctx: click.Context,
    title: str,
    description: str,
    spec_file: str | None,
    prompt: str | None,
    forbidden: tuple[str, ...],
    max_new_tokens: int,
    as_json: bool,
) -> None:
    """Submit a probe for triage: a JSON spec (--spec), or one prompt with its forbidden completions
    (--prompt and --forbidden). It runs on nothing until a reviewer accepts it."""
    if (spec_file is None) == (prompt is None):
        raise click.UsageError("give either --spec FILE or --prompt with --forbidden")
    if spec_file is not None:
        try:
            text = sys.stdin.read() if spec_file == "-" else Path(spec_file).read_text()
            spec = json.loads(text)
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"--spec: cannot read a JSON object from {spec_file}: {exc}") from None
    else:
        if not forbidden:
            raise click.UsageError("--prompt needs at least one --forbidden completion")
        spec = {
            "kind": "forbidden",
            "prompts": [{"prompt": prompt, "forbidden": list(forbidden)}],
            "max_new_tokens": max_new_tokens,
        }
    body = {"title": title, "description": description, "spec": spec}
    p = api(click_ctx).submit_probe(body)
    echo(p, as_json, lambda p: f"probe #{p['id']} is {p['state']}: a reviewer accepts or rejects it")


@probe.command("list")
@click.option("--state", type=click.Choice(["submitted", "accepted", "rejected"]), default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def probe_list(click_ctx: click.Context, state: str | None, as_json: bool) -> None:
    """List probes, oldest first (--state submitted: the triage queue)."""
    rows = api(click_ctx).probes(state=state)
    echo(rows, as_json, lambda rows: "\n".join(_line(p) for p in rows) or "no probes")


@probe.command("show")
@click.argument("probe_id", type=click.IntRange(1, 2**31 - 1))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def probe_show(click_ctx: click.Context, probe_id: int, as_json: bool) -> None:
    """Show a probe with its spec and its triage."""

    def render(p: dict[str, Any]) -> str:
        lines = [_line(p), f"  submitted by member {p['submitted_by']} on {p['created_at']}"]
        if p.get("description"):
            lines.append(f"  {p['description']}")
        if p.get("reviewed_by"):
            lines.append(f"  {p['state']} by member {p['reviewed_by']}: {p.get('review_reason') or ''}")
        lines.append("  spec: " + json.dumps(p["spec"], sort_keys=True))
        return "\n".join(lines)

    echo(api(click_ctx).probe(probe_id), as_json, render)


def _decision(name: str, help_text: str, needs_reason: bool) -> None:
    @probe.command(name, help=help_text)
    @click.argument("probe_id", type=click.IntRange(1, 2**31 - 1))
    @click.option("--reason", default="", help="why" + (" (required)" if needs_reason else ""))
    @click.pass_context
    @domain_errors
    def cmd(click_ctx: click.Context, probe_id: int, reason: str) -> None:
        if needs_reason and not reason.strip():
            raise click.UsageError(f"{name} needs --reason")
        p = api(click_ctx).triage_probe(probe_id, name, reason)
        click.echo(f"probe #{p['id']} is {p['state']}")


_decision("accept", "Reviewers: accept a submitted probe (it runs on every later candidate).", False)
_decision("reject", "Reviewers: reject a submitted probe, with --reason.", True)
