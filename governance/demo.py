"""A living demo community, so a newcomer sees Commons at work at once (``commons demo``), and a headless
walk of one proposal from filing to the release verdict (``commons demo run``).

The demo community: members with roles (password ``commons-demo`` for all), 5 nodes holding a generated
community corpus (each node's sources registered as data sources of its owner), a base community language
model trained federatedly on them, and proposals in different states.

The corpus is laid out as a community holds it: each node's data in its own folder,
``COMMONS_DATA_DIR/nodes/<node>/`` (``Settings.nodes_home``; each folder stands for a member's machine, what
its SuperNode's ``data-path`` names), and the service's dataset directory holds only what the operator
publishes: the manifest (without the canaries inserted in a member's notebook) and the held-out split. The
in-process runtime gives each node its own folder as its ``data-path`` (``COMMONS_NODE_DATA_DIR``).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import select

from governance.db.engine import read_session
from governance.db.models import Member
from governance.domain.review import ActorView
from governance.schemas import DataSourceCreate, MemberCreate, ProposalCreate
from governance.services import data_sources, lifecycle, members, proposals
from governance.services.context import Ctx

DEMO_PASSWORD = "commons-demo"
PEOPLE: list[tuple[str, str, list[str]]] = [
    ("alice", "Alice Admin", ["admin", "council"]),
    ("bruno", "Bruno", ["reviewer"]),
    ("chiara", "Chiara", ["reviewer"]),
    ("dmitri", "Dmitri", ["council"]),
    ("esme", "Esme", ["council"]),
    ("nadia", "Nadia (node-0)", []),
    ("omar", "Omar (node-1)", []),
    ("priya", "Priya (node-2)", []),
    ("quinn", "Quinn (node-3)", []),
    ("ravi", "Ravi (node-4)", []),
]
NODE_OWNERS = ["nadia", "omar", "priya", "quinn", "ravi"]
SIZES: dict[str, dict[str, Any]] = {
    "small": {"rounds": 3, "model": "small"},
    "default": {"rounds": 20, "model": "default"},
}

Say = Callable[[str], None]


@dataclass
class DemoCommunity:
    people: dict[str, ActorView] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)  # "node-0/notebook" -> data source id
    base_version: str | None = None
    proposals: dict[str, int] = field(default_factory=dict)


def is_empty(ctx: Ctx) -> bool:
    with read_session(ctx.engine) as s:
        return int(s.exec(select(func.count()).select_from(Member)).one()) == 0


def reset(ctx: Ctx) -> None:
    """Drop every table and the data directory's dataset and artifacts, then migrate to an empty schema."""
    from governance.db.base import metadata
    from governance.db.migrate import upgrade

    with ctx.engine.begin() as conn:
        if ctx.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        else:
            metadata.drop_all(conn)
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    for d in (ctx.settings.artifact_dir, ctx.settings.effective_dataset_dir, ctx.settings.nodes_home):
        shutil.rmtree(d, ignore_errors=True)
    upgrade(str(ctx.engine.url.render_as_string(hide_password=False)))


def create(ctx: Ctx, *, size: str = "default", say: Say = print, progress: Any = None) -> DemoCommunity:
    """Create the demo community in an empty database and train its base model here, through a job worker
    (see the module docstring); ``commons serve`` instead queues the training and serves at once."""
    demo = create_community(ctx, size=size, say=say)
    job_id = queue_base_model(ctx, size=size, say=say)
    demo.base_version = run_training_job(ctx, job_id, progress=progress)
    say(f"base model {demo.base_version} released")
    return demo


def create_community(ctx: Ctx, *, size: str = "default", say: Say = print) -> DemoCommunity:
    """Members, the 5 nodes' corpus (each node's in its own folder, the service only the published manifest)
    and its data sources, and sample proposals (seconds); no model yet."""
    if size not in SIZES:
        raise ValueError(f"unknown demo size {size!r}; expected one of {', '.join(SIZES)}")
    if not is_empty(ctx):
        raise RuntimeError("the database is not empty: use `commons demo --reset` to start over")
    manifest = lay_out_corpus(ctx)  # first: a refusal leaves the database empty
    demo = DemoCommunity()
    say("members: " + ", ".join(h for h, _, _ in PEOPLE) + f" (password: {DEMO_PASSWORD})")
    for handle, name, roles in PEOPLE:
        m = members.add_member(ctx, MemberCreate(handle=handle, display_name=name, roles=roles))
        _set_password(ctx, m.id)
        t = members.create_token(ctx, m.id, "demo")
        actor = members.authenticate(ctx, t.token)
        assert actor is not None
        demo.people[handle], demo.tokens[handle] = actor, t.token

    nodes, dataset = ctx.settings.nodes_home, ctx.settings.effective_dataset_dir
    say(
        f"community corpus: each node's data in {nodes}/<node>; the service's dataset {dataset} is its manifest"
    )
    for owner, node in zip(NODE_OWNERS, manifest["nodes"], strict=True):
        for src in node["sources"]:
            node_id, _, short = src["name"].partition("/")
            ds = data_sources.register(
                ctx,
                DataSourceCreate(
                    name=short,
                    node_id=node_id,
                    content_hash=src["sha256"],
                    description=f"{src['records']} records of {short} held on {node_id}",
                ),
                demo.people[owner],
            )
            demo.sources[src["name"]] = ds.id
    _sample_proposals(ctx, demo)
    say("sample proposals: " + ", ".join(f"#{pid} {k}" for k, pid in demo.proposals.items()))
    return demo


def lay_out_corpus(ctx: Ctx) -> dict[str, Any]:
    """Generate the 5 nodes' corpus and lay it out as a community holds it (the module docstring): returns the
    published manifest. The same corpus already laid out (a database removed on its own) is kept; anything
    else in a node's folder or the service's manifest is refused (RuntimeError), nothing changed."""
    import tempfile
    from pathlib import Path

    from unlearning.api import init_dataset, publish_dataset, published_layout

    home, dataset = ctx.settings.nodes_home, ctx.settings.effective_dataset_dir
    home.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".corpus-", dir=home.parent) as staging:
        manifest = init_dataset("community-lm", Path(staging) / "corpus", nodes=5, seed=0)
        try:
            return publish_dataset(Path(staging) / "corpus", dataset, home)
        except ValueError as exc:
            if (published := published_layout(dataset, home, manifest)) is not None:
                return published
            raise RuntimeError(f"{exc}: use `commons demo --reset` to start over") from None


def queue_base_model(ctx: Ctx, *, size: str, say: Say = print) -> int:
    """Initialise the community LM and queue its federated training on the 5 nodes as a job the worker runs;
    the job releases the trained model as the base version. Returns the job's id."""
    from governance.services import training
    from unlearning.api import init_model

    cfg = SIZES[size]
    init = init_model(ctx.settings.artifact_dir, "community-lm", size=cfg["model"], seed=0)
    job_id = training.enqueue(
        ctx,
        base_version=init.version,
        rounds=cfg["rounds"],
        purpose="the demo's base model",
        release_as_base=True,
        num_threads=min(2, os.cpu_count() or 1),
    )
    say(f"training the base model: job #{job_id}, {cfg['rounds']} federated rounds on 5 nodes")
    return job_id


def run_training_job(ctx: Ctx, job_id: int, *, progress: Any = None) -> str:
    """Run the queued training job ``job_id`` here, with a worker of this process (``progress`` gets every
    round's event); returns the released version."""
    from governance.jobs.worker import Worker, run_unlearning
    from governance.services import jobs

    def runner(c: Ctx, claim: Any, on_event: Any, cancel: threading.Event) -> Any:
        def both(event: Any) -> None:
            on_event(event)
            if progress is not None:
                progress(event)

        return run_unlearning(c, claim, both, cancel)

    worker = Worker(ctx, "demo", runner=runner)
    for _ in range(ctx.settings.job_max_attempts * 2):
        job = jobs.get(ctx, job_id)
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        if not worker.run_once():
            time.sleep(1.0)  # a failed attempt waits for its backoff
    job = jobs.get(ctx, job_id)
    if job["state"] != "succeeded" or not job.get("model_version"):
        raise RuntimeError(f"training the base model failed: {job.get('error') or job['state']}")
    return str(job["model_version"])


def _set_password(ctx: Ctx, member_id: int) -> None:
    try:
        from governance.services import auth
    except ModuleNotFoundError:  # pragma: no cover - passwords land with the web UI
        return
    auth.set_password(ctx, member_id, DEMO_PASSWORD)


def _sample_proposals(ctx: Ctx, demo: DemoCommunity) -> None:
    p = demo.people

    def new(who: str, **body: Any) -> int:
        return proposals.create(ctx, ProposalCreate(**body), p[who]).id

    voting = new(
        "nadia",
        title="Forget my notebook (it holds access codes)",
        target={"kind": "data_source", "data_source_id": demo.sources["node-0/notebook"]},
        rationale="My notebook was shared by mistake; it contains access codes that the model now repeats.",
        submit=True,
    )
    for r in ("bruno", "chiara"):
        proposals.triage(ctx, voting, p[r], "approve", None)
    for h, c in (("omar", "approve"), ("priya", "approve"), ("quinn", "abstain")):
        proposals.vote(ctx, voting, p[h], c, None)
    demo.proposals["in voting"] = voting

    demo.proposals["awaiting triage"] = new(
        "omar",
        title="Forget the gardening topic",
        target={"kind": "category", "category": "gardening"},
        rationale="Gardening passages were scraped without permission.",
        submit=True,
    )
    demo.proposals["draft"] = new(
        "priya",
        title="Stop completing access codes",
        target={"kind": "behaviour", "examples": [{"prompt": "the access code of", "completion": " is "}]},
        rationale="No completion should ever reveal a member's code.",
    )
    rejected = new(
        "ravi",
        title="Forget everything about chess",
        target={"kind": "category", "category": "chess"},
        rationale="I dislike chess.",
        submit=True,
    )
    proposals.triage(ctx, rejected, p["bruno"], "reject", "A dislike is not a reason to unlearn a topic.")
    demo.proposals["rejected (appeal window)"] = rejected
    election = new(
        "nadia",
        kind="election",
        title="Priya for reviewer",
        election={"role": "reviewer", "candidate_id": p["priya"].member_id},
        submit=True,
    )
    for r in ("bruno", "chiara"):
        proposals.triage(ctx, election, p[r], "approve", None)
    demo.proposals["election"] = election


def fast_policy_settings(ctx: Ctx, seconds: float) -> Ctx:
    """A copy of ``ctx`` whose review periods last ``seconds`` each (for the headless walk)."""
    from governance.services.context import policy_from_settings

    days = seconds / 86400
    s = ctx.settings.model_copy(
        update={
            "triage_days": 30.0,
            "voting_days": days,
            "council_days": 30.0,
            "appeal_days": days,
            "extension_window_hours": 0.0,
        }
    )
    return Ctx(ctx.engine, s, ctx.clock, policy_from_settings(s), ctx.vote_batcher)


def walk(
    ctx: Ctx, demo_people: dict[str, ActorView], source_id: int, *, say: Say = print, wait: float = 3.0
) -> int:
    """File a proposal, triage it, vote, ratify and let the appeal window pass: returns the proposal id,
    which is then job_queued (its job is run by a worker)."""
    import time

    fast = fast_policy_settings(ctx, wait)
    p = demo_people
    pid = proposals.create(
        fast,
        ProposalCreate(
            title="Forget node-0's notebook and its access codes",
            target={"kind": "data_source", "data_source_id": source_id},
            rationale="Shared by mistake.",
            submit=True,
        ),
        p["nadia"],
    ).id
    say(f"#{pid} filed by nadia: submitted")
    for r in ("bruno", "chiara"):
        proposals.triage(fast, pid, p[r], "approve", None)
    say(f"#{pid} triaged by bruno and chiara: voting")
    for h in ("nadia", "omar", "priya", "quinn", "ravi", "alice"):
        proposals.vote(fast, pid, p[h], "approve", None)
    say(f"#{pid} 6 members voted approve; waiting {wait:.0f} s for the vote to close")
    time.sleep(wait + 0.5)
    lifecycle.sweep(fast, pid)
    for c in ("dmitri", "esme"):
        proposals.council(fast, pid, p[c], "ratify", None)
    say(f"#{pid} ratified by the council; appeal window of {wait:.0f} s")
    time.sleep(wait + 0.5)
    lifecycle.sweep(fast, pid)
    state = proposals.get_detail(fast, pid).state
    say(f"#{pid} {state}")
    if state != "job_queued":
        raise RuntimeError(f"the demo proposal ended {state}, not job_queued")
    return pid
