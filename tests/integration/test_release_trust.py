"""Issue 15, section 1: the gate cannot be talked into "allow". Each bypass, by each role, is refused; an
offline check of a tampered bundle fails; a released version's files verify with model-signing's own
verifier and fail it after a one-byte change."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient

from governance.bundle_verify import verify_bundle
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_release_gate import (  # _store: stored versions and signing, autouse
    TESTS,
    _store,  # noqa: F401
    attach,
    h,
    mv,
    proposal_in_state,
    register,
    report,
    verdict,
)
from tests.trust import foreign_signed, signed

Client = TestClient[Litestar]
ROLES = ("admin", "coun1", "rev1", "ann")


def post_report(client: Client, who: Person, name: str, body: dict[str, Any]) -> int:
    r = client.post(f"/api/v1/models/{mv(name)}/verification", json={"report": body}, headers=who.auth)
    return r.status_code


@pytest.mark.parametrize("role", ROLES)
def test_a_hand_written_or_foreign_signed_report_is_refused_whoever_posts_it(
    client: Client, ctx: Ctx, community: dict[str, Person], role: str
) -> None:
    who, admin = community[role], community["admin"]
    pid = proposal_in_state(ctx, community["bob"], "verification_failed")
    register(client, admin, "cand", proposal_id=pid)
    forged = report("cand", passed=True)  # the real content hash and policy hash: both computable by anyone
    assert post_report(client, who, "cand", forged) == 403
    assert post_report(client, who, "cand", foreign_signed(forged)) == 403
    tampered = signed(ctx, report("cand", passed=False))
    tampered["passed"] = True  # altered after signing
    assert post_report(client, who, "cand", tampered) == 403
    assert (
        client.post(f"/api/v1/models/{mv('cand')}/verification", json={"report": forged}).status_code == 401
    )
    # even a genuinely signed passing report cannot release a version whose proposal failed verification
    attach(client, admin, "cand", report("cand", passed=True))
    v = verdict(client, community["ann"], "cand")
    assert v["verdict"] == "deny" and "verification_failed" in v["reasons"][0]
    assert client.post(f"/api/v1/models/{mv('cand')}/release", headers=admin.auth).status_code == 409
    assert client.get(f"/api/v1/models/{mv('cand')}", headers=admin.auth).json()["state"] != "released"


@pytest.mark.parametrize("role", ("admin", "coun1"))
def test_a_version_not_in_the_store_or_altered_is_never_allowed(
    client: Client, ctx: Ctx, community: dict[str, Person], role: str
) -> None:
    who, ann = community[role], community["ann"]
    body = {"version": mv("other"), "content_hash": h("other"), "task": "digits", "kind": "train"}
    assert client.post("/api/v1/models", json=body, headers=community["admin"].auth).status_code == 201
    v = verdict(client, ann, "other")
    assert v["verdict"] == "deny" and "not in the artifact store" in v["reasons"][0]
    assert client.post(f"/api/v1/models/{mv('other')}/release", headers=who.auth).status_code == 409
    assert client.post(f"/api/v1/models/{mv('other')}/verify", headers=who.auth).status_code == 409
    # a stored version verified, then altered on disk: the verdict re-hashes the bytes
    register(client, community["admin"], "plain", kind="train")
    attach(client, community["admin"], "plain", report("plain", passed=True, tests=[]))
    assert verdict(client, ann, "plain")["verdict"] == "allow"
    weights = ctx.settings.artifact_dir / "versions" / mv("plain") / "model.safetensors"
    os.chmod(weights, 0o644)
    weights.write_bytes(weights.read_bytes() + b"!")
    v = verdict(client, ann, "plain")
    assert v["verdict"] == "deny" and "no longer match" in v["reasons"][0]


def test_obligations_follow_the_data(client: Client, ctx: Ctx, community: dict[str, Person]) -> None:
    admin, ann = community["admin"], community["ann"]
    register(client, admin, "orig", kind="train")
    attach(client, admin, "orig", report("orig", passed=True, tests=[]))
    assert verdict(client, ann, "orig")["verdict"] == "allow"
    pid = proposal_in_state(ctx, community["bob"], "approved")
    # the pre-unlearning model, its other descendants and a version without lineage are all denied
    register(client, admin, "sibling", kind="train", parent_version=mv("orig"))
    attach(client, admin, "sibling", report("sibling", passed=True, tests=[]))
    register(client, admin, "loose", kind="train")
    for name in ("orig", "sibling", "loose"):
        v = verdict(client, ann, name)
        assert v["verdict"] == "deny" and f"proposal {pid} was approved" in v["reasons"][0], v
        assert {"id": pid, "role": "unforgotten"}.items() <= {**v["proposals"][-1]}.items()
    # once a verified unlearning descends from it, its descendants are judged by their reports again
    with_state = proposal_in_state  # the proposal's verification passes
    del with_state
    from sqlmodel import select

    from governance.db.engine import write_session
    from governance.db.models import Proposal

    register(client, admin, "unl", kind="unlearn", proposal_id=pid, parent_version=mv("orig"))
    with write_session(ctx.engine) as s:
        p = s.exec(select(Proposal).where(Proposal.id == pid)).one()
        p.state = "verified"
        s.add(p)
    attach(client, admin, "unl", report("unl", passed=True))
    assert verdict(client, ann, "unl")["verdict"] == "allow"
    register(client, admin, "next", kind="train", parent_version=mv("unl"))
    attach(client, admin, "next", report("next", passed=True, tests=[]))
    assert verdict(client, ann, "next")["verdict"] == "allow"
    assert verdict(client, ann, "orig")["verdict"] == "deny"


def _override(client: Client, who: Person, name: str) -> Any:
    return client.post(
        f"/api/v1/models/{mv(name)}/override",
        json={"reason": "a court order requires this exact model to ship"},
        headers=who.auth,
    )


def test_an_override_is_a_council_majority_and_shows_as_one(
    client: Client, ctx: Ctx, community: dict[str, Person], tmp_path: Path
) -> None:
    from governance.cli.gate import release

    admin, ann = community["admin"], community["ann"]
    register(client, admin, "ov", kind="train")
    for role in ("admin", "rev1", "ann"):
        assert _override(client, community[role], "ov").status_code == 403
    r = _override(client, community["coun1"], "ov")
    assert r.status_code == 201 and r.json()["state"] == "open"
    assert verdict(client, ann, "ov")["verdict"] == "pending"  # one of three is no majority
    assert _override(client, community["coun1"], "ov").status_code == 409
    r = _override(client, community["coun2"], "ov")
    assert r.status_code == 201 and r.json()["state"] == "granted"
    v = verdict(client, ann, "ov")
    assert v["verdict"] == "allow" and v["override"]["id"] == r.json()["id"]
    assert v["reasons"][0].startswith("council override") and "overridden (pending)" in v["reasons"][1]
    page = client.get(f"/models/{mv('ov')}", headers=ann.auth)
    assert page.status_code == 200 and "override" in page.text.lower()

    b = client.get(f"/api/v1/releases/{mv('ov')}/bundle", headers=ann.auth).json()
    assert verify_bundle(b) == [] and b["overrides"][0]["state"] == "granted"
    out = tmp_path / "b.json"
    out.write_text(json.dumps(b))
    res = CliRunner().invoke(release, ["verify-bundle", str(out)])
    assert res.exit_code == 0 and res.stdout.startswith("OVERRIDE:"), res.output
    hidden = json.loads(json.dumps(b))
    hidden["verdict"]["override"] = None
    hidden["overrides"] = []
    assert any("hides" in p for p in verify_bundle(hidden))
    out.write_text(json.dumps(hidden))
    assert CliRunner().invoke(release, ["verify-bundle", str(out)]).exit_code == 1


def test_a_tampered_bundle_fails_the_offline_check(
    client: Client, ctx: Ctx, community: dict[str, Person]
) -> None:
    admin, ann = community["admin"], community["ann"]
    pid = proposal_in_state(ctx, community["bob"], "verified")
    register(client, admin, "b1", proposal_id=pid)
    attach(client, admin, "b1", report("b1", passed=False))
    attach(client, admin, "b1", report("b1", passed=True))
    b = client.get(f"/api/v1/releases/{mv('b1')}/bundle", headers=ann.auth).json()
    assert verify_bundle(b) == []
    swapped = json.loads(json.dumps(b))  # another genuinely signed report on the same model
    swapped["report"] = signed(ctx, {**report("b1", passed=True), "summary": "PASS (hand-edited)"})
    assert any("differs from the one the audit log recorded" in p for p in verify_bundle(swapped))
    foreign = json.loads(json.dumps(b))
    foreign["report"] = foreign_signed(b["report"])
    assert verify_bundle(foreign)
    trusted = b["report_verifier_key"]
    assert verify_bundle(b, trusted_verifier=trusted) == []


def test_a_released_version_verifies_with_model_signing_and_fails_after_one_byte(
    client: Client, ctx: Ctx, community: dict[str, Person], tmp_path: Path
) -> None:
    import shutil

    from model_signing import verifying

    admin, ann = community["admin"], community["ann"]
    pid = proposal_in_state(ctx, community["bob"], "verified")
    register(client, admin, "rel", proposal_id=pid)
    attach(client, admin, "rel", report("rel", passed=True, tests=TESTS))
    r = client.post(f"/api/v1/models/{mv('rel')}/release", headers=admin.auth)
    assert r.status_code == 201, r.text
    proposal = client.get(f"/api/v1/proposals/{pid}", headers=ann.auth).json()
    assert proposal["state"] == "released"  # in the release's transaction
    b = client.get(f"/api/v1/releases/{mv('rel')}/bundle", headers=ann.auth).json()
    sig = b["model_signature"]
    assert sig["format"].startswith("openssf-model-signing")
    keys = client.get("/api/v1/audit/verifier-key").json()
    assert keys["model_signing_public_key_pem"] == sig["public_key_pem"]
    assert (
        keys["verifier_key"]
        == b["report_verifier_key"]
        != client.get("/api/v1/audit/public-key").json()["verifier_key"]
    )
    model = tmp_path / "model"
    shutil.copytree(ctx.settings.artifact_dir / "versions" / mv("rel"), model)
    (tmp_path / "model.sig").write_text(json.dumps(sig["signature"]))
    (tmp_path / "key.pub").write_text(sig["public_key_pem"])
    config = verifying.Config()  # type: ignore[no-untyped-call]
    config.use_elliptic_key_verifier(public_key=tmp_path / "key.pub")
    config.verify(model, tmp_path / "model.sig")  # model-signing's own verifier, no Commons code
    weights = model / "model.safetensors"
    os.chmod(weights, 0o644)
    data = bytearray(weights.read_bytes())
    data[0] ^= 1
    weights.write_bytes(bytes(data))
    again = verifying.Config()  # type: ignore[no-untyped-call]
    again.use_elliptic_key_verifier(public_key=tmp_path / "key.pub")
    with pytest.raises(ValueError):  # model-signing's verifier refuses the changed file
        again.verify(model, tmp_path / "model.sig")
