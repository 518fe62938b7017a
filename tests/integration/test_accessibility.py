"""An axe-core scan (axe-playwright-python, in chromium) of one page of every type of the web UI, on the
community the UI tests build (tests/integration/test_ui_pages.py::populate) plus proposals in every stage
family: the test fails on any violation and lists each one (rule, impact, target selector, page). Every GET
route of the UI is visited (a new page type is scanned without editing this file); the htmx fragments are
scanned inside the pages that hold them. A few pages are scanned again at a phone's width (390 px).
docs/ui.md ("Accessibility") says what is scanned."""

from __future__ import annotations

from typing import Any

import pytest

from governance.domain.clock import FixedClock
from governance.schemas import ProposalCreate
from governance.services import lifecycle, members, outcomes, proposals
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_jobs import approved_proposal
from tests.integration.test_ui_browser import Session, browser  # noqa: F401  (the chromium fixture)
from tests.integration.test_ui_pages import UI_PATHS, _fill, populate
from tests.integration.test_ui_phone import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

# axe-core's default rules (WCAG 2.0, 2.1 and 2.2 A and AA, and best practices) and WCAG 2.2's target size
# (24 by 24 CSS pixels, or spaced as far; off by default in axe-core)
OPTIONS = {"resultTypes": ["violations"], "rules": {"target-size": {"enabled": True}}}

# GET routes that answer an htmx fragment, scanned as part of their page (the tally, a job's progress)
FRAGMENTS = {"/proposals/{proposal_id:int}/tally", "/jobs/{job_id:int}/progress"}


def _filed(ctx: Ctx, who: Person, title: str) -> int:
    return proposals.create(
        ctx,
        ProposalCreate(title=title, target={"kind": "category", "category": "spam"}, submit=True),
        who.actor,
    ).id


def _stages(ctx: Ctx, people: dict[str, Person], clock: FixedClock) -> dict[str, int]:
    """Proposals in the stage families the community lacks: closed with an outcome statement, an appeal
    window after a triage rejection, an appeal hearing, a rejection whose statement is not written yet."""
    closed = approved_proposal(ctx, clock, people, title="Forget the spam folder")
    outcomes.write(
        ctx,
        closed,
        people["coun1"].actor,
        "Spam is forgotten.",
        "Six members approved and the council ratified.",
        "The job runs; the verified version is released.",
    )
    ids = populate(ctx, people, clock)  # its sweeps close what is due; nothing is swept after this
    window = _filed(ctx, people["ann"], "Forget the weather chatter")
    proposals.triage(ctx, window, people["rev1"].actor, "reject", "not a harm")
    hearing = _filed(ctx, people["bob"], "Forget the phone numbers")
    proposals.triage(ctx, hearing, people["rev1"].actor, "reject", "out of scope")
    proposals.appeal(ctx, hearing, people["bob"].actor, "phone numbers are personal data")
    rejected = _filed(ctx, people["cat"], "Forget the jokes")
    proposals.triage(ctx, rejected, people["rev2"].actor, "reject", "nothing to forget")
    clock.advance(days=ctx.settings.appeal_days, seconds=1)
    lifecycle.sweep(ctx)
    assert proposals.get_detail(ctx, rejected).state == "rejected"
    window = _filed(ctx, people["ann"], "Forget the weather chatter, again")
    proposals.triage(ctx, window, people["rev1"].actor, "reject", "still not a harm")
    assert proposals.get_detail(ctx, hearing).state == "council_review"
    # the admin also reviews and sits on the council: every form of every page is on screen
    members.set_roles(ctx, people["admin"].id, ["admin", "reviewer", "council"])
    return {**ids, "closed": closed, "window": window, "hearing": hearing, "rejected": rejected}


def _pages(ids: dict[str, Any]) -> list[str]:
    paths = [_fill(p, ids) for p in UI_PATHS if p not in FRAGMENTS and p not in ("/login", "/password/set")]
    paths += [
        "/proposals?state=voting",
        *(f"/proposals/new?target={kind}" for kind in ("data_source", "category", "behaviour")),
        *(
            f"/proposals/{ids[k]}"
            for k in ("behaviour_id", "election_id", "draft_id", "verified_proposal_id")
        ),
        *(f"/proposals/{ids[k]}" for k in ("closed", "window", "hearing", "rejected")),
        f"/jobs/{ids['running_job_id']}",
        f"/jobs/{ids['failed_job_id']}",
        "/proposals/999999",  # the not-found page
        "/no-such-page",
    ]
    return list(dict.fromkeys(paths))


def _violations(page: Any, where: str) -> list[str]:
    """Every axe-core violation on the page as it is now: rule, impact, target selectors, page."""
    results = page.evaluate("options => axe.run(document, options)", OPTIONS)
    return [
        f"{where}: {v['id']} ({v['impact']}) at {'; '.join(' '.join(n['target']) for n in v['nodes'])}: {v['help']}"
        for v in results["violations"]
    ]


def _scan(page: Any, path: str) -> list[str]:
    page.goto(path)
    return _violations(page, path)


def _with_axe(context: Any) -> Any:
    """Every page the context loads from now on carries axe-core (the package's bundled copy)."""
    from axe_playwright_python.sync_playwright import Axe

    context.add_init_script(script=Axe().axe_script)
    return context


def test_no_page_has_an_axe_violation(
    browser: Any,  # noqa: F811
    live_url: str,
    ctx: Ctx,
    community: dict[str, Person],
    clock: FixedClock,
) -> None:
    ids = _stages(ctx, community, clock)
    found: list[str] = []

    # signed out: sign-in, set-password, the public audit log
    visitor = _with_axe(browser.new_context(base_url=live_url))
    page = visitor.new_page()
    for path in ("/login", "/password/set?token=not-a-token", "/audit/1"):
        found += _scan(page, path)
    # the scan is live: markup that breaks three rules is reported (a scan that finds nothing proves nothing)
    tiny = '<button style="all: unset; display: inline-block; width: 8px; height: 8px">a</button>'
    page.evaluate(
        "html => document.querySelector('main').insertAdjacentHTML('beforeend', html)",
        f"<img src=x><input><p>{tiny}{tiny}</p>",
    )
    control = {line.split(": ")[1].split(" ")[0] for line in _violations(page, "control")}
    assert {"image-alt", "label", "target-size"} <= control, control
    visitor.close()

    admin = Session(browser, live_url, ctx, community["admin"])
    _with_axe(admin.context)
    pages = _pages(ids)
    for path in pages:
        found += _scan(admin.page, path)
    # pages with errors next to their fields: a refused proposal and a refused outcome statement
    admin.page.goto("/proposals/new?target=category")
    admin.page.get_by_role("button", name="Submit for triage").click()
    found += _violations(admin.page, "/proposals/new (refused)")
    admin.page.goto(f"/proposals/{ids['rejected']}")
    admin.page.get_by_role("button", name="Publish the outcome").click()
    assert admin.page.locator("#outcome-decided-error").count() == 1
    found += _violations(admin.page, f"/proposals/{ids['rejected']}/outcome (refused)")
    admin.close()

    phone = Session(browser, live_url, ctx, community["ann"], **PHONE)
    _with_axe(phone.context)
    # the audit log filtered to a few entries: its layout, not fifty copies of one row
    phone_pages = ("/", f"/proposals/{ids['proposal_id']}", "/proposals/new?target=category", "/me")
    for path in (*phone_pages, "/audit?action=proposal.outcome"):
        found += [f"390 px {v}" for v in _scan(phone.page, path)]
    phone.close()

    assert len(pages) >= 35, pages
    assert not found, f"{len(found)} axe-core violation(s):\n" + "\n".join(found)
