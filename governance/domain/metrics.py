"""The verification metrics acceptance tests may name, as governance validates proposals against them.

The catalogue is the contract's (:data:`unlearning.contract.METRICS`, pure data): the unlearning library
computes exactly these metrics, so a proposal can never name a metric that nothing computes, and a metric
registered there (:func:`unlearning.contract.register_metric`) is known here with no change to the service.
"""

from __future__ import annotations

from governance.domain.errors import InvalidInput
from unlearning import contract
from unlearning.contract import ALL_TARGETS, COMPARATORS, MetricSpec

MetricInfo = MetricSpec  # name, family, description, target_kinds, better

__all__ = ["ALL_TARGETS", "COMPARATORS", "MetricInfo", "get_metric", "known_metrics"]


def known_metrics() -> dict[str, MetricInfo]:
    return dict(contract.METRICS)


def get_metric(name: str) -> MetricInfo:
    try:
        return contract.get_metric(name)
    except contract.ContractError as exc:
        raise InvalidInput(exc.message, field=exc.field) from None
