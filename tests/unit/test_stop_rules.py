"""The ascent's stop rules as the nodes receive them: the "heldout" rule compares the forget examples with the
node's own held-out examples of their kind, and never needs the retrained reference."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from unlearning import Target
from unlearning.contract import parse_method_settings
from unlearning.methods.base import MethodContext, bounded_ascent, stop_settings


class _Fed:
    """A federation that records what the ascent was asked to do (no nodes)."""

    seed = 0

    def __init__(self) -> None:
        self.stop: dict[str, Any] = {}

    class task:  # the attribute a method reads
        is_classifier = False

    def ascent(self, params: Any, target: Any, local: Any, stop: dict[str, Any], **kw: Any) -> Any:
        self.stop = stop
        return params, {"steps": 0.0}


def _sent(config: dict[str, Any], target: Target) -> dict[str, Any]:
    fed = _Fed()
    params = {"w": torch.zeros(2)}
    ctx = MethodContext(fed=fed, target=target, original=params, lineage={}, load_init=lambda: params)  # type: ignore[arg-type]
    bounded_ascent(ctx, parse_method_settings("gradient_ascent", {"reference": "none", **config}))
    return fed.stop


def test_heldout_rule_sends_an_auc_against_the_nodes_same_kind_examples() -> None:
    source = Target("data_source", "node-0/notebook")
    stop = _sent({"stop": "heldout"}, source)
    # AUC of forget vs held-out losses <= 0.5, against the node's unseen examples of the same kind, even when
    # the job's stop_reference says "validation"
    assert stop["stop-auc"] == 0.5 and stop["stop-reference"] == "same-kind"
    assert "stop-loss" not in stop and "stop-accuracy" not in stop
    assert _sent({"stop": "heldout", "heldout_auc": 0.52}, source)["stop-auc"] == 0.52
    # the old rules stay selectable and keep their reference setting
    old = _sent({"stop": "auc", "auc": 0.45, "stop_reference": "validation"}, source)
    assert old["stop-auc"] == 0.45 and old["stop-reference"] == "validation"
    assert _sent({"stop": "validation-loss"}, source)["stop-loss"] == "validation"


def test_heldout_threshold_is_checked() -> None:
    with pytest.raises(ValueError, match="heldout_auc"):
        parse_method_settings("gradient_ascent_ewc", {"heldout_auc": 1.5})


def test_auto_rule_by_target_kind() -> None:
    s = parse_method_settings("gradient_ascent_ewc", {})
    assert stop_settings(s, Target("category", "7"), True) == {"stop-accuracy": 0.02}
    lm_category = stop_settings(s, Target("category", "chess"), False)
    assert lm_category["stop-loss"] == "validation" and lm_category["stop-loss-factor"] == 1.5
    behaviour = stop_settings(s, Target("behaviour", examples=[{"prompt": "a", "completion": "1"}]), False)
    assert behaviour["stop-exposure-z"] == -1.0
