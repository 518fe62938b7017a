"""Delegation over the JSON API: ``commons delegation add | list | revoke | carried``. A member delegates their
vote for everything or a topic; a delegation counts in the polls that open after it, and revoking it takes
the vote back at once, from open polls too (docs/governance.md, "Delegation")."""

from __future__ import annotations

from typing import Any

import click

from governance.cli.common import ApiGroup, api, domain_errors, echo

SCOPES = ("all", "target_kind", "category", "tag")


def _line(d: dict[str, Any]) -> str:
    state = f"  revoked {d['revoked_at'][:16]}" if d.get("revoked_at") else ""
    return f"#{d['id']:<5} @{d['delegator']} -> @{d['delegate']:<16} {d['label']}{state}"


@click.group(cls=ApiGroup)
def delegation() -> None:
    """Delegate your vote, list and revoke delegations, see the votes you carry (over the API)."""


@delegation.command("add")
@click.argument("delegate")
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    default="all",
    show_default=True,
    help="everything, or only polls of a target kind, a category or a tag",
)
@click.option(
    "--value",
    default="",
    help="the scope's value: a target kind (data_source, category, behaviour, election), a category or a tag",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def delegation_add(click_ctx: click.Context, delegate: str, scope: str, value: str, as_json: bool) -> None:
    """Delegate your vote to DELEGATE (a member's handle). It counts from the next poll that opens."""
    d = api(click_ctx).delegate({"delegate": delegate, "scope": scope, "scope_value": value})
    echo(d, as_json, lambda d: f"delegation #{d['id']}: your vote on {d['label']} goes to @{d['delegate']}")


@delegation.command("list")
@click.option("--revoked", is_flag=True, help="include your revoked delegations")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def delegation_list(click_ctx: click.Context, revoked: bool, as_json: bool) -> None:
    """Your delegations, and the ones made to you."""
    data = api(click_ctx).delegations(revoked)

    def text(data: dict[str, Any]) -> str:
        given = [_line(d) for d in data["given"]] or ["  (none)"]
        received = [_line(d) for d in data["received"]] or ["  (none)"]
        return "\n".join(["You delegate:", *given, "Delegated to you:", *received])

    echo(data, as_json, text)


@delegation.command("revoke")
@click.argument("delegation_id", type=click.IntRange(1, 2**31 - 1))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def delegation_revoke(click_ctx: click.Context, delegation_id: int, as_json: bool) -> None:
    """Revoke delegation DELEGATION_ID: it no longer counts, in open polls either."""
    d = api(click_ctx).revoke_delegation(delegation_id)

    def text(d: dict[str, Any]) -> str:
        polls = ", ".join(f"#{p}" for p in d["open_polls_released"])
        return f"delegation #{d['id']} is revoked" + (f"; your vote is back in {polls}" if polls else "")

    echo(d, as_json, text)


@delegation.command("carried")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def delegation_carried(click_ctx: click.Context, as_json: bool) -> None:
    """The votes you carry: per open poll, how many votes you cast for others (never what they chose)."""
    data = api(click_ctx).carried()

    def text(data: dict[str, Any]) -> str:
        lines = [f"#{p['proposal_id']:<5} {p['carried']} vote(s)  {p['title']}" for p in data["polls"]]
        return "\n".join(lines or ["You carry no vote in an open poll."])

    echo(data, as_json, text)
