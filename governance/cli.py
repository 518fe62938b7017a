"""The ``commons`` command line: operator commands (serve, db, member, token) work on the database directly;
member commands (proposal, vote, triage, council) call the JSON API over httpx."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import httpx

from governance.client import ApiError, CommonsClient
from unlearning.contract import COMPARATORS

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

F = TypeVar("F", bound=Callable[..., Any])


def _settings() -> Any:
    from pydantic import ValidationError

    from governance.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException(
            "invalid settings: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None


def _ctx() -> Any:
    from governance.db.engine import make_engine
    from governance.db.migrate import upgrade
    from governance.services.context import Ctx

    s = _settings()
    upgrade(s.effective_database_url)
    return Ctx.create(make_engine(s.effective_database_url), s)


def _domain_errors(fn: F) -> F:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from governance.domain.errors import DomainError

        try:
            return fn(*args, **kwargs)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        except ApiError as exc:
            where = f" ({exc.field})" if exc.field else ""
            raise click.ClickException(f"{exc.detail}{where}") from None

    return wrapper  # type: ignore[return-value]


class LazyGroup(click.Group):
    """Subcommand groups from other packages load on first use: `commons vote` must not import torch."""

    lazy = {
        "audit": ("governance.audit.cli", "audit"),
        "model": ("unlearning.cli", "model"),
        "gate": ("governance.gate_cli", "gate"),
        "release": ("governance.gate_cli", "release"),
        "verify": ("unlearning.verification.cli", "verify"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name]
            cmd: click.Command = getattr(__import__(module, fromlist=[attr]), attr)
            return cmd
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup)
@click.version_option(package_name="commons-unlearning")
def main() -> None:
    """Commons: decide in the open what a federated model must forget, make it forget, prove it."""


# ------------------------------------------------------------------ operator


@main.command()
@click.option("--host", default=None, help="bind address (default COMMONS_HOST or 127.0.0.1)")
@click.option(
    "--port", default=None, type=click.IntRange(1, 65535), help="port (default COMMONS_PORT or 8000)"
)
@click.option(
    "--demo/--no-demo",
    default=None,
    help="on an empty database, create the demo community first (default: ask when run in a terminal)",
)
def serve(host: str | None, port: int | None, demo: bool | None) -> None:
    """Run the service: upgrade the database to the latest schema, then serve the API and the UI."""
    import uvicorn

    from governance.service import build

    s = _settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    ctx = _ctx()  # upgrades the database to the latest schema
    if demo is not False:
        _offer_demo(ctx, demo)
    host, port = host or s.host, port or s.port
    click.echo(f"Commons on http://{host}:{port}  (database: {_redact(s.effective_database_url)})")
    ctx.engine.dispose()
    uvicorn.run(build(s), host=host, port=port, log_level="warning")


def _offer_demo(ctx: Any, asked: bool | None) -> None:
    """First start on an empty database: offer the demo community (asked only in an interactive terminal)."""
    import os

    from governance import demo as demo_mod

    if not demo_mod.is_empty(ctx):
        return
    interactive = sys.stdin.isatty() and not os.environ.get("CI")
    if asked is None:
        if not interactive:
            click.echo("empty database: `commons demo` creates a demo community (or `commons serve --demo`)")
            return
        if not click.confirm(
            "The database is empty. Create a demo community (members, 5 nodes, a model trained in a few minutes)?",
            default=True,
        ):
            return
    _create_demo(reset=False, yes=True, size="default", ctx=ctx)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.command()
@click.option("--name", default=None, help="worker name in leases and logs (default host:pid:random)")
@click.option("--once", is_flag=True, help="work one job (if any) and exit")
def worker(name: str | None, once: bool) -> None:
    """Run a job worker beside the service, against the same database (SIGTERM stops it gracefully: the
    current job stops at its next round boundary and its lease is released for another worker)."""
    import signal

    from governance.jobs.worker import Worker

    w = Worker(_ctx(), name)

    def _graceful(signum: int, _frame: Any) -> None:
        click.echo(f"worker {w.name}: stopping (signal {signum}); the current job is handed back", err=True)
        w.stopping.set()

    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _graceful)
    click.echo(f"worker {w.name} started", err=True)
    if once:
        w.run_once()
    else:
        w.run_forever()


@main.group()
def webhook() -> None:
    """Outbound webhooks (operator commands, on the database)."""


@webhook.command("add")
@click.argument("url")
@click.option("--event", "events_", multiple=True, required=True, help="repeatable, e.g. --event release")
@click.option("--secret", default=None, help="the signing secret (16+ characters; default: a random one)")
@_domain_errors
def webhook_add(url: str, events_: tuple[str, ...], secret: str | None) -> None:
    """Register a URL; prints its signing secret once."""
    from governance.services import events

    h = events.add_webhook(_ctx(), url, list(events_), secret=secret)
    click.echo(h["secret"])
    click.echo(f"webhook {h['id']} -> {h['url']} ({', '.join(h['events'])}): store the secret now", err=True)


@webhook.command("list")
@_domain_errors
def webhook_list() -> None:
    """List webhooks."""
    from governance.services import events

    for h in events.list_webhooks(_ctx()):
        click.echo(
            f"{h['id']:>4}  {'active' if h['active'] else 'removed':<8} {h['url']}  {', '.join(h['events'])}"
        )


@webhook.command("remove")
@click.argument("webhook_id", type=int)
@_domain_errors
def webhook_remove(webhook_id: int) -> None:
    """Stop sending to a webhook (its deliveries stay on record)."""
    from governance.services import events

    events.remove_webhook(_ctx(), webhook_id)
    click.echo(f"webhook {webhook_id} removed")


def _rich_progress() -> Any:
    """A rich progress display and a callback for unlearning progress events (one bar per phase)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
    tasks: dict[str, Any] = {}

    def on_event(ev: Any) -> None:
        if ev.phase not in tasks:
            tasks[ev.phase] = bar.add_task(ev.phase, total=ev.total_rounds)
        bar.update(tasks[ev.phase], completed=ev.round, total=max(ev.total_rounds, ev.round))

    return bar, on_event


@main.group(invoke_without_command=True)
@click.option("--reset", is_flag=True, help="drop everything (database, dataset, models) first")
@click.option("--yes", is_flag=True, help="do not ask before --reset")
@click.option("--size", type=click.Choice(["small", "default"]), default="default", show_default=True)
@click.pass_context
def demo(click_ctx: click.Context, reset: bool, yes: bool, size: str) -> None:
    """Create a demo community: members, 5 nodes with a generated corpus, a base model trained federatedly,
    and proposals in different states."""
    if click_ctx.invoked_subcommand is not None:
        return
    _create_demo(reset=reset, yes=yes, size=size)


def _create_demo(*, reset: bool, yes: bool, size: str, ctx: Any = None) -> Any:
    from governance import demo as demo_mod

    ctx = ctx or _ctx()
    if reset:
        if not yes and not click.confirm("Drop the database, the dataset and every model version?"):
            raise click.Abort()
        demo_mod.reset(ctx)
    if not demo_mod.is_empty(ctx):
        raise click.ClickException("the database is not empty: use `commons demo --reset` to start over")
    bar, on_event = _rich_progress()
    with bar:
        community = demo_mod.create(ctx, size=size, say=lambda m: bar.console.print(m), progress=on_event)
    click.echo(f"demo community ready; sign in as alice / {demo_mod.DEMO_PASSWORD}")
    return ctx, community


@demo.command("run")
@click.option("--size", type=click.Choice(["small", "default"]), default="small", show_default=True)
@click.option("--wait", default=3.0, show_default=True, help="seconds each review period lasts in the walk")
def demo_run(size: str, wait: float) -> None:
    """Drive one proposal from filing to the release verdict, headless (creates the demo community first
    when the database is empty) and print the gate's verdict and the HTML report's path."""
    from governance import demo as demo_mod
    from governance.jobs.worker import Worker
    from governance.services import jobs as jobs_service
    from governance.services import members

    ctx = _ctx()
    if demo_mod.is_empty(ctx):
        ctx, community = _create_demo(reset=False, yes=True, size=size)
        people, source = community.people, community.sources["node-0/notebook"]
    else:
        people = {h: _actor_for(ctx, members, h) for h, _, _ in demo_mod.PEOPLE}
        source = _source_id(ctx, "node-0", "notebook")
    pid = demo_mod.walk(ctx, people, source, say=click.echo, wait=wait)
    (job,) = jobs_service.list_jobs(ctx, proposal_id=pid)
    click.echo(f"job {job['id']}: unlearning {job['spec']['target']['value']} with {job['spec']['method']}")
    worker = Worker(ctx, "demo")
    while jobs_service.get(ctx, job["id"])["state"] not in ("succeeded", "failed", "cancelled"):
        if not worker.run_once():
            break
    done = jobs_service.get(ctx, job["id"])
    click.echo(f"job {job['id']}: {done['state']}; model version {done['model_version']}")
    _print_verdict(ctx, done)


def _actor_for(ctx: Any, members: Any, handle: str) -> Any:
    from governance.domain.review import ActorView

    m = members.find_member(ctx, handle)
    from governance.domain.roles import Role

    return ActorView(m.id, frozenset(Role(r) for r in m.roles))


def _source_id(ctx: Any, node: str, name: str) -> int:
    from governance.services import data_sources

    for ds in data_sources.list_all(ctx, limit=500):
        if ds.node_id == node and ds.name == name:
            return ds.id
    raise click.ClickException(f"no data source {node}/{name}: run `commons demo --reset` first")


def _print_verdict(ctx: Any, job: dict[str, Any]) -> None:
    from governance.services import gate

    report = job.get("report") or {}
    for t in report.get("tests", []):
        click.echo(
            f"  {t.get('status', '?'):<14} {t.get('metric')} {t.get('comparator')} {t.get('threshold')}: {t.get('measured')}"
        )
    if job["model_version"]:
        verdict = gate.verdict(ctx, job["model_version"])
        click.echo(f"release verdict for {job['model_version']}: {verdict.verdict}")
        for reason in verdict.reasons:
            click.echo(f"  - {reason}")
        if report:
            from unlearning.api import render_report_html as render_html

            path = (ctx.settings.data_dir / "reports" / f"{job['model_version']}.html").resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_html(report))
            click.echo(f"report: {path}  (served at {verdict.report_url})")


@main.group()
def db() -> None:
    """Database schema (Alembic migrations are the only way a schema is created)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Upgrade the database to a revision."""
    from governance.db.migrate import upgrade

    s = _settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(s.effective_database_url, revision)
    click.echo(f"database at {revision}: {_redact(s.effective_database_url)}")


@main.group()
def member() -> None:
    """Members and roles (operator commands, on the database)."""


@member.command("add")
@click.argument("handle")
@click.option("--name", "display_name", default=None, help="display name (default: the handle)")
@click.option("--email", default=None)
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(["member", "reviewer", "council", "admin"]),
    help="repeatable; every member holds 'member'",
)
@_domain_errors
def member_add(handle: str, display_name: str | None, email: str | None, roles: tuple[str, ...]) -> None:
    """Add a member."""
    from pydantic import ValidationError

    from governance.schemas import MemberCreate
    from governance.services import members

    try:
        data = MemberCreate(
            handle=handle, display_name=display_name or handle, email=email, roles=list(roles)
        )
    except ValidationError as exc:
        raise click.ClickException(_pydantic_message(exc)) from None
    m = members.add_member(_ctx(), data)
    click.echo(f"member {m.id} {m.handle} ({', '.join(m.roles)})")


@member.command("list")
@click.option("--role", default=None)
@_domain_errors
def member_list(role: str | None) -> None:
    """List members."""
    from governance.services import members

    for m in members.list_members(_ctx(), role=role, limit=500):
        click.echo(f"{m.id:>5}  {m.handle:<24} {', '.join(m.roles)}")


@member.command("roles")
@click.argument("handle")
@click.option(
    "--role", "roles", multiple=True, required=True, type=click.Choice(["reviewer", "council", "admin"])
)
@_domain_errors
def member_roles(handle: str, roles: tuple[str, ...]) -> None:
    """Set a member's roles by hand (bootstrap; afterwards roles come from elections)."""
    from governance.services import members

    ctx = _ctx()
    m = members.set_roles(ctx, members.find_member(ctx, handle).id, list(roles))
    click.echo(f"member {m.id} {m.handle} ({', '.join(m.roles)})")


@member.command("password")
@click.argument("handle")
@_domain_errors
def member_password(handle: str) -> None:
    """Set a member's web sign-in password (asked twice, hidden); other sessions of theirs end."""
    from governance.services import auth, members

    ctx = _ctx()
    m = members.find_member(ctx, handle)
    password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    auth.set_password(ctx, m.id, password)
    click.echo(f"password set for {m.handle}")


def _pydantic_message(exc: Any) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


@main.group()
def token() -> None:
    """API tokens (for members, reviewers, council and CI)."""


@token.command("create")
@click.argument("handle")
@click.option("--name", default="cli", show_default=True, help="what the token is for")
@_domain_errors
def token_create(handle: str, name: str) -> None:
    """Create an API token for a member; it is printed once and only its hash is stored."""
    from governance.services import members

    ctx = _ctx()
    t = members.create_token(ctx, members.find_member(ctx, handle).id, name)
    click.echo(t.token)
    click.echo(f"token {t.id} ({t.prefix}...) for {handle}: store it now, it is not shown again", err=True)


# ------------------------------------------------------------------ member commands over the API


class ApiContext:
    def __init__(self, client: CommonsClient | None = None) -> None:
        self._client = client

    def client(self) -> CommonsClient:
        if self._client is None:
            s = _settings()
            if not s.api_token:
                raise click.ClickException(
                    "set COMMONS_API_TOKEN (create one with `commons token create HANDLE`)"
                )
            self._client = CommonsClient(httpx.Client(base_url=s.api_url, timeout=30.0), s.api_token)
        return self._client


def _api(click_ctx: click.Context) -> CommonsClient:
    obj = click_ctx.ensure_object(ApiContext)
    return obj.client()


def _echo(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else render(data))


def _line(p: dict[str, Any]) -> str:
    target = p.get("target") or {}
    what = target.get("kind") or (f"election:{p.get('election_role')}" if p.get("kind") == "election" else "")
    return f"#{p['id']:<5} {p['state']:<16} {what:<12} {p['title']}"


@main.group()
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
    help="acceptance test, e.g. 'mia_auc_gap<=0.05' (repeatable; default: the target kind's defaults)",
)
@click.option(
    "--consent-withdrawal", is_flag=True, help="withdraw consent for your own data source (fast track)"
)
@click.option("--secret-tally", is_flag=True, help="hide the tally until the vote closes")
@click.option("--draft", is_flag=True, help="keep as a draft instead of submitting")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_domain_errors
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
    p = _api(click_ctx).create_proposal(body)
    _echo(p, o["as_json"], lambda p: f"proposal #{p['id']} is {p['state']}: {p['title']}")


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
@_domain_errors
def proposal_show(click_ctx: click.Context, proposal_id: int, as_json: bool) -> None:
    """Show a proposal with its history, tally and what you may do."""

    def render(p: dict[str, Any]) -> str:
        lines = [_line(p), f"  proposer: member {p['proposer_id']}"]
        if p.get("target"):
            lines.append(f"  target: {json.dumps(p['target'], sort_keys=True)}")
        for t in p.get("acceptance_tests", []):
            lines.append(f"  test: {t['metric']} {t['comparator']} {t['threshold']}")
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
        if p.get("allowed_actions"):
            lines.append(f"  you may: {', '.join(p['allowed_actions'])}")
        return "\n".join(lines)

    _echo(_api(click_ctx).proposal(proposal_id), as_json, render)


@proposal.command("list")
@click.option("--state", default=None)
@click.option("--target-kind", default=None, type=click.Choice(["data_source", "category", "behaviour"]))
@click.option("--mine", is_flag=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_domain_errors
def proposal_list(
    click_ctx: click.Context,
    state: str | None,
    target_kind: str | None,
    mine: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List proposals, newest first."""
    rows = _api(click_ctx).proposals(state=state, target_kind=target_kind, mine=mine or None, limit=limit)
    _echo(rows, as_json, lambda rows: "\n".join(_line(p) for p in rows) or "no proposals")


def _simple_action(name: str, api_name: str, help_text: str, needs_reason: bool = False) -> None:
    @proposal.command(name, help=help_text)
    @click.argument("proposal_id", type=int)
    @click.option("--reason", default="", required=needs_reason)
    @click.pass_context
    @_domain_errors
    def cmd(click_ctx: click.Context, proposal_id: int, reason: str) -> None:
        p = _api(click_ctx).action(proposal_id, api_name, {"reason": reason} if api_name != "submit" else {})
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
@_domain_errors
def proposal_triage(click_ctx: click.Context, proposal_id: int, decision: str, reason: str) -> None:
    """Reviewers: approve or reject (with --reason) a proposal in triage."""
    p = _api(click_ctx).action(proposal_id, "triage", {"decision": decision, "reason": reason})
    click.echo(f"proposal #{p['id']} is {p['state']}")


@proposal.command("council")
@click.argument("proposal_id", type=int)
@click.argument("decision", type=click.Choice(["ratify", "veto"]))
@click.option("--reason", default="")
@click.pass_context
@_domain_errors
def proposal_council(click_ctx: click.Context, proposal_id: int, decision: str, reason: str) -> None:
    """Council: ratify or veto (with --reason)."""
    p = _api(click_ctx).action(proposal_id, "council", {"decision": decision, "reason": reason})
    click.echo(f"proposal #{p['id']} is {p['state']}")


@main.command()
@click.argument("proposal_id", type=int)
@click.argument("choice", type=click.Choice(["approve", "object", "abstain", "block"]))
@click.option("--reason", default="", help="required for object and block")
@click.pass_context
@_domain_errors
def vote(click_ctx: click.Context, proposal_id: int, choice: str, reason: str) -> None:
    """Cast or change your vote on a proposal (the latest vote before the deadline counts)."""
    v = _api(click_ctx).vote(proposal_id, choice, reason)
    click.echo(f"your vote on #{proposal_id}: {v['choice']}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
