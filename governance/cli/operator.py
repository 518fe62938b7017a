"""Operator commands: they work on the database named by the settings (serve, worker, webhook, demo, db,
member, token)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from governance.cli.common import (
    database_errors,
    domain_errors,
    load_settings,
    open_ctx,
    pydantic_message,
    redact,
)


@click.command()
@click.option("--host", default=None, help="bind address (default COMMONS_HOST or 127.0.0.1)")
@click.option(
    "--port", default=None, type=click.IntRange(1, 65535), help="port (default COMMONS_PORT or 8000)"
)
@click.option(
    "--demo/--no-demo",
    default=None,
    help="on an empty database, create the demo community first (default: ask when run in a terminal)",
)
@click.option(
    "--size",
    type=click.Choice(["small", "default"]),
    default="default",
    show_default=True,
    help="the demo's base model: small trains in well under a minute on 2 cores, default in a few minutes",
)
def serve(host: str | None, port: int | None, demo: bool | None, size: str) -> None:
    """Run the service: upgrade the database to the latest schema, then serve the API and the UI."""
    import uvicorn

    from governance.service import build

    s = load_settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    ctx = open_ctx()  # upgrades the database to the latest schema
    if demo is not False:
        _offer_demo(ctx, demo, size)
    host, port = host or s.host, port or s.port
    click.echo(f"Commons on http://{host}:{port}  (database: {redact(s.effective_database_url)})")
    _report_preparing(ctx)
    uvicorn.run(build(s), host=host, port=port, log_level="warning")


def _offer_demo(ctx: Any, asked: bool | None, size: str) -> None:
    """First start on an empty database: offer the demo community (asked only in an interactive terminal).
    The community is created at once; its base model is trained by the service's worker in the background."""
    from governance import demo as demo_mod

    if not demo_mod.is_empty(ctx):
        return
    interactive = sys.stdin.isatty() and not os.environ.get("CI")
    if asked is None:
        if not interactive:
            click.echo("empty database: `commons serve --demo` creates a demo community (or `commons demo`)")
            return
        if not click.confirm(
            "The database is empty. Create a demo community (members, 5 nodes, proposals; its model trains in "
            "the background while the service runs; --no-demo skips this, --size small trains faster)?",
            default=True,
        ):
            return
    demo_mod.create_community(ctx, size=size, say=click.echo)
    demo_mod.queue_base_model(ctx, size=size, say=click.echo)
    click.echo(f"demo community ready: sign in as alice / {demo_mod.DEMO_PASSWORD}")


def _report_preparing(ctx: Any) -> None:
    """While a base model is being prepared, print its progress and the time left every 15 s (a thread)."""
    import threading
    import time

    from governance.services import training

    if not training.preparing(ctx):
        return
    if not ctx.settings.embedded_worker:
        click.echo("a base model waits for a worker: start one with `commons worker`")

    def report() -> None:
        last = ""
        while True:
            try:
                rows = training.preparing(ctx)
            except Exception:  # the database went away: the service reports that itself
                return
            if not rows:
                click.echo("the base model is ready: proposals can now be unlearned")
                return
            line = "preparing " + rows[0].describe()
            if line != last:
                click.echo(line)
                last = line
            time.sleep(15)

    threading.Thread(target=report, name="commons-preparing", daemon=True).start()


@click.command()
@click.option("--name", default=None, help="worker name in leases and logs (default host:pid:random)")
@click.option("--once", is_flag=True, help="work one job (if any) and exit")
def worker(name: str | None, once: bool) -> None:
    """Run a job worker beside the service, against the same database (SIGTERM stops it gracefully: the
    current job stops at its next round boundary and its lease is released for another worker)."""
    import signal

    from governance.jobs.worker import Worker

    w = Worker(open_ctx(), name)

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


@click.group()
def webhook() -> None:
    """Outbound webhooks (operator commands, on the database)."""


@webhook.command("add")
@click.argument("url")
@click.option("--event", "events_", multiple=True, required=True, help="repeatable, e.g. --event release")
@click.option("--secret", default=None, help="the signing secret (16+ characters; default: a random one)")
@domain_errors
def webhook_add(url: str, events_: tuple[str, ...], secret: str | None) -> None:
    """Register a URL; prints its signing secret once."""
    from governance.services import events

    h = events.add_webhook(open_ctx(), url, list(events_), secret=secret)
    click.echo(h["secret"])
    click.echo(f"webhook {h['id']} -> {h['url']} ({', '.join(h['events'])}): store the secret now", err=True)


@webhook.command("list")
@domain_errors
def webhook_list() -> None:
    """List webhooks."""
    from governance.services import events

    for h in events.list_webhooks(open_ctx()):
        click.echo(
            f"{h['id']:>4}  {'active' if h['active'] else 'removed':<8} {h['url']}  {', '.join(h['events'])}"
        )


@webhook.command("remove")
@click.argument("webhook_id", type=int)
@domain_errors
def webhook_remove(webhook_id: int) -> None:
    """Stop sending to a webhook (its deliveries stay on record)."""
    from governance.services import events

    events.remove_webhook(open_ctx(), webhook_id)
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


@click.group(invoke_without_command=True)
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

    ctx = ctx or open_ctx()
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
    from governance.jobs.worker import Worker, run_unlearning
    from governance.services import jobs as jobs_service
    from governance.services import members

    ctx = open_ctx()
    if demo_mod.is_empty(ctx):
        ctx, community = _create_demo(reset=False, yes=True, size=size)
        people, source = community.people, community.sources["node-0/notebook"]
    else:
        people = {h: _actor_for(ctx, members, h) for h, _, _ in demo_mod.PEOPLE}
        source = _source_id(ctx, "node-0", "notebook")
    pid = demo_mod.walk(ctx, people, source, say=click.echo, wait=wait)
    (job,) = jobs_service.list_jobs(ctx, proposal_id=pid)
    click.echo(f"job {job['id']}: unlearning {job['spec']['target']['value']} with {job['spec']['method']}")
    worker = Worker(ctx, "demo", runner=_narrated(run_unlearning), verifier=_narrated_verifier())
    while jobs_service.get(ctx, job["id"])["state"] not in ("succeeded", "failed", "cancelled"):
        if not worker.run_once():
            break
    done = jobs_service.get(ctx, job["id"])
    click.echo(f"job {job['id']}: {done['state']}; model version {done['model_version']}")
    if _print_verdict(ctx, done) == "allow":
        from governance.services import gate

        released = gate.release(ctx, people["alice"], str(done["model_version"]))
        click.echo(f"released {released.version} by alice (admin): CI's `commons gate` now answers allow")


def _narrated(runner: Any) -> Any:
    """The job runner, saying each phase's round of rounds and the time left as it goes."""
    from datetime import UTC, datetime

    from governance.domain.jobs import time_left

    def run(ctx: Any, claim: Any, progress: Any, cancel: Any) -> Any:
        started: dict[str, datetime] = {}

        def say(event: Any) -> None:
            progress(event)
            now = datetime.now(UTC)
            left = time_left(started.setdefault(event.phase, now), now, event.round, event.total_rounds)
            if event.total_rounds <= 1:
                click.echo(f"  {event.phase}: done")
                return
            eta = f", about {left:.0f} s left in this phase" if left else ""
            click.echo(f"  {event.phase}: round {event.round} of {event.total_rounds}{eta}")

        return runner(ctx, claim, say, cancel)

    return run


def _narrated_verifier() -> Any:
    from governance.jobs.worker import default_verifier

    def verify(ctx: Any, claim: Any, result: Any, progress: Any) -> Any:
        click.echo("  verifying: the retrained reference, then every test the members voted ...")
        last: dict[str, Any] = {}

        def say(p: dict[str, Any]) -> None:
            progress(p)
            key = (p.get("phase"), p.get("stage"))
            if key != last.get("key"):
                last["key"] = key
                click.echo(f"  {p.get('phase')}: {p.get('stage') or ''}".rstrip(": "))

        return default_verifier(ctx, claim, result, say)

    return verify


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


def _print_verdict(ctx: Any, job: dict[str, Any]) -> str | None:
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
        return str(verdict.verdict)
    return None


@click.group()
def db() -> None:
    """Database schema (Alembic migrations are the only way a schema is created)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Upgrade the database to a revision."""
    from governance.db.migrate import upgrade

    s = load_settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    with database_errors(s.effective_database_url):
        upgrade(s.effective_database_url, revision)
    click.echo(f"database at {revision}: {redact(s.effective_database_url)}")


@click.group()
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
@domain_errors
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
        raise click.ClickException(pydantic_message(exc)) from None
    m = members.add_member(open_ctx(), data)
    click.echo(f"member {m.id} {m.handle} ({', '.join(m.roles)})")


@member.command("list")
@click.option("--role", default=None)
@domain_errors
def member_list(role: str | None) -> None:
    """List members."""
    from governance.services import members

    for m in members.list_members(open_ctx(), role=role, limit=500):
        click.echo(f"{m.id:>5}  {m.handle:<24} {', '.join(m.roles)}")


@member.command("roles")
@click.argument("handle")
@click.option(
    "--role", "roles", multiple=True, required=True, type=click.Choice(["reviewer", "council", "admin"])
)
@domain_errors
def member_roles(handle: str, roles: tuple[str, ...]) -> None:
    """Set a member's roles by hand (bootstrap; afterwards roles come from elections)."""
    from governance.services import members

    ctx = open_ctx()
    m = members.set_roles(ctx, members.find_member(ctx, handle).id, list(roles))
    click.echo(f"member {m.id} {m.handle} ({', '.join(m.roles)})")


@member.command("password")
@click.argument("handle")
@domain_errors
def member_password(handle: str) -> None:
    """Set a member's web sign-in password (asked twice, hidden); other sessions of theirs end."""
    from governance.services import auth, members

    ctx = open_ctx()
    m = members.find_member(ctx, handle)
    password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    auth.set_password(ctx, m.id, password)
    click.echo(f"password set for {m.handle}")


@click.group()
def token() -> None:
    """API tokens (for members, reviewers, council and CI)."""


@token.command("create")
@click.argument("handle")
@click.option("--name", default="cli", show_default=True, help="what the token is for")
@domain_errors
def token_create(handle: str, name: str) -> None:
    """Create an API token for a member; it is printed once and only its hash is stored."""
    from governance.services import members

    ctx = open_ctx()
    t = members.create_token(ctx, members.find_member(ctx, handle).id, name)
    click.echo(t.token)
    click.echo(f"token {t.id} ({t.prefix}...) for {handle}: store it now, it is not shown again", err=True)
