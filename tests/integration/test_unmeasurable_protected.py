"""Issue 19: the API's pre-vote warning (``unmeasurable_tests``) and the defaults count the protected strings a
data source's owner registered with ``commons data-source register --protected``: a source without manifest
canaries but with a non-empty commitment keeps its canary and extraction tests unwarned (its node checks the
strings like canaries); the same source registered without one is still warned."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient

from governance.schemas import DataSourceCreate
from governance.services import data_sources
from governance.services.context import Ctx
from governance.settings import Settings
from tests.conftest import Person
from tests.integration.test_unmeasurable_tests import CANARY_TEST, HASH, _create, publish_lm_dataset

EXTRACTION_TEST = {"metric": "extraction_rate", "comparator": "<=", "threshold": 0.0}


def test_a_registered_protected_list_is_not_warned_as_holding_no_canary(
    client: TestClient[Litestar], ctx: Ctx, settings: Settings, community: dict[str, Person]
) -> None:
    from governance.db.engine import write_session
    from governance.db.registry import ModelVersionRow

    publish_lm_dataset(settings)  # node-0/notes holds no inserted canary
    settings.base_model_version = "mv-base"
    with write_session(ctx.engine) as s:
        s.add(ModelVersionRow(version="mv-base", content_hash=HASH, task="community-lm", state="released"))
    ann, bob = community["ann"], community["bob"]

    def register(who: Person, **protected: object) -> int:
        data = DataSourceCreate(name="notes", node_id="node-0", content_hash=HASH, **protected)  # type: ignore[arg-type]
        return data_sources.register(ctx, data, who.actor).id

    committed = register(ann, protected_count=2, protected_sha256="b" * 64)
    bare = register(bob)
    tests = [CANARY_TEST, EXTRACTION_TEST]

    p = _create(client, ann, {"kind": "data_source", "data_source_id": committed}, tests)
    assert p["unmeasurable_tests"] == {}
    shown = client.get(f"/api/v1/proposals/{p['id']}", headers=ann.auth).json()
    assert shown["unmeasurable_tests"] == {}
    defaults = _create(client, ann, {"kind": "data_source", "data_source_id": committed})
    assert "canary_exposure_pvalue" in [t["metric"] for t in defaults["acceptance_tests"]]

    q = _create(client, bob, {"kind": "data_source", "data_source_id": bare}, tests)
    assert set(q["unmeasurable_tests"]) == {"canary_exposure_pvalue", "extraction_rate"}
    assert "covers no inserted canary" in q["unmeasurable_tests"]["canary_exposure_pvalue"]
