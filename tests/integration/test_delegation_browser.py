"""Delegation in a real browser (Playwright and Debian's chromium, as tests/integration/test_ui_browser.py):
a member delegates from their page, sees a refused delegation's error next to its field, sees the votes they
carry, and revokes; with JavaScript off and on a phone's width."""

from __future__ import annotations

from typing import Any

import pytest

from governance.schemas import ProposalCreate
from governance.services import proposals
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_ui_browser import Session, browser, shot  # noqa: F401  (the browser fixture)

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def test_a_member_delegates_sees_what_is_carried_and_revokes(
    browser: Any,  # noqa: F811
    live_url: str,
    ctx: Ctx,
    community: dict[str, Person],
) -> None:
    from playwright.sync_api import expect

    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
    ann = Session(browser, live_url, ctx, community["ann"], java_script_enabled=False, **phone)
    page = ann.page
    page.goto("/me")
    section = page.locator("#delegation")
    section.get_by_label("To (a member's handle)").fill("ann")
    section.get_by_role("button", name="Delegate").click()
    expect(page.locator("#delegate-error")).to_contain_text("yourself")
    page.get_by_label("To (a member's handle)").fill("cat")
    page.get_by_label("Which polls").select_option("category")
    page.get_by_label("Topic").fill("cooking")
    page.get_by_role("button", name="Delegate").click()
    expect(page.locator(".flash")).to_contain_text("goes to @cat")
    expect(page.locator("#delegation table")).to_contain_text("category cooking")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page scrolls sideways on a phone ({width}px)"
    shot(page, "delegation-phone")

    p = proposals.create(
        ctx,
        ProposalCreate(
            title="Forget cooking", target={"kind": "category", "category": "cooking"}, submit=True
        ),
        community["coun1"].actor,
    )
    for rev in ("rev1", "rev2"):
        proposals.triage(ctx, p.id, community[rev].actor, "approve", None)
    cat = Session(browser, live_url, ctx, community["cat"])
    cat.page.goto("/me")
    expect(cat.page.locator("#delegation")).to_contain_text("you carry 1 vote")
    cat.page.goto(f"/proposals/{p.id}")
    expect(cat.page.locator("#h-poll-delegation")).to_be_visible()
    expect(cat.page.get_by_text("You carry 1 delegated vote here")).to_be_visible()
    cat.close()

    page.goto(f"/proposals/{p.id}")
    expect(page.get_by_text("your vote goes to @cat")).to_be_visible()
    page.goto("/me/delegations")
    page.get_by_role("button", name="Revoke the delegation to @cat on category cooking").click()
    expect(page.locator("body")).to_contain_text("yours again in open polls")
    expect(page.locator("#delegation")).to_contain_text("you delegate none")
    ann.close()
