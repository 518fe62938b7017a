"""Verification metrics on constructed cases whose answers are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from unlearning.tasks import Target, make_task
from unlearning.tasks.community_lm import CommunityLMTask
from unlearning.verification import (
    CATALOG,
    VerificationReport,
    VerifySpec,
    VerifySpecError,
    evaluate_tests,
    policy_hash,
    policy_passes,
    render_html,
)
from unlearning.verification.privacy import auc, auc_variance
from unlearning.verification.probes import Probes, _lowest_k_mean, greedy_extracts, score
from unlearning.verification.registry import METRIC_FUNCTIONS, Verification
from unlearning.verification.robustness import _share, quantize

torch.set_num_threads(1)


def test_auc_is_one_half_for_identical_and_one_for_separable_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    same = torch.randn(400, generator=g)
    assert auc(same, same.clone()) == pytest.approx(0.5)
    a, b = torch.randn(2000, generator=g), torch.randn(2000, generator=g)
    assert auc(a, b) == pytest.approx(0.5, abs=0.03)
    assert auc(torch.arange(10.0) + 100, torch.arange(10.0)) == 1.0
    assert auc(torch.arange(10.0), torch.arange(10.0) + 100) == 0.0


def test_lowest_k_mean_takes_the_lowest_share_of_counted_tokens() -> None:
    values = torch.tensor([[1.0, -5.0, 3.0, -1.0, 9.0], [2.0, 2.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True, False], [True, True, False, False, False]])
    out = _lowest_k_mean(values, mask, 0.5)  # row 0: lowest 2 of 4 = -5, -1; row 1: lowest 1 of 2 = 2
    assert out.tolist() == [-3.0, 2.0]


def test_share_of_forgetting_undone() -> None:
    assert _share(1.0, 3.0, 3.0) == 0.0
    assert _share(1.0, 3.0, 2.0) == 0.5
    assert _share(1.0, 3.0, 0.5) == 1.0  # clipped
    assert _share(1.0, 1.0, 0.5) is None  # nothing was forgotten: undefined


def _policy(*tests: tuple[str, str, float, bool]) -> list[dict[str, object]]:
    return [
        {"metric": m, "comparator": c, "threshold": t, "relative_to_reference": r} for m, c, t, r in tests
    ]


def test_policy_outcomes_and_the_pass_rule() -> None:
    metrics = {
        "mia_auc_gap": {"applies": True, "value": 0.02, "values": {"candidate": 0.52, "reference": 0.5}},
        "canary_exposure": {"applies": False, "value": None, "reason": "not a language model"},
        "cost_ratio": {"applies": True, "value": None, "reason": "no retraining job"},
        "mia_auc": {"applies": True, "value": 0.61, "values": {"candidate": 0.61, "original": 0.7}},
        "retained_utility_drop": {"applies": True, "value": 0.2, "values": {}},
    }
    out = {
        o.metric: o
        for o in evaluate_tests(
            _policy(
                ("mia_auc_gap", "<=", 0.05, False),
                ("canary_exposure", "<=", 3.0, False),
                ("cost_ratio", "<=", 1.0, False),
                ("mia_auc", "<=", 0.05, True),
                ("retained_utility_drop", "<=", 0.05, False),
                ("forget_quality", ">=", 0.05, False),
            ),
            metrics,
        )
    }
    assert out["mia_auc_gap"].status == "pass" and out["mia_auc_gap"].measured == 0.02
    # the members voted it, but it cannot be measured here: reported as such, and it blocks (never a pass)
    na = out["canary_exposure"]
    assert na.status == "not_applicable" and na.blocks
    assert na.reason == "the members voted this test, but it cannot be measured here: not a language model"
    assert out["cost_ratio"].status == "unmeasured" and out["cost_ratio"].blocks
    assert out["mia_auc"].status == "unmeasured"  # relative to a reference that was not measured
    assert out["retained_utility_drop"].status == "fail"
    assert out["forget_quality"].status == "unmeasured"  # not computed at all
    ok = evaluate_tests(
        _policy(("mia_auc_gap", "<=", 0.05, False), ("canary_exposure", "<=", 3, False)), metrics
    )
    assert not policy_passes(ok)  # a voted test that cannot be measured is not a pass
    assert policy_passes(evaluate_tests(_policy(("mia_auc_gap", "<=", 0.05, False)), metrics))
    only_na = evaluate_tests(_policy(("canary_exposure", "<=", 3, False)), metrics)
    assert not policy_passes(only_na)  # nothing was actually measured


def test_relative_to_reference_compares_candidate_minus_reference() -> None:
    metrics = {"mia_auc": {"applies": True, "value": 0.6, "values": {"candidate": 0.6, "reference": 0.57}}}
    (o,) = evaluate_tests(_policy(("mia_auc", "<=", 0.05, True)), metrics)
    assert o.status == "pass" and o.measured == pytest.approx(0.03)


def test_policy_hash_ignores_order_and_sees_thresholds() -> None:
    a = _policy(("mia_auc_gap", "<=", 0.05, False), ("canary_exposure", "<=", 3.0, False))
    assert policy_hash(a) == policy_hash(list(reversed(a)))
    b = _policy(("mia_auc_gap", "<=", 0.06, False), ("canary_exposure", "<=", 3.0, False))
    assert policy_hash(a) != policy_hash(b)


def test_spec_rejects_unknown_metrics_and_bad_settings(tmp_path: Path) -> None:
    spec = VerifySpec(str(tmp_path), str(tmp_path), "mv-x", _policy(("no_such_metric", "<=", 1.0, False)))
    with pytest.raises(VerifySpecError, match="unknown metric"):
        spec.validate()
    with pytest.raises(VerifySpecError, match="precision"):
        VerifySpec(str(tmp_path), str(tmp_path), "mv-x", [], precision="fp8").validate()
    again = VerifySpec.from_dict(json.loads(spec.to_json()))
    assert again == spec


def test_every_catalogue_metric_has_one_function_and_the_service_knows_it() -> None:
    import unlearning.verification.metrics  # noqa: F401
    from governance.domain.metrics import known_metrics

    assert set(METRIC_FUNCTIONS) == set(CATALOG)
    assert set(CATALOG) <= set(known_metrics())
    docs = (Path(__file__).parents[2] / "docs" / "verification.md").read_text()
    assert all(f"`{name}`" in docs for name in CATALOG)


def _digits_verification(members: torch.Tensor, labels: torch.Tensor, held: torch.Tensor) -> Verification:
    task = make_task("digits", {"kind": "mlp", "inputs": 64, "hidden": [16], "classes": 10})
    model = task.build_model(0)
    forget = {"x": members, "y": labels}
    heldout = {"x": held, "y": labels}
    probes = Probes([{"x": 0}] * len(labels), forget, heldout, "", heldout)
    spec = VerifySpec("", "", "mv-x", [])
    return Verification(spec, task, Target("category", "3"), probes, {"original": model, "candidate": model})


def _memorise(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """Fit the members' (random) labels until the model has memorised them."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return model


def test_membership_inference_sees_memorised_examples_and_nothing_in_identical_ones() -> None:
    g = torch.Generator().manual_seed(1)
    x_mem, x_non = torch.randn(32, 64, generator=g), torch.randn(32, 64, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    v = _digits_verification(x_mem, y, x_non)
    _memorise(v.models["candidate"], x_mem, y)
    r = METRIC_FUNCTIONS["mia_auc"](v)
    assert r.applies and r.value is not None and r.value > 0.95
    assert r.details["attacks"]["min_k_pp"]["candidate"] > 0.75
    same = _digits_verification(x_mem, y, x_mem.clone())
    assert METRIC_FUNCTIONS["mia_auc"](same).value == pytest.approx(0.5)
    gap = METRIC_FUNCTIONS["mia_auc_gap"](same)
    assert gap.value == pytest.approx(0.0) and "chance" in gap.details["reference_source"]
    assert METRIC_FUNCTIONS["privleak"](same).value == pytest.approx(0.0)
    # a classifier has no perplexity and no canaries: the metrics say so instead of a number
    assert not METRIC_FUNCTIONS["forget_perplexity_ratio"](v).applies
    assert not METRIC_FUNCTIONS["canary_exposure"](v).applies


def test_delong_variance_matches_the_pairwise_definition_and_the_sampling_spread() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(40, generator=g) + 0.3, torch.randn(60, generator=g).round()  # ties included
    psi = (x[:, None] > y[None, :]).double() + 0.5 * (x[:, None] == y[None, :]).double()
    brute = float(psi.mean(1).var() / 40 + psi.mean(0).var() / 60)
    assert auc_variance(x, y) == pytest.approx(brute)
    draws = torch.tensor(
        [auc(torch.randn(40, generator=g) + 0.3, torch.randn(60, generator=g)) for _ in range(400)]
    )
    assert math.sqrt(auc_variance(x, torch.randn(60, generator=g))) == pytest.approx(
        float(draws.std()), rel=0.25
    )


def test_the_gap_pvalue_passes_a_model_like_the_reference_and_fails_one_that_memorised() -> None:
    g = torch.Generator().manual_seed(2)
    x_mem, x_non = torch.randn(48, 64, generator=g), torch.randn(48, 64, generator=g)
    y = torch.randint(0, 10, (48,), generator=g)
    v = _digits_verification(x_mem, y, x_non)
    fresh = v.models["candidate"]
    memorised = _memorise(v.task.build_model(0), x_mem, y)
    like = Verification(
        v.spec, v.task, v.target, v.probes, {"original": memorised, "candidate": fresh, "reference": fresh}
    )
    r = METRIC_FUNCTIONS["mia_auc_gap_pvalue"](like)
    assert r.value == pytest.approx(1.0) and r.details["reference_source"] == "retrained reference"
    assert r.values["original"] is not None and r.values["original"] < 1e-6  # the original memorised them
    assert r.details["corrected_over"] == 2 and r.details["members"] == 48
    unlearned_not = Verification(
        v.spec,
        v.task,
        v.target,
        v.probes,
        {"original": memorised, "candidate": memorised, "reference": fresh},
    )
    assert METRIC_FUNCTIONS["mia_auc_gap_pvalue"](unlearned_not).value < 1e-6


def _tiny_lm() -> tuple[CommunityLMTask, nn.Module]:
    task = CommunityLMTask(CommunityLMTask.default_model_config("tiny"))
    return task, task.build_model(0)


def test_a_memorised_canary_has_high_exposure_and_is_extracted_an_unseen_one_is_not() -> None:
    from unlearning.local import LocalConfig, train
    from unlearning.metrics import canary_exposure

    task, model = _tiny_lm()
    fresh = task.build_model(0)
    prefix, secret = "Ulne's access code is ", "482916"
    batch = task.to_batch([{"text": f"{prefix}{secret}."}] * 8)
    cfg = LocalConfig.from_dict({**task.train_defaults, "lr": 1e-2, "steps": 120, "bf16": False})
    train(model, batch, task, cfg, generator=torch.Generator().manual_seed(0))
    high, z = canary_exposure(model, task, prefix, secret, candidates=200, seed=0)
    low, _ = canary_exposure(fresh, task, prefix, secret, candidates=200, seed=0)
    assert high == pytest.approx(math.log2(200)) and z < -3
    assert low < 5.0
    assert greedy_extracts(model, task, prefix, secret)
    assert not greedy_extracts(fresh, task, prefix, secret)
    # quantisation keeps a memorised secret memorised (that is what quantization_recovery measures)
    s_q = score(quantize(model), task, batch).loss.mean()
    assert float(s_q) < 0.5


def test_ks_forget_quality_is_one_for_identical_models(tmp_path: Path) -> None:
    task, model = _tiny_lm()
    recs = [{"text": f"The author N{i} was born in Orvik in 19{i:02d}.", "kind": "fact"} for i in range(12)]
    forget = task.to_batch(recs)
    probes = Probes(recs, forget, forget, "", forget)
    spec = VerifySpec("", "", "mv-x", [])
    v = Verification(
        spec,
        task,
        Target("data_source", "node-0/x"),
        probes,
        {"original": model, "candidate": model, "reference": model},
    )
    fq = METRIC_FUNCTIONS["forget_quality"](v)
    assert fq.value == pytest.approx(1.0)
    ratio = METRIC_FUNCTIONS["forget_perplexity_ratio"](v)
    assert ratio.value == pytest.approx(1.0)
    assert METRIC_FUNCTIONS["mia_auc_gap"](v).value == pytest.approx(0.0)


def test_report_round_trips_and_renders_without_external_resources() -> None:
    from unlearning.verification.spec import MetricResult, TestOutcome

    rep = VerificationReport(
        candidate_version="mv-1",
        candidate_hash="ab" * 32,
        policy_hash="cd" * 32,
        config_hash="ef" * 32,
        seed=0,
        precision="fp32",
        libraries={"torch": "x"},
        task="digits",
        target={"kind": "category", "value": "3", "examples": []},
        models={"original": {"version": "mv-0", "content_hash": "0"}, "candidate": None, "reference": None},
        metrics={
            "mia_auc": MetricResult(
                "mia_auc",
                "privacy",
                True,
                0.6,
                values={"original": 0.7, "candidate": 0.6},
                details={
                    "roc_loss": {"candidate": [[0.0, 0.0], [0.5, 0.7], [1.0, 1.0]]},
                    "attacks": {"loss": {"candidate": 0.6}},
                },
            ),
            "cost_ratio": MetricResult("cost_ratio", "cost", True, float("nan")),
        },
        tests=[TestOutcome("mia_auc", "<=", 0.55, False, "fail", 0.6, "mia_auc = 0.6 fails <= 0.55")],
        regressions=[],
        passed=False,
        summary="FAIL: mia_auc (fail)",
        settings={},
        timing={"wall_s": 1.0},
        created_at="2026-01-01T00:00:00+00:00",
    )
    d = rep.to_dict()
    assert d["verdict"] == "fail" and d["metrics"]["cost_ratio"]["value"] is None  # strict JSON: no NaN
    json.dumps(d, allow_nan=False)
    again = VerificationReport.from_dict(json.loads(json.dumps(d)))
    assert again.candidate_hash == rep.candidate_hash and again.tests == rep.tests
    page = render_html(rep)
    assert "FAIL: mia_auc (fail)" in page and "<svg" in page and "<script" not in page
    import re
    import xml.etree.ElementTree as ET

    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ET.fromstring(svg)  # every plot is well-formed SVG
    namespaces = ('xmlns="http://www.w3.org/2000/svg"', 'xmlns:xlink="http://www.w3.org/1999/xlink"')
    for ns in namespaces:  # XML namespace names identify, they are never fetched
        page = page.replace(ns, "")
    assert "http://" not in page and "https://" not in page
