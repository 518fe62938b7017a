"""Method plug-ins and job specs: registered by name, configured by data, clear errors; documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearning import JobSpec, JobSpecError, Target
from unlearning.methods import DEFAULT_METHOD, METHODS, get_method

DOCS = Path(__file__).resolve().parents[2] / "docs" / "unlearning.md"


def test_registered_methods() -> None:
    assert {"gradient_ascent", "ewc", "gradient_ascent_ewc", "retrain"} <= set(METHODS)
    assert DEFAULT_METHOD == "gradient_ascent_ewc"
    m = get_method("gradient_ascent_ewc", {"repair_rounds": 2, "repair_lambda": 5.0})
    assert m.config.repair_rounds == 2


def test_unknown_method_and_setting() -> None:
    with pytest.raises(ValueError, match=r"unknown unlearning method .sisa.*registered methods"):
        get_method("sisa")
    with pytest.raises(ValueError, match=r"unknown setting.*repair_epochs"):
        get_method("gradient_ascent_ewc", {"repair_epochs": 2})
    with pytest.raises(ValueError, match="repair_anchor"):
        get_method("gradient_ascent_ewc", {"repair_anchor": "random"})
    with pytest.raises(ValueError, match="stop rule"):
        get_method("gradient_ascent", {"stop": "never"})


def test_every_method_is_documented() -> None:
    text = DOCS.read_text()
    for name in METHODS:
        assert f"`{name}`" in text, f"docs/unlearning.md has no entry for method {name}"


def test_job_spec_json_roundtrip_and_validation(tmp_path: Path) -> None:
    spec = JobSpec(
        kind="unlearn",
        job_id="j1",
        artifact_root=str(tmp_path),
        dataset_dir=str(tmp_path),
        base_version="mv-x",
        target=Target("category", "7"),
        method_config={"repair_rounds": 1},
    )
    assert JobSpec.from_json(spec.to_json()) == spec
    with pytest.raises(JobSpecError, match="no dataset"):
        spec.validate()
    with pytest.raises(JobSpecError, match="unknown job kind"):
        JobSpec(kind="finetune", job_id="j", artifact_root="a", dataset_dir="d", base_version="v").validate()
    with pytest.raises(JobSpecError, match="needs a target"):
        JobSpec(kind="unlearn", job_id="j", artifact_root="a", dataset_dir="d", base_version="v").validate()
    with pytest.raises(JobSpecError, match="unknown unlearning method"):
        JobSpec(
            kind="unlearn",
            job_id="j",
            artifact_root="a",
            dataset_dir="d",
            base_version="v",
            target=Target("category", "1"),
            method="nope",
        ).validate()
    with pytest.raises(JobSpecError, match="unknown job spec field"):
        JobSpec.from_dict({**spec.to_dict(), "colour": "red"})


def test_task_defaults_sit_under_the_jobs_own_settings() -> None:
    from unlearning.methods.base import with_defaults
    from unlearning.tasks.lm import CausalLMTask

    defaults = CausalLMTask.method_defaults["data_source"]
    mine = with_defaults("gradient_ascent_ewc", defaults, {"auc": 0.5, "ascent": {"lr": 1e-3}})
    assert mine["auc"] == 0.5 and mine["secrets"] == defaults["secrets"]
    assert mine["ascent"] == {"max_steps": 400, "lr": 1e-3, "check_every": 2}  # merged key by key
    assert "secrets" not in with_defaults("retrain", defaults, {})  # a method takes what it knows
    assert with_defaults("gradient_ascent", {}, {"stop": "none"}) == {"stop": "none"}


@pytest.mark.parametrize(
    "config",
    [{"secrets": 5}, {"repair_guard": "x"}, {"max_rounds": "3"}, {"dedup": 1}, {"repair_guard_factor": None}],
)
def test_settings_of_the_wrong_type_are_refused_by_name(config: dict[str, object]) -> None:
    from unlearning.methods import get_method

    key = next(iter(config))
    with pytest.raises(ValueError, match=f"setting '{key}' of method gradient_ascent_ewc must be"):
        get_method("gradient_ascent_ewc", config)
