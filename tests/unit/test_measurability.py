"""Which tests can be measured on a model and a dataset: one declaration per metric (MetricSpec.needs), read
by the service before the vote and by the verifier while measuring (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import unlearning.verification.metrics  # noqa: F401  (registers every metric function)
from unlearning.contract import (
    METRICS,
    TARGET_KINDS,
    ContractError,
    MetricSpec,
    cannot_measure,
    check_acceptance_tests,
    default_acceptance_tests,
    register_metric,
)
from unlearning.measurability import NEEDS, TASK_FAMILIES, DatasetFacts, task_family
from unlearning.tasks import TASKS, make_task
from unlearning.tasks.base import Target
from unlearning.tasks.community_lm import CommunityLMTask
from unlearning.tasks.lm import CausalLMTask
from unlearning.verification.probes import Probes
from unlearning.verification.registry import METRIC_FUNCTIONS, Verification, facts_of
from unlearning.verification.runner import _measure
from unlearning.verification.spec import VerifySpec

DIGITS, LM = DatasetFacts(task="digits"), DatasetFacts(task="community-lm")


def test_the_task_table_matches_the_registered_tasks() -> None:
    assert set(TASK_FAMILIES) == set(TASKS)
    for name, cls in TASKS.items():
        expected = (
            "classifier" if cls.is_classifier else "causal-lm" if issubclass(cls, CausalLMTask) else None
        )
        assert TASK_FAMILIES[name] == expected
    assert task_family("no-such-task") is None and task_family("classifier") == "classifier"


def test_every_metric_declares_known_needs_and_the_task_rules_out_the_other_family() -> None:
    assert all(set(m.needs) <= set(NEEDS) for m in METRICS.values())
    assert cannot_measure("forget_perplexity_ratio", LM) is None
    why = cannot_measure("forget_perplexity_ratio", DIGITS)
    assert why == "it needs a language model, and the base model is a classifier (digits)"
    assert cannot_measure("forget_accuracy_gap", DIGITS) is None
    assert "needs a classifier" in (cannot_measure("forget_accuracy_gap", LM) or "")
    assert cannot_measure("retained_utility_drop", DIGITS) is None  # needs nothing
    assert cannot_measure("probe_7", DIGITS) is None  # a probe's test is judged by the evaluation
    unknown = DatasetFacts()  # nothing known: nothing is ruled out
    assert all(cannot_measure(name, unknown) is None for name in METRICS)


def test_dataset_facts_rule_out_what_the_data_cannot_give() -> None:
    no_canary = DatasetFacts(task="causal-lm", target_kind="data_source", canaries=0, extractable=0)
    assert "covers no inserted canary" in (cannot_measure("canary_exposure_pvalue", no_canary) or "")
    assert "no canary or prompt/completion" in (cannot_measure("extraction_rate", no_canary) or "")
    behaviour = DatasetFacts(task="causal-lm", target_kind="behaviour", forget_examples=3, extractable=3)
    assert "a behaviour's examples have none" in (cannot_measure("mia_auc_gap", behaviour) or "")
    assert cannot_measure("extraction_rate", behaviour) is None
    no_split = DatasetFacts(
        target_kind="data_source", forget_examples=11, heldout=0, heldout_reason="the dataset has no split"
    )
    assert "the dataset has no split" in (cannot_measure("mia_auc", no_split) or "")
    one = DatasetFacts(target_kind="category", forget_examples=1, heldout=40)
    assert "at least 2 forget examples" in (cannot_measure("forget_quality", one) or "")
    assert cannot_measure("relearn_recovery", one) is None


@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize("task", ["digits", "community-lm", "causal-lm"])
def test_default_policies_hold_only_tests_the_task_can_measure(kind: str, task: str) -> None:
    facts = DatasetFacts(task=task, target_kind=kind)
    tests = default_acceptance_tests(kind, task)
    assert tests and all(cannot_measure(t.metric, facts) is None for t in tests)
    everything = default_acceptance_tests(kind)  # task not known: the whole calibrated list
    assert set(tests) <= set(everything)  # the same thresholds, fewer tests
    dropped = [t.metric for t in everything if t not in tests]
    assert all(cannot_measure(m, facts) for m in dropped)
    assert check_acceptance_tests(None, kind, task) == tests


def test_category_defaults_per_task() -> None:
    digits = [t.metric for t in default_acceptance_tests("category", "digits")]
    assert "forget_accuracy_gap" in digits and "forget_perplexity_ratio" not in digits
    lm = [t.metric for t in default_acceptance_tests("category", "community-lm")]
    assert "forget_perplexity_ratio" in lm and "forget_accuracy_gap" not in lm
    assert "canary_exposure_pvalue" not in [
        t.metric for t in default_acceptance_tests("data_source", "digits")
    ]


def test_a_metric_with_unknown_needs_is_refused() -> None:
    with pytest.raises(ContractError, match="unknown needs"):
        register_metric(
            MetricSpec("toy_needs", "cost", "x", frozenset(TARGET_KINDS), "lower", needs=("gpu",))
        )
    assert "toy_needs" not in METRICS


def _digits() -> Verification:
    task = make_task("digits", {"kind": "mlp", "inputs": 64, "hidden": [16], "classes": 10})
    model = task.build_model(0)
    g = torch.Generator().manual_seed(0)
    batch = {"x": torch.randn(8, 64, generator=g), "y": torch.randint(0, 10, (8,), generator=g)}
    probes = Probes([{"x": 0}] * 8, batch, batch, "", batch)
    return Verification(
        VerifySpec("", "", "mv-x", []),
        task,
        Target("category", "3"),
        probes,
        {"original": model, "candidate": model},
    )


def _lm_without_split() -> Verification:
    task = CommunityLMTask(CommunityLMTask.default_model_config("tiny"))
    model = task.build_model(0)
    recs = [{"text": f"Note {i} about the orchard.", "kind": "note"} for i in range(6)]
    probes = Probes(recs, task.to_batch(recs), None, "the dataset publishes no held-out split", None)
    target = Target("data_source", "node-0/notes")
    return Verification(
        VerifySpec("", "", "mv-x", []), task, target, probes, {"original": model, "candidate": model}
    )


#: cheap to compute on these probes (the others run federated evaluation, relearning or quantisation)
CHEAP = [
    "forget_accuracy_gap",
    "forget_perplexity_ratio",
    "forget_quality",
    "mia_auc",
    "mia_auc_gap",
    "privleak",
    "mia_tpr_at_1pct_fpr",
    "mia_tpr_at_01pct_fpr",
    "retained_mia_tpr_at_1pct_fpr",
    "canary_exposure",
    "canary_exposure_pvalue",
    "extraction_rate",
    "sampled_extraction_rate",
    "format_shift_extraction_rate",
    "heldout_accuracy_gap",
]


@pytest.mark.parametrize("build", [_digits, _lm_without_split])
def test_the_declared_needs_agree_with_the_metric_functions(build: object) -> None:
    """Where the catalogue says a metric cannot be measured, its own function says it does not apply, and
    the other way round: the warning before the vote predicts what verification reports."""
    v = build()  # type: ignore[operator]
    facts = facts_of(v)
    for name in METRICS:
        why = cannot_measure(name, facts)
        if why is None and name not in CHEAP:
            continue
        applies = METRIC_FUNCTIONS[name](v).applies
        assert applies == (why is None), (name, why)


def test_the_verifier_reports_an_unmet_need_with_the_catalogue_sentence() -> None:
    v = _digits()
    out = _measure(v, ["forget_perplexity_ratio", "forget_accuracy_gap"], None, "metric")
    na = out["forget_perplexity_ratio"]
    assert not na.applies and na.reason == cannot_measure("forget_perplexity_ratio", facts_of(v))
    assert out["forget_accuracy_gap"].applies


def test_the_verify_command_defaults_to_the_candidates_task(tmp_path: Path) -> None:
    from unlearning import init_model
    from unlearning.verification.cli import task_defaults

    version = init_model(str(tmp_path), "digits", seed=0).version
    names = [t["metric"] for t in task_defaults("category", str(tmp_path), version)]
    assert names == [t.metric for t in default_acceptance_tests("category", "digits")]
    assert "forget_perplexity_ratio" not in names
    unknown = task_defaults("category", str(tmp_path), "mv-missing")  # verify() will say it is missing
    assert [t["metric"] for t in unknown] == [t.metric for t in default_acceptance_tests("category")]


def test_dataset_facts_read_the_published_manifest_and_split(tmp_path: Path) -> None:
    from unlearning.measurability import dataset_facts

    sources = [{"name": "node-0/notes", "records": 5}, {"name": "node-0/diary", "records": 1}]
    manifest = {
        "task": "causal-lm",
        "categories": ["chess"],
        "nodes": [{"node": "node-0", "sources": sources}],
        "canaries": [
            {"inserted": True, "prefix": "Ann's pin is ", "secret": "4821", "source": "node-0/diary"}
        ],
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    no_split = dataset_facts(tmp_path, {"kind": "data_source", "value": "node-0/notes"})
    assert no_split.task == "causal-lm" and no_split.forget_examples == 5 and no_split.canaries == 0
    assert "publishes no held-out split" in (cannot_measure("mia_auc_gap", no_split) or "")
    (tmp_path / "heldout").mkdir()
    held = [{"text": f"chess note {i}", "kind": "note", "category": "chess"} for i in range(3)]
    (tmp_path / "heldout" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    notes = dataset_facts(tmp_path, {"kind": "data_source", "value": "node-0/notes"})
    assert cannot_measure("mia_auc_gap", notes) is None
    diary = dataset_facts(tmp_path, {"kind": "data_source", "value": "node-0/diary"})
    assert diary.canaries == 1 and "at least 2 forget examples" in (
        cannot_measure("mia_auc_gap", diary) or ""
    )
    assert "holds 0" in (
        cannot_measure(
            "forget_perplexity_ratio", dataset_facts(tmp_path, {"kind": "category", "value": "jazz"})
        )
        or ""
    )
    pin = dataset_facts(
        tmp_path, {"kind": "behaviour", "examples": [{"prompt": "Ann's pin is ", "completion": "4821"}]}
    )
    assert pin.canaries == 1 and pin.extractable == 2 and pin.forget_examples is None  # nodes may hold more
    assert cannot_measure("canary_exposure_pvalue", pin) is None
    other = dataset_facts(
        tmp_path, {"kind": "behaviour", "examples": [{"prompt": "Say", "completion": "hello"}]}
    )
    assert "covers no inserted canary" in (cannot_measure("canary_exposure_pvalue", other) or "")
    assert cannot_measure("extraction_rate", other) is None
    assert dataset_facts(None, {"kind": "category", "value": "x"}, "digits") == DatasetFacts(
        task="digits", target_kind="category"
    )
