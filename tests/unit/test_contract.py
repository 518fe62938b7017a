"""unlearning.contract: what crosses between the service and the ML library, importable without torch or Flower."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from unlearning import contract
from unlearning.contract import (
    DEFAULT_METHOD,
    METHOD_SPECS,
    METRICS,
    ContractError,
    Target,
    default_acceptance_tests,
    policy_hash,
    validate_method_settings,
)


def test_imports_without_torch_or_flower() -> None:
    code = textwrap.dedent(
        """
        import sys
        for name in ("torch", "flwr", "transformers", "numpy"):
            sys.modules[name] = None  # any import of them raises ImportError
        import unlearning.contract as c
        import unlearning.verification.spec, unlearning.verification.catalog
        assert c.DEFAULT_METHOD in c.METHOD_SPECS and c.METRICS
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "flwr") and sys.modules[m]]
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "data_source", "value": "node-0/notebook", "examples": []},
        {"kind": "category", "value": "7", "examples": []},
        {"kind": "behaviour", "value": "", "examples": [{"prompt": "code: ", "completion": "123456"}]},
        {"kind": "behaviour", "value": "", "examples": [], "pattern": r"\d{6}"},
    ],
)
def test_target_round_trip(data: dict[str, Any]) -> None:
    t = Target.from_dict(data)
    assert t.to_dict() == data
    assert Target.from_json(t.to_json()) == t


def test_target_reads_the_stored_shapes() -> None:
    # job specs written before the contract: no value for behaviour targets, pattern None
    t = Target.from_dict(
        {"kind": "behaviour", "examples": [{"prompt": "a", "completion": "b"}], "pattern": None}
    )
    assert t.to_dict() == {"kind": "behaviour", "value": "", "examples": [{"prompt": "a", "completion": "b"}]}
    assert Target("category", "3").matches({"category": 3})


@pytest.mark.parametrize(
    ("data", "message", "field"),
    [
        ({"kind": "person", "value": "x"}, "unknown target kind", "target.kind"),
        ({"kind": "category", "value": ""}, "needs a value", "target.value"),
        ({"kind": "behaviour"}, "needs examples, a pattern, or both", "target"),
        ({"kind": "behaviour", "examples": [{"prompt": "x"}]}, "non-empty 'completion'", "target.examples"),
        ({"kind": "behaviour", "examples": "x"}, "must be a list", "target.examples"),
        ({"kind": "behaviour", "pattern": "(unclosed"}, "not a valid regular expression", "target.pattern"),
        ({"kind": "category", "value": "7", "colour": "red"}, "unknown target field", "target"),
        ("category:7", "must be an object", "target"),
    ],
)
def test_bad_targets_are_refused_clearly(data: Any, message: str, field: str) -> None:
    with pytest.raises(ContractError, match=message) as exc:
        Target.from_dict(data)
    assert exc.value.field == field
    assert isinstance(exc.value, ValueError)


# computed with unlearning/verification/spec.py before the contract existed: stored hashes must not change.
# These are the defaults before issue 16, given explicitly: proposals that voted them keep their stored tests.
PINNED = {
    "data_source": "8b8b880e842aee035396f414d916ed18b2d5fcb742a9b61a53285f56230458a0",
    "category": "1074bbef427a50e86b71d3fb36f63bb3668788da2286ff8e6e49d60ec856c2a2",
    "behaviour": "42c7379660fb71abb7ee4616709bb1f5ecbd38208d1581b4e1e90eccd8efbb3c",
}
OLD_DEFAULTS: dict[str, list[dict[str, object]]] = {
    "data_source": [
        {"metric": "mia_auc_gap", "comparator": "<=", "threshold": 0.05},
        {"metric": "canary_exposure", "comparator": "<=", "threshold": 3.0},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.05},
        {"metric": "relearn_recovery", "comparator": "<=", "threshold": 0.5},
    ],
    "category": [
        {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.05},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.05},
        {"metric": "worst_node_utility_drop", "comparator": "<=", "threshold": 0.1},
    ],
    "behaviour": [
        {"metric": "extraction_rate", "comparator": "<=", "threshold": 0.0},
        {"metric": "canary_exposure", "comparator": "<=", "threshold": 3.0},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.05},
    ],
}
# the defaults calibrated in issue 16 (bench/RESULTS.md, "Default policies"); a change here is a new policy
PINNED_DEFAULTS = {
    "data_source": "48e03b73ffcf04af500fb4b2a7070da65a5dfa957517593dd4e894301956d999",  # mia_auc_gap_pvalue
    "category": "b65ef71a48abeb9f7e7e98f73a878a5aa7f038c7c23d0f49bb8378f1acb8e786",
    "behaviour": "311ff3e25db1a88b9ed96763b735cd988b6019b32f46d14de7be07b29ab9bc69",
}


@pytest.mark.parametrize("kind", sorted(PINNED))
def test_policy_hash_of_stored_policies_is_stable(kind: str) -> None:
    tests = OLD_DEFAULTS[kind]
    assert policy_hash(tests) == PINNED[kind]
    assert policy_hash(reversed(tests)) == PINNED[kind]  # order does not matter


@pytest.mark.parametrize("kind", sorted(PINNED_DEFAULTS))
def test_policy_hash_of_the_defaults_is_stable(kind: str) -> None:
    tests = [t.to_dict() for t in default_acceptance_tests(kind)]
    assert policy_hash(tests) == PINNED_DEFAULTS[kind]


def test_policy_hash_is_stable() -> None:
    tests = [
        {"metric": "mia_auc", "comparator": "<", "threshold": 1, "relative_to_reference": True},
        {"metric": "canary_exposure", "comparator": "<=", "threshold": 2.5},
    ]
    assert policy_hash(tests) == "d7476564fc7c1c7a35b6b481404e8a6cbe18ecbacbcfcc45423e5c5d8ddbd7d2"
    assert policy_hash([]) == "420c6be206ae5c49240e7344a78a08ba8aeaeedca9332ef295c24979c26a7605"
    from unlearning.verification.spec import policy_hash as verification_policy_hash

    assert verification_policy_hash is policy_hash  # one implementation


def test_acceptance_tests_are_checked_against_the_catalogue() -> None:
    assert contract.check_acceptance_tests(None, "category") == default_acceptance_tests("category")
    with pytest.raises(ContractError, match="unknown metric 'nope'") as exc:
        contract.check_acceptance_tests([{"metric": "nope", "comparator": "<=", "threshold": 1}], "category")
    assert exc.value.field == "metric"
    with pytest.raises(ContractError, match="does not apply to behaviour targets"):
        contract.check_acceptance_tests(
            [{"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 1}], "behaviour"
        )
    for kind in contract.TARGET_KINDS:  # every default names a metric of the catalogue that applies
        for t in default_acceptance_tests(kind):
            assert kind in METRICS[t.metric].target_kinds


def test_default_method_and_specs() -> None:
    assert DEFAULT_METHOD == "gradient_ascent_ewc"
    assert {"gradient_ascent", "ewc", "gradient_ascent_ewc", "retrain"} <= set(METHOD_SPECS)
    schema = METHOD_SPECS["gradient_ascent_ewc"].schema()
    assert schema["repair_rounds"] == {
        "type": "integer",
        "nullable": False,
        "default": 3,
        "help": schema["repair_rounds"]["help"],
        "minimum": 0,
        "maximum": 100,
    }
    assert schema["stop"]["choices"][0] == "auto" and schema["ascent_lambda"]["nullable"]


def test_every_method_spec_has_an_implementation_with_its_settings() -> None:
    from unlearning.methods import METHODS

    assert set(METHOD_SPECS) <= set(METHODS)
    for name, cls in METHODS.items():
        assert cls.Config is METHOD_SPECS[name].settings


@pytest.mark.parametrize(
    ("method", "settings", "message", "field"),
    [
        ("sisa", {}, r"unknown unlearning method 'sisa'; registered methods: ewc, ", "method"),
        (
            "gradient_ascent_ewc",
            {"repair_epochs": 2},
            r"unknown setting\(s\).*repair_epochs",
            "method_config",
        ),
        (
            "gradient_ascent_ewc",
            {"repair_rounds": "3"},
            r"setting 'repair_rounds' .* must be int",
            "method_config",
        ),
        ("gradient_ascent_ewc", {"dedup": 1}, r"setting 'dedup' .* must be bool", "method_config"),
        (
            "gradient_ascent_ewc",
            {"repair_rounds": -1},
            r"setting 'repair_rounds' .* must be >= 0",
            "method_config",
        ),
        ("gradient_ascent", {"max_rounds": 0}, r"setting 'max_rounds' .* must be >= 1", "method_config"),
        ("ewc", {"fisher_examples": 0}, r"setting 'fisher_examples' .* must be >= 1", "method_config"),
        (
            "gradient_ascent_ewc",
            {"repair_guard_factor": 0},
            r"'repair_guard_factor' .* must be > 0",
            "method_config",
        ),
        (
            "gradient_ascent",
            {"stop": "never"},
            r"unknown stop rule 'never' for setting 'stop'",
            "method_config",
        ),
        (
            "gradient_ascent",
            {"secrets": "(x"},
            r"setting 'secrets' .* not a valid regular expression",
            "method_config",
        ),
        (
            "gradient_ascent_ewc",
            {"dampen_alpha": 10, "ascent_fisher": "forget"},
            r"dampen_alpha compares with the retained data's Fisher",
            "method_config",
        ),
        ("gradient_ascent_ewc", {"dampen_lambda": 0}, r"'dampen_lambda' .* must be > 0", "method_config"),
        ("gradient_ascent_ewc", {"dampen_mode": "zero"}, r"'dampen_mode'", "method_config"),
        (
            "gradient_ascent_ewc",
            {"repair_noise": 0.3, "repair_rounds": 0},
            r"repair_noise perturbs the model the repair rounds start from",
            "method_config",
        ),
        ("gradient_ascent_ewc", {"repair_noise": 1.5}, r"'repair_noise' .* must be <= 1", "method_config"),
        (
            "gradient_ascent_ewc",
            {"repair_distill": 0.5, "repair_rounds": 0},
            r"repair_distill weighs the repair rounds' loss",
            "method_config",
        ),
        ("retrain", {"rounds": 0}, r"setting 'rounds' of method retrain must be >= 1", "method_config"),
        ("retrain", ["rounds"], r"method_config must be an object", "method_config"),
    ],
)
def test_method_settings_are_validated_by_name(method: str, settings: Any, message: str, field: str) -> None:
    with pytest.raises(ContractError, match=message) as exc:
        validate_method_settings(method, settings)
    assert exc.value.field == field


def test_valid_method_settings_pass_unchanged() -> None:
    settings = {"repair_rounds": 2, "repair_lambda": 5, "ascent": {"lr": 1e-3}, "ascent_lambda": None}
    assert validate_method_settings("gradient_ascent_ewc", settings) == settings
    assert validate_method_settings("retrain", None) == {}
