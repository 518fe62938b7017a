"""Member commands: they call the JSON API through the one client (proposal ..., vote); the token and the
service's address come from the settings (COMMONS_API_TOKEN; COMMONS_API_URL, else COMMONS_HOST and
COMMONS_PORT), and each command's help says so."""

from __future__ import annotations

import json
from typing import Any

import click

from governance.cli.common import ApiCommand, ApiGroup, api, domain_errors, echo
from unlearning.contract import COMPARATORS


def _line(p: dict[str, Any]) -> str:
    target = p.get("target") or {}
    what = target.get("kind") or (f"election:{p.get('election_role')}" if p.get("kind") == "election" else "")
    return f"#{p['id']:<5} {p['state']:<16} {what:<12} {p['title']}"


@click.group(cls=ApiGroup)
def proposal() -> None:
    """Table, read and list proposals (over the API)."""


@proposal.command("new")
@click.option("--title", required=True)
@click.option("--data-source", "data_source", type=int, default=None, help="target: a data source id")
@click.option("--category", default=None, help="target: a category (class or topic) name")
@click.option(
    "--example",
    "examples",
    multiple=True,
    nargs=2,
    metavar="PROMPT COMPLETION",
    help="target: a behaviour example (repeatable)",
)
@click.option("--pattern", default=None, help="target: a behaviour pattern (regular expression)")
@click.option("--election-role", type=click.Choice(["reviewer", "council"]), default=None)
@click.option("--candidate", type=int, default=None, help="election: the candidate's member id")
@click.option("--rationale", default="")
@click.option("--evidence", default="")
@click.option(
    "--test",
    "tests",
    multiple=True,
    metavar="METRIC<=THRESHOLD",
    help="acceptance test, e.g. 'mia_auc_gap_pvalue>=0.05' (repeatable; default: the target kind's defaults)",
)
@click.option(
    "--consent-withdrawal", is_flag=True, help="withdraw consent for your own data source (fast track)"
)
@click.option("--secret-tally", is_flag=True, help="hide the tally until the vote closes")
@click.option("--draft", is_flag=True, help="keep as a draft instead of submitting")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def proposal_new(click_ctx: click.Context, /, **o: Any) -> None:
    """Table a proposal to unlearn a data source, a category or a behaviour, or an election."""
    body: dict[str, Any] = {
        "title": o["title"],
        "rationale": o["rationale"],
        "evidence": o["evidence"],
        "consent_withdrawal": o["consent_withdrawal"],
        "secret_tally": o["secret_tally"],
        "submit": not o["draft"],
    }
    targets = [
        o["data_source"] is not None,
        o["category"] is not None,
        bool(o["examples"] or o["pattern"]),
        o["election_role"] is not None,
    ]
    if sum(targets) != 1:
        raise click.UsageError(
            "give exactly one target: --data-source, --category, --example/--pattern or --election-role"
        )
    if o["election_role"]:
        if o["candidate"] is None:
            raise click.UsageError("an election needs --candidate MEMBER_ID")
        body.update(kind="election", election={"role": o["election_role"], "candidate_id": o["candidate"]})
    elif o["data_source"] is not None:
        body["target"] = {"kind": "data_source", "data_source_id": o["data_source"]}
    elif o["category"] is not None:
        body["target"] = {"kind": "category", "category": o["category"]}
    else:
        body["target"] = {
            "kind": "behaviour",
            "examples": [{"prompt": p, "completion": c} for p, c in o["examples"]],
            "pattern": o["pattern"],
        }
    if o["tests"]:
        body["acceptance_tests"] = [_parse_test(t) for t in o["tests"]]
    p = api(click_ctx).create_proposal(body)

    def created(p: dict[str, Any]) -> str:
        lines = [f"proposal #{p['id']} is {p['state']}: {p['title']}"]
        lines += [
            f"  warning: {m} cannot be measured on this model and dataset: {why} (voted, it blocks the release)"
            for m, why in (p.get("unmeasurable_tests") or {}).items()
        ]
        return "\n".join(lines)

    echo(p, o["as_json"], created)


def _parse_test(text: str) -> dict[str, Any]:
    for comparator in COMPARATORS:  # "<=" before "<"
        metric, sep, threshold = text.partition(comparator)
        if sep:
            try:
                return {"metric": metric.strip(), "comparator": comparator, "threshold": float(threshold)}
            except ValueError:
                break
    raise click.BadParameter(f"{text!r}: expected METRIC<=NUMBER (or >=, <, >)", param_hint="--test")


@proposal.command("show")
@click.argument("proposal_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def proposal_show(click_ctx: click.Context, proposal_id: int, as_json: bool) -> None:
    """Show a proposal with its history, tally and what you may do."""

    def render(p: dict[str, Any]) -> str:
        lines = [_line(p), f"  proposer: member {p['proposer_id']}"]
        if p.get("target"):
            lines.append(f"  target: {json.dumps(p['target'], sort_keys=True)}")
        unmeasurable = p.get("unmeasurable_tests") or {}
        for t in p.get("acceptance_tests", []):
            why = unmeasurable.get(t["metric"])
            lines.append(
                f"  test: {t['metric']} {t['comparator']} {t['threshold']}"
                + (f"  CANNOT BE MEASURED HERE: {why}" if why else "")
            )
        if unmeasurable:
            lines.append(
                f"  warning: {len(unmeasurable)} test(s) cannot be measured on this model and dataset; "
                "voted, a test that cannot be measured never counts as passed (the release is blocked)"
            )
        if p.get("tally"):
            t = p["tally"]
            if t["hidden"]:
                lines.append(
                    f"  tally: hidden until the vote closes ({t['turnout']}/{t['electorate']} voted)"
                )
            else:
                lines.append(
                    f"  tally: approve {t['approve']} object {t['object']} abstain {t['abstain']} "
                    f"block {t['block']} of {t['electorate']} -> {t['outcome']}"
                )
        for d in ("triage_deadline", "voting_deadline", "council_deadline", "appeal_deadline"):
            if p.get(d):
                lines.append(f"  {d.replace('_', ' ')}: {p[d]}")
        lines.append("  history:")
        lines += [
            f"    {e['at']}  {e['action']:<20} {e['from_state'] or ''} -> {e['to_state'] or ''}"
            for e in p["history"]
        ]
        for j in p.get("jobs", []):
            lines.append(
                f"  job #{j['id']}: {j['state']} (attempt {j['attempt']} of {j['max_attempts']})"
                + (f", model {j['model_version']}" if j.get("model_version") else "")
            )
            if j.get("error"):
                lines.append(f"    error: {str(j['error']).strip().splitlines()[0]}")
        if p.get("allowed_actions"):
            lines.append(f"  you may: {', '.join(p['allowed_actions'])}")
        lines += outcome_lines(p.get("outcome"))
        return "\n".join(lines)

    client = api(click_ctx)
    detail = client.proposal(proposal_id)
    if detail.get("state") not in (
        "draft",
        "submitted",
        "triage",
        "voting",
        "council_review",
        "appeal_window",
    ):
        detail["jobs"] = client.jobs(proposal_id=proposal_id)  # why a job failed, with what to fix
    echo(detail, as_json, render)


def outcome_lines(o: dict[str, Any] | None) -> list[str]:
    """The outcome statement of a closed decision, or who is expected to write it."""
    if not o or not o.get("closed"):
        return []
    st = o.get("statement")
    if st is None:
        return [f"  outcome: not written yet; expected from {o['expected_from']}"]
    revised = f", revised {len(o.get('history', []))} time(s)" if o.get("history") else ""
    return [
        f"  outcome (version {st['version']} by @{st['author']}, {st['written_at']}{revised}):",
        f"    decided: {st['decided']}",
        f"    why: {st['reasons']}",
        f"    next: {st['next_steps']}",
    ]


@proposal.command("outcome")
@click.argument("proposal_id", type=int)
@click.option("--decided", required=True, help="what was decided")
@click.option("--why", "reasons", required=True, help="why it was decided")
@click.option("--next", "next_steps", required=True, help="what happens next")
@click.option("--revise", is_flag=True, help="replace the statement written already (its history is kept)")
@click.pass_context
@domain_errors
def proposal_outcome(
    click_ctx: click.Context, proposal_id: int, decided: str, reasons: str, next_steps: str, revise: bool
) -> None:
    """Write the outcome statement of a closed decision (its author or a council member; a reviewer for a
    triage rejection). Every member is notified."""
    body = {"decided": decided, "reasons": reasons, "next_steps": next_steps}
    o = api(click_ctx).write_outcome(proposal_id, body, revise=revise)
    click.echo(f"proposal #{proposal_id}: outcome statement version {o['statement']['version']} saved")


@proposal.command("list")
@click.option("--state", default=None)
@click.option("--target-kind", default=None, type=click.Choice(["data_source", "category", "behaviour"]))
@click.option("--mine", is_flag=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def proposal_list(
    click_ctx: click.Context,
    state: str | None,
    target_kind: str | None,
    mine: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List proposals, newest first."""
    rows = api(click_ctx).proposals(state=state, target_kind=target_kind, mine=mine or None, limit=limit)
    echo(rows, as_json, lambda rows: "\n".join(_line(p) for p in rows) or "no proposals")


def _simple_action(name: str, api_name: str, help_text: str, needs_reason: bool = False) -> None:
    @proposal.command(name, help=help_text)
    @click.argument("proposal_id", type=int)
    @click.option("--reason", default="", required=needs_reason)
    @click.pass_context
    @domain_errors
    def cmd(click_ctx: click.Context, proposal_id: int, reason: str) -> None:
        p = api(click_ctx).action(proposal_id, api_name, {"reason": reason} if api_name != "submit" else {})
        click.echo(f"proposal #{p['id']} is {p['state']}")


_simple_action("submit", "submit", "Submit a draft for triage.")
_simple_action("withdraw", "withdraw", "Withdraw your proposal.")
_simple_action("appeal", "appeal", "Appeal a rejection or veto to the council (once).", needs_reason=True)
_simple_action(
    "conflict", "conflicts", "Declare a conflict of interest (you stop reviewing it).", needs_reason=True
)
_simple_action("cancel", "cancel", "Emergency cancel (council or admin).", needs_reason=True)


@proposal.command("triage")
@click.argument("proposal_id", type=int)
@click.argument("decision", type=click.Choice(["approve", "reject"]))
@click.option("--reason", default="")
@click.pass_context
@domain_errors
def proposal_triage(click_ctx: click.Context, proposal_id: int, decision: str, reason: str) -> None:
    """Reviewers: approve or reject (with --reason) a proposal in triage."""
    p = api(click_ctx).action(proposal_id, "triage", {"decision": decision, "reason": reason})
    click.echo(f"proposal #{p['id']} is {p['state']}")


@proposal.command("council")
@click.argument("proposal_id", type=int)
@click.argument("decision", type=click.Choice(["ratify", "veto"]))
@click.option("--reason", default="")
@click.pass_context
@domain_errors
def proposal_council(click_ctx: click.Context, proposal_id: int, decision: str, reason: str) -> None:
    """Council: ratify or veto (with --reason)."""
    p = api(click_ctx).action(proposal_id, "council", {"decision": decision, "reason": reason})
    click.echo(f"proposal #{p['id']} is {p['state']}")


@click.command(cls=ApiCommand)
@click.argument("proposal_id", type=int)
@click.argument("choice", type=click.Choice(["approve", "object", "abstain", "block"]))
@click.option("--reason", default="", help="required for object and block")
@click.pass_context
@domain_errors
def vote(click_ctx: click.Context, proposal_id: int, choice: str, reason: str) -> None:
    """Cast or change your vote on a proposal (the latest vote before the deadline counts)."""
    v = api(click_ctx).vote(proposal_id, choice, reason)
    click.echo(f"your vote on #{proposal_id}: {v['choice']}")
