"""Adding a method or a metric touches no service, template or API module: a toy method and a toy metric,
registered with unlearning.contract (and their implementations with the library), are listed by the API,
offered by the UI's retry form, accepted in a proposal and on a job retry, and validated the same way by the
API, the UI and the library. The web process never loads torch or Flower to know them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from governance.domain.clock import FixedClock
from governance.services import jobs
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_ui_pages import error_of, populate_jobs, sign_in
from unlearning import contract
from unlearning.contract import MethodSpec, MetricSpec, setting


@dataclass
class ToySettings:
    strength: float = setting(1.0, ge=0.0, le=10.0, help="how hard the toy forgets")
    mode: str = setting("gentle", choices=("gentle", "firm"), help="the toy's manner")


TOY_METHOD = MethodSpec("toy_method", "a toy method that returns the model unchanged", ToySettings)
TOY_METRIC = MetricSpec("toy_metric", "utility", "a toy metric (always 0)", frozenset({"category"}), "lower")


@pytest.fixture
def toys() -> Iterator[None]:
    """The toy method and metric, registered as a plug-in registers them (and removed afterwards)."""
    from unlearning.methods import METHODS, register
    from unlearning.methods.base import MethodContext, UnlearningMethod
    from unlearning.verification.registry import METRIC_FUNCTIONS, Verification, metric, result

    contract.register_method_spec(TOY_METHOD)
    contract.register_metric(TOY_METRIC)
    try:

        @register
        class Toy(UnlearningMethod):
            name = "toy_method"

            def run(self, ctx: MethodContext) -> tuple[Any, dict[str, Any]]:
                return ctx.original, {"strength": self.config.strength}

        @metric("toy_metric")
        def toy_metric(v: Verification) -> Any:
            return result("toy_metric", value=0.0)

        yield
    finally:
        METHODS.pop("toy_method", None)
        METRIC_FUNCTIONS.pop("toy_metric", None)
        contract.METHOD_SPECS.pop("toy_method", None)
        contract.METRICS.pop("toy_metric", None)


def test_toy_method_and_metric_reach_the_api_the_ui_and_a_job(
    toys: None, client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person], clock: FixedClock
) -> None:
    rev = community["rev1"]
    # the API lists them, with the method's settings schema
    methods = client.get("/api/v1/methods", headers=rev.auth).json()
    toy = next(m for m in methods["methods"] if m["name"] == "toy_method")
    assert toy["settings"]["strength"] == {
        "type": "number",
        "nullable": False,
        "default": 1.0,
        "help": "how hard the toy forgets",
        "minimum": 0.0,
        "maximum": 10.0,
    }
    assert toy["settings"]["mode"]["choices"] == ["gentle", "firm"]
    assert methods["default"] == "gradient_ascent_ewc"
    metrics = client.get("/api/v1/metrics", headers=rev.auth).json()["metrics"]
    assert {
        "name": "toy_metric",
        "description": "a toy metric (always 0)",
        "target_kinds": ["category"],
        "needs": [],  # declares nothing: measurable on every model and dataset
    } in metrics

    # a proposal may name the toy metric (for the target kinds it applies to)
    body = {
        "title": "Forget digit 5 (toy test)",
        "target": {"kind": "category", "category": "5"},
        "acceptance_tests": [{"metric": "toy_metric", "comparator": "<=", "threshold": 0.1}],
    }
    r = client.post("/api/v1/proposals", json=body, headers=community["bob"].auth)
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/proposals",
        json={**body, "target": {"kind": "behaviour", "examples": [{"prompt": "a", "completion": "b"}]}},
        headers=community["bob"].auth,
    )
    assert r.status_code == 422 and "does not apply to behaviour targets" in r.json()["detail"]

    # the UI's retry form offers the toy method
    ids = populate_jobs(ctx, community)
    failed = ids["failed_job_id"]
    token = sign_in(client, ctx, rev.id, "rev1")
    page = client.get(f"/jobs/{failed}").text
    assert '<option value="toy_method"' in page

    # the UI and the API refuse the same out-of-bounds setting, by name
    r = client.post(
        f"/jobs/{failed}/retry",
        data={"method": "toy_method", "method_config": '{"strength": 11}', "csrf_token": token},
    )
    assert r.status_code == 422
    assert "setting &#39;strength&#39; of method toy_method must be &lt;= 10" in (
        error_of(r.text, "retry-method_config") or ""
    )
    api = client.post(
        f"/api/v1/jobs/{failed}/retry",
        json={"method": "toy_method", "method_config": {"strength": 11}},
        headers=rev.auth,
    )
    assert api.status_code == 422 and api.json()["field"] == "method_config"
    assert "setting 'strength' of method toy_method must be <= 10" in api.json()["detail"]
    api = client.post(
        f"/api/v1/jobs/{failed}/retry",
        json={"method": "toy_method", "method_config": {"mode": "wild"}},
        headers=rev.auth,
    )
    assert api.status_code == 422 and "unknown value 'wild' for setting 'mode'" in api.json()["detail"]

    # ... and accept valid settings: the job is queued with them, and the library runs the toy with them
    r = client.post(
        f"/api/v1/jobs/{failed}/retry",
        json={"method": "toy_method", "method_config": {"strength": 2.5, "mode": "firm"}},
        headers=rev.auth,
    )
    assert r.status_code == 200, r.text
    job = jobs.get(ctx, failed)
    assert job["state"] == "queued" and job["spec"]["method"] == "toy_method"
    from unlearning.methods import get_method

    toy_impl = get_method(job["spec"]["method"], job["spec"]["method_config"])
    assert toy_impl.config == ToySettings(strength=2.5, mode="firm")


def test_api_and_ui_refuse_unknown_methods_and_settings_alike(
    client: TestClient[Litestar], ctx: Ctx, community: dict[str, Person]
) -> None:
    rev = community["rev1"]
    failed = populate_jobs(ctx, community)["failed_job_id"]
    for body, field, message in (
        ({"method": "no_such_method"}, "method", "unknown unlearning method 'no_such_method'"),
        ({"method_config": {"repair_epochs": 2}}, "method_config", "unknown setting(s)"),
        ({"method_config": {"repair_rounds": "3"}}, "method_config", "setting 'repair_rounds'"),
        ({"method": "retrain", "method_config": {"rounds": 0}}, "method_config", "must be >= 1"),
    ):
        r = client.post(f"/api/v1/jobs/{failed}/retry", json=body, headers=rev.auth)
        assert r.status_code == 422 and r.json()["field"] == field and message in r.json()["detail"], r.text
    assert jobs.get(ctx, failed)["state"] == "failed"  # nothing was queued


def test_the_web_process_loads_neither_torch_nor_flower(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'flwr'):\n"
        "    sys.modules[name] = None  # any import of them raises ImportError\n"
        "from governance.web.app import create_app\n"
        "from governance.settings import Settings\n"
        f"create_app(Settings(environment='test', data_dir={str(tmp_path)!r},\n"
        "    secret_key='test-secret-key-not-for-production-0123456789'))\n"
        "assert not any(m.startswith('unlearning.methods') for m in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
