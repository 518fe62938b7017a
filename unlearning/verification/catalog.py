"""The metric catalogue, as verification reads it: every metric by name (pure data, no torch).

The catalogue itself is part of the contract between the service and the library
(:data:`unlearning.contract.METRICS`, extended with :func:`unlearning.contract.register_metric`): acceptance
tests name these metrics, and the service validates proposals against the same dictionary. The functions that
compute them live in the family modules (forgetting.py, privacy.py, ...), one registered function per metric
(see :mod:`unlearning.verification.registry`); a test checks that both lists agree.
"""

from __future__ import annotations

from unlearning.contract import ALL_TARGETS, FAMILIES, METRICS, MetricSpec

CATALOG: dict[str, MetricSpec] = METRICS  # the same dictionary: a metric registered there is known here


def metric_names() -> list[str]:
    return list(CATALOG)


__all__ = ["ALL_TARGETS", "CATALOG", "FAMILIES", "MetricSpec", "metric_names"]
