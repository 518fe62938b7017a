"""The web UI in a real browser: Playwright driving Debian's chromium against the app served by uvicorn.

A member files a proposal, reviewers triage it, members vote, the council ratifies, and the proposal reaches
approved once the appeal window closes; its unlearning job runs on a tiny digits federation while a moderator
watches its progress page, then sees the verification report and the release gate's verdict, and an admin
releases the version; the audit entry's proof is verified in the page; forms work with JavaScript switched off. Screenshots go to $COMMONS_UI_SCREENSHOTS when set (docs/img/ holds the published
ones). Without chromium the tests are skipped with the reason, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from governance.db.engine import write_session
from governance.domain.clock import FixedClock
from governance.jobs.worker import Worker
from governance.registry_schemas import ModelVersionCreate
from governance.schemas import ProposalCreate
from governance.services import auth, jobs, proposals, registry
from governance.services.context import Ctx
from governance.settings import Settings
from tests.conftest import PassTime, Person

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

CHROMIUM = os.environ.get("COMMONS_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"chromium not found at {CHROMIUM} (apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def digits_federation(settings: Settings) -> str:
    """A tiny federation (scikit-learn's digits on 3 nodes) and a base model trained for 2 rounds, in the
    app's data directory; jobs start from it (the way bench/worker_kill.py sets one up). A few seconds."""
    from unlearning import JobSpec, init_dataset, init_model, run_job

    init_dataset("digits", settings.effective_dataset_dir, nodes=3, seed=0)
    init = init_model(settings.artifact_dir, "digits", seed=0)
    base = run_job(
        JobSpec(
            kind="train",
            job_id="base",
            artifact_root=str(settings.artifact_dir),
            dataset_dir=str(settings.effective_dataset_dir),
            base_version=init.version,
            rounds=2,
        )
    )
    assert base.model_version is not None, base.error
    settings.base_model_version = base.model_version
    return base.model_version


def register_base(ctx: Ctx, version: str) -> None:
    """The base version in the registry, released (what an operator does once)."""
    manifest = json.loads((ctx.settings.artifact_dir / "versions" / version / "manifest.json").read_text())
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        row = registry.register(
            s,
            ModelVersionCreate(
                version=version, content_hash=manifest["content_hash"], task="digits", kind="train"
            ),
            actor=None,
            now=now,
            details={"base": True},
        )
        row.state, row.released_at = "released", now
        s.add(row)


def shot(page: Any, name: str) -> None:
    where = os.environ.get("COMMONS_UI_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=True)


class Session:
    """One person in their own browser context (own cookies)."""

    def __init__(self, browser: Any, base: str, ctx: Ctx, person: Person, **options: Any) -> None:
        auth.set_password(ctx, person.id, PASSWORD)
        self.context = browser.new_context(base_url=base, **options)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.page.goto("/login")
        self.page.get_by_label("Handle").fill(person.handle)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(base + "/")

    def close(self) -> None:
        self.context.close()


def test_a_proposal_goes_from_filing_to_a_released_model(
    browser: Any,
    live_url: str,
    ctx: Ctx,
    community: dict[str, Person],
    clock: FixedClock,
    digits_federation: str,
    pass_time: PassTime,
) -> None:
    from playwright.sync_api import expect

    # a member files a proposal through the form
    ann = Session(browser, live_url, ctx, community["ann"])
    page = ann.page
    page.get_by_role("link", name="Table a proposal").click()
    page.get_by_role("link", name="A category").click()
    page.get_by_role("button", name="Submit for triage").click()
    expect(page.locator("#title-error")).to_be_visible()  # the server's error, next to the field
    page.get_by_label("Title").fill("Forget the digit 7")
    page.get_by_label("Category name").fill("7")
    page.get_by_label("Rationale").fill("Sevens were collected without consent.")
    shot(page, "new-proposal")
    page.get_by_role("button", name="Submit for triage").click()
    expect(page.locator(".flash")).to_contain_text("is submitted")
    pid = int(page.url.rsplit("/", 1)[1])
    page.get_by_label("Add to the discussion").fill("Happy to answer questions.")
    page.get_by_role("button", name="Post comment").click()
    expect(page.locator("#discussion")).to_contain_text("Happy to answer questions.")
    expect(page.get_by_role("button", name="Approve in triage")).to_have_count(0)  # not offered to ann

    # reviewers triage it: it appears on their dashboard, two approvals open the vote
    for handle in ("rev1", "rev2"):
        rev = Session(browser, live_url, ctx, community[handle])
        expect(rev.page.get_by_role("region", name="Awaiting your triage")).to_contain_text(
            "Forget the digit 7"
        )
        rev.page.get_by_role("link", name=f"#{pid} Forget the digit 7").click()
        rev.page.get_by_role("button", name="Approve in triage").click()
        expect(rev.page.locator(".flash")).to_contain_text("triage approval is recorded")
        rev.close()

    # members vote: one in the browser (and changes their mind), the rest through the service
    page.goto("/")
    votes = page.get_by_role("region", name="Open votes you have not cast")
    expect(votes).to_contain_text("Forget the digit 7")
    votes.get_by_role("link", name=f"#{pid} Forget the digit 7").click()
    page.get_by_label("Object").check()
    page.get_by_role("button", name="Cast vote").click()
    expect(page.locator("#vote-reason-error")).to_contain_text("needs a reason")
    page.get_by_label("Approve").check()
    page.get_by_role("button", name="Cast vote").click()
    expect(page.locator(".flash")).to_contain_text("Your vote is recorded")
    expect(page.locator("#tally")).to_contain_text("Approve")
    shot(page, "proposal-voting")
    for handle in ("bob", "cat", "dan", "rev3", "coun3"):
        proposals.vote(ctx, pid, community[handle].actor, "approve", None)

    # the vote closes when its deadline passes; the council ratifies
    pass_time(days=8)
    coun = Session(browser, live_url, ctx, community["coun1"])
    expect(coun.page.get_by_role("region", name="Council decisions pending")).to_contain_text(
        "Forget the digit 7"
    )
    shot(coun.page, "dashboard-council")
    coun.page.goto(f"/proposals/{pid}")
    coun.page.get_by_role("button", name="Ratify").click()
    expect(coun.page.locator(".flash")).to_contain_text("ratification is recorded")
    coun.close()
    coun = Session(browser, live_url, ctx, community["coun2"])
    coun.page.goto(f"/proposals/{pid}")
    coun.page.get_by_role("button", name="Ratify").click()
    expect(coun.page.locator(".meta .state")).to_have_text("appeal window")
    coun.close()

    # nobody appeals: when the window closes the proposal is approved
    pass_time(days=4)
    page.goto(f"/proposals/{pid}")
    # (approved, or already job queued: the job queue picks approved proposals up)
    expect(page.locator(".meta .state")).to_have_text(re.compile("approved|job queued"))
    expect(page.locator(".timeline")).to_contain_text(
        re.compile(r"close appeal window\s+appeal window → approved")
    )
    shot(page, "proposal-approved")

    # an audit entry of this proposal, its proof checked by the browser itself
    page.locator(".timeline a.proof").first.click()
    expect(page.locator("#browser-check")).to_contain_text("Verified in your browser", timeout=10_000)
    expect(page.locator("#server-check")).to_contain_text("it verifies")
    shot(page, "audit-entry")
    ann.close()

    # the job: a moderator finds it on the dashboard and watches it run (htmx polls its progress)
    register_base(ctx, digits_federation)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    mod = Session(browser, live_url, ctx, community["rev1"])
    running = mod.page.get_by_role("region", name="Running jobs")
    expect(running).to_contain_text(f"Job #{job['id']}")
    running.get_by_role("link", name=f"Job #{job['id']}").click()
    expect(mod.page.locator("#progress .job-state")).to_have_text("queued")
    worker = threading.Thread(target=Worker(ctx, "ui-test").run_once, daemon=True)
    worker.start()
    # the panel refreshes by itself, and the whole page reloads once the job is final
    expect(mod.page.locator("#progress .job-state")).to_have_text(
        "finished · verification passed", timeout=60_000
    )
    worker.join(timeout=60)
    expect(mod.page.locator("#progress")).to_contain_text("PASS")
    expect(mod.page.locator("table.attempts")).to_contain_text("verified")
    expect(mod.page.locator("table.verdicts")).to_contain_text("forget_accuracy_gap")
    shot(mod.page, "job-done")

    # the report and the verdict on the model version's page
    mod.page.locator("#progress").get_by_role("link", name=re.compile("^mv-")).click()
    expect(mod.page.locator("#verdict")).to_contain_text("Verdict: allow")
    expect(mod.page.locator("#report table.verdicts")).to_contain_text("pass")
    plots = mod.page.frame_locator("iframe.report").locator("svg")
    expect(plots.first).to_be_visible()  # the HTML report's plots, embedded
    # the report page: rendered once by the worker and stored with the model versions, accessible (issue 19)
    report = mod.page.frame_locator("iframe.report")
    expect(report.get_by_role("table", name=re.compile("^Every measured metric"))).to_be_visible()
    expect(report.get_by_role("columnheader", name="retrained")).to_have_count(1)
    expect(report.get_by_role("img").first).to_have_accessible_name(re.compile(r"\w"))
    assert len(list((ctx.settings.artifact_dir / "reports").glob("*.html"))) == 1
    expect(mod.page.get_by_role("button", name=re.compile("^Release"))).to_have_count(0)  # the council does
    mod.page.locator("iframe.report").scroll_into_view_if_needed()
    shot(mod.page, "model-version")
    version = mod.page.url.rsplit("/", 1)[1]
    mod.close()

    # a council member releases it: the proposal is released too
    coun = Session(browser, live_url, ctx, community["coun3"])
    expect(coun.page.get_by_role("region", name="Candidates awaiting release")).to_contain_text(version)
    coun.page.goto(f"/models/{version}")
    coun.page.get_by_role("button", name=f"Release {version}").click()
    expect(coun.page.locator(".flash")).to_contain_text("is released")
    coun.page.goto("/models")
    expect(coun.page.locator("ul.tree ul.tree")).to_contain_text(version)  # under the base version
    shot(coun.page, "model-lineage")
    coun.close()
    assert proposals.get_detail(ctx, pid).state == "released"


def test_forms_work_without_javascript_and_on_a_phone(
    browser: Any, live_url: str, ctx: Ctx, community: dict[str, Person]
) -> None:
    from playwright.sync_api import expect

    p = proposals.create(
        ctx,
        ProposalCreate(
            title="Forget the canary", target={"kind": "category", "category": "canary"}, submit=True
        ),
        community["bob"].actor,
    )
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
    rev = Session(browser, live_url, ctx, community["rev1"], java_script_enabled=False, **phone)
    page = rev.page
    page.goto(f"/proposals/{p.id}")
    page.get_by_role("button", name="Reject in triage").click()
    expect(page.locator("#triage_reject-reason-error")).to_contain_text("needs a reason")
    page.get_by_label("Why reject it").fill("Out of scope.")
    page.get_by_role("button", name="Reject in triage").click()
    expect(page.locator(".meta .state")).to_have_text("appeal window")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page scrolls sideways on a phone ({width}px)"
    shot(page, "proposal-phone")
    page.goto("/proposals?state=appeal_window")
    expect(page.locator("#results")).to_contain_text("Forget the canary")
    rev.close()
