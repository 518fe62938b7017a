"""Verification: did the candidate forget, as measured against the retrained reference, without losing utility
on the nodes, and does the forgetting survive relearning and quantisation? One entry point:

    verify(VerifySpec, progress=None, grid=None) -> VerificationReport

Metrics are plug-ins (one registered function per metric; the catalogue in catalog.py names them); the
report is JSON (``VerificationReport.to_dict``) plus a self-contained HTML page (:func:`render_html`). See
docs/verification.md. ``spec`` and ``catalog`` import no torch, so the service can read reports cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unlearning.verification.catalog import CATALOG, MetricSpec, metric_names
from unlearning.verification.spec import (
    MetricResult,
    RegressionCheck,
    RegressionOutcome,
    TestOutcome,
    VerificationReport,
    VerifyProgress,
    VerifySpec,
    VerifySpecError,
    evaluate_tests,
    policy_hash,
    policy_passes,
)

if TYPE_CHECKING:
    from unlearning.federation.protocol import Grid
    from unlearning.verification.spec import VerifyProgressCallback


def verify(
    spec: VerifySpec, progress: VerifyProgressCallback | None = None, *, grid: Grid | None = None
) -> VerificationReport:
    """Measure, judge and report (see :func:`unlearning.verification.runner.verify`)."""
    from unlearning.verification.runner import verify as _verify

    return _verify(spec, progress, grid=grid)


def render_html(report: VerificationReport | dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline SVG plots, no scripts, no external files)."""
    from unlearning.verification.html import render_html as _render

    return _render(report)


__all__ = [
    "CATALOG",
    "MetricResult",
    "MetricSpec",
    "RegressionCheck",
    "RegressionOutcome",
    "TestOutcome",
    "VerificationReport",
    "VerifyProgress",
    "VerifySpec",
    "VerifySpecError",
    "evaluate_tests",
    "metric_names",
    "policy_hash",
    "policy_passes",
    "render_html",
    "verify",
]
