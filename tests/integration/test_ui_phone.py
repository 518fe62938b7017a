"""At a phone's width (390 px, chromium) no page scrolls sideways, the acceptance-test editor keeps every
threshold on screen, the ballot is one tap away, and the header's links are big enough to tap."""

from __future__ import annotations

from typing import Any

import pytest

from governance.schemas import ProposalCreate
from governance.services import proposals
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_ui_browser import Session, browser  # noqa: F401  (the module's chromium fixture)

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def test_pages_fit_a_phone(browser: Any, live_url: str, ctx: Ctx, community: dict[str, Person]) -> None:  # noqa: F811
    p = proposals.create(
        ctx,
        ProposalCreate(
            title="Forget the canary", target={"kind": "category", "category": "canary"}, submit=True
        ),
        community["bob"].actor,
    )
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, p.id, community[r].actor, "approve", None)
    ann = Session(browser, live_url, ctx, community["ann"], **PHONE)
    page = ann.page
    for path in (
        "/proposals/new?target=data_source",
        "/proposals/new?target=category",
        "/proposals/new?target=behaviour",
        "/audit",
        "/me",
        f"/proposals/{p.id}",
    ):
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 392, f"{path} scrolls sideways on a phone ({width}px)"
        if path.startswith("/proposals/new"):
            for box in (b for b in [page.locator("input[name^=thr_]").first.bounding_box()] if b):
                assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (path, box)
    # the ballot is one tap away from the top of the proposal page
    page.goto(f"/proposals/{p.id}")
    page.get_by_role("link", name="Cast your vote").click()
    assert page.url.endswith("#ballot")
    heights = page.evaluate(
        "[...document.querySelectorAll('.top nav a')].map(a => a.getBoundingClientRect().height)"
    )
    assert heights and min(heights) >= 24, heights
    ann.close()
