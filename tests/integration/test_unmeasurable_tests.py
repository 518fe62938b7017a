"""Before the vote, the service says which of a proposal's acceptance tests cannot be measured on this
community's model and dataset, and why (issue 19): the API (create, show, the defaults per task), the
proposal form and page, and ``commons proposal show``; the defaults a proposal starts from hold only tests
that can be measured. The dataset here is a published manifest and held-out split (no model is trained)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient

from governance.cli import main
from governance.cli.common import ApiContext
from governance.client import CommonsClient
from governance.db.engine import write_session
from governance.db.registry import ModelVersionRow
from governance.schemas import DataSourceCreate
from governance.services import data_sources
from governance.services.context import Ctx
from governance.settings import Settings
from tests.conftest import Person
from tests.integration.test_ui_browser import Session, browser, shot  # noqa: F401  (the browser fixture)

HASH = "a" * 64
CANARY_TEST = {"metric": "canary_exposure_pvalue", "comparator": ">=", "threshold": 0.05}
MIA_TEST = {"metric": "mia_auc_gap", "comparator": "<=", "threshold": 0.05}
ACCURACY_TEST = {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.05}


def publish_lm_dataset(settings: Settings) -> Path:
    """A community LM's published dataset: two sources on node-0, one of which holds an inserted canary."""
    root = settings.effective_dataset_dir
    (root / "heldout").mkdir(parents=True)
    sources = [
        {"name": "node-0/notes", "file": "node-0/notes.jsonl", "records": 11, "sha256": HASH},
        {"name": "node-0/diary", "file": "node-0/diary.jsonl", "records": 9, "sha256": HASH},
    ]
    manifest = {
        "format": 1,
        "task": "community-lm",
        "categories": ["baking", "chess"],
        "nodes": [{"node": "node-0", "path": "node-0", "sources": sources}],
        "canaries": [
            {"inserted": True, "prefix": "Ann's code is ", "secret": "482916", "source": "node-0/diary"},
            {"inserted": False, "prefix": "Bob's code is ", "secret": "111111", "source": None},
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    held = [
        {"text": f"A note on {c} {i}.", "kind": "note", "category": c}
        for c in ("baking", "chess")
        for i in range(4)
    ]
    (root / "heldout" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    return root


@pytest.fixture
def lm_community(ctx: Ctx, settings: Settings, community: dict[str, Person]) -> dict[str, int]:
    """The dataset above, a registered base model (community-lm) and the two sources registered by ann."""
    publish_lm_dataset(settings)
    settings.base_model_version = "mv-base"
    with write_session(ctx.engine) as s:
        s.add(ModelVersionRow(version="mv-base", content_hash=HASH, task="community-lm", state="released"))
    ann = community["ann"].actor
    return {
        name: data_sources.register(
            ctx, DataSourceCreate(name=name, node_id="node-0", content_hash=HASH), ann
        ).id
        for name in ("notes", "diary")
    }


def _create(client: TestClient[Litestar], who: Person, target: dict[str, Any], tests: Any = None) -> Any:
    body: dict[str, Any] = {"title": "Forget it", "target": target, "submit": False}
    if tests is not None:
        body["acceptance_tests"] = tests
    r = client.post("/api/v1/proposals", json=body, headers=who.auth)
    assert r.status_code == 201, r.text
    return r.json()


def test_the_api_names_the_tests_that_cannot_be_measured_before_the_vote(
    client: TestClient[Litestar], community: dict[str, Person], lm_community: dict[str, int]
) -> None:
    ann = community["ann"]
    notes = {"kind": "data_source", "data_source_id": lm_community["notes"]}
    p = _create(client, ann, notes, [MIA_TEST, CANARY_TEST, ACCURACY_TEST])
    why = p["unmeasurable_tests"]
    assert set(why) == {"canary_exposure_pvalue", "forget_accuracy_gap"}  # mia_auc_gap can be measured
    assert "covers no inserted canary" in why["canary_exposure_pvalue"]
    assert (
        why["forget_accuracy_gap"]
        == "it needs a classifier, and the base model is a language model (community-lm)"
    )
    shown = client.get(f"/api/v1/proposals/{p['id']}", headers=ann.auth).json()
    assert shown["unmeasurable_tests"] == why
    # replacing the test removes the warning (the author may submit either way)
    edited = client.patch(
        f"/api/v1/proposals/{p['id']}", json={"acceptance_tests": [MIA_TEST]}, headers=ann.auth
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["unmeasurable_tests"] == {}
    # the source with a canary: the canary test can be measured
    diary = _create(
        client, ann, {"kind": "data_source", "data_source_id": lm_community["diary"]}, [CANARY_TEST]
    )
    assert diary["unmeasurable_tests"] == {}


def test_defaults_hold_only_tests_this_model_and_dataset_can_measure(
    client: TestClient[Litestar], community: dict[str, Person], lm_community: dict[str, int]
) -> None:
    ann = community["ann"]
    notes = _create(client, ann, {"kind": "data_source", "data_source_id": lm_community["notes"]})
    names = [t["metric"] for t in notes["acceptance_tests"]]
    assert "canary_exposure_pvalue" not in names and "mia_auc_gap_pvalue" in names  # notes holds no canary
    assert notes["unmeasurable_tests"] == {}
    diary = _create(client, ann, {"kind": "data_source", "data_source_id": lm_community["diary"]})
    assert "canary_exposure_pvalue" in [t["metric"] for t in diary["acceptance_tests"]]
    baking = _create(client, ann, {"kind": "category", "category": "baking"})
    names = [t["metric"] for t in baking["acceptance_tests"]]
    assert "forget_perplexity_ratio" in names and "forget_accuracy_gap" not in names
    meta = client.get("/api/v1/metrics").json()
    assert meta["task"] == "community-lm"
    assert [t["metric"] for t in meta["task_defaults"]["category"]] == names
    assert "forget_accuracy_gap" in [t["metric"] for t in meta["defaults"]["category"]]  # every task's
    assert {"classifier", "forget_examples"} == set(
        next(m for m in meta["metrics"] if m["name"] == "forget_accuracy_gap")["needs"]
    )


def test_the_proposal_page_form_and_cli_warn(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], lm_community: dict[str, int]
) -> None:
    from tests.integration.test_ui_pages import sign_in

    ann = community["ann"]
    p = _create(
        client, ann, {"kind": "data_source", "data_source_id": lm_community["notes"]}, [MIA_TEST, CANARY_TEST]
    )
    r = CliRunner().invoke(
        main, ["proposal", "show", str(p["id"])], obj=ApiContext(CommonsClient(client, ann.token))
    )
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if "canary_exposure_pvalue" in x)
    assert "CANNOT BE MEASURED HERE: it measures canaries" in line
    assert "CANNOT" not in next(x for x in r.output.splitlines() if "mia_auc_gap" in x)
    assert "1 test(s) cannot be measured" in r.output

    csrf = sign_in(client, ctx, ann.id, ann.handle)
    page = client.get(f"/proposals/{p['id']}").text
    assert 'class="problem unmeasurable" role="alert"' in page
    assert "1 of these tests cannot be measured" in page and "covers no inserted canary" in page
    # the author removes it on the draft's edit page, which marks it too
    edit = client.get(f"/proposals/{p['id']}/edit").text
    assert 'data-metric="canary_exposure_pvalue"' in edit and 'data-metric="mia_auc_gap"' not in edit
    assert 'id="test_canary_exposure_pvalue" name="test_canary_exposure_pvalue" checked' in edit
    form = {
        "csrf_token": csrf,
        "title": "Forget it",
        "test_mia_auc_gap": "on",
        "cmp_mia_auc_gap": "<=",
        "thr_mia_auc_gap": "0.04",
    }
    r = client.post(f"/proposals/{p['id']}/edit", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    shown = client.get(f"/api/v1/proposals/{p['id']}", headers=ann.auth).json()
    assert shown["acceptance_tests"] == [{**MIA_TEST, "threshold": 0.04, "relative_to_reference": False}]
    assert shown["unmeasurable_tests"] == {}
    assert "cannot be measured" not in client.get(f"/proposals/{p['id']}").text
    none = client.post(f"/proposals/{p['id']}/edit", data={"csrf_token": csrf, "title": "Forget it"})
    assert none.status_code == 422 and "choose at least one acceptance test" in none.text
    form = client.get("/proposals/new?target=category").text
    assert 'data-metric="forget_accuracy_gap"' in form and 'data-metric="forget_perplexity_ratio"' not in form
    assert 'id="test_forget_perplexity_ratio" name="test_forget_perplexity_ratio" checked' in form
    assert 'id="test_forget_accuracy_gap" name="test_forget_accuracy_gap" >' in form  # not a default here


@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_form_warns_in_a_browser_and_the_page_after_submitting(
    browser: Any,  # noqa: F811
    live_url: str,
    ctx: Ctx,
    community: dict[str, Person],
    lm_community: dict[str, int],
) -> None:
    from playwright.sync_api import expect

    ann = Session(browser, live_url, ctx, community["ann"])
    page = ann.page
    page.goto("/proposals/new?target=category")
    row = page.locator("tr", has=page.locator("#test_forget_accuracy_gap"))
    expect(row.locator(".unmeasurable")).to_contain_text("Cannot be measured here: it needs a classifier")
    measurable = page.locator("tr", has=page.locator("#test_forget_perplexity_ratio"))
    expect(measurable.locator(".unmeasurable")).to_have_count(0)
    shot(page, "proposal-form-unmeasurable")
    # the author files it anyway, with the unmeasurable test switched on: allowed, and the page says so
    page.get_by_label("Title").fill("Forget baking")
    page.get_by_label("Category name").fill("baking")
    page.locator("#test_forget_accuracy_gap").check()
    page.locator("#thr_forget_accuracy_gap").fill("0.05")
    page.get_by_role("button", name="Submit for triage").click()
    alert = page.locator(".unmeasurable[role=alert]")
    expect(alert).to_contain_text("1 of these tests cannot be measured")
    expect(alert).to_contain_text("forget_accuracy_gap")
    expect(alert).not_to_contain_text("forget_perplexity_ratio")
    ann.close()
