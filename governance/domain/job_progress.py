"""How a job's progress and outcome read on its page (pure: the worker's progress record in, words out).

A job runs in steps: the federated unlearning (or training) with its phases, then for an unlearning with a
target the retrained reference, then the verification. The page shows the overall step of steps, the phase,
the round of rounds (only where a phase has more than one), the nodes that answered and the time left; the
metrics shown leave out what is an identifier and not a measurement (a mean of node ids means nothing); and
a finished job's outcome is worded with its verification's verdict, so it never reads "succeeded" next to
"FAIL"."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

# node ids, partition ids, partition counts: averaged over replies they are meaningless numbers
_ID_LIKE = re.compile(r"(^|[-_ ])ids?$|^num[-_]partitions$", re.IGNORECASE)
_KNOWN = frozenset(
    ("phase", "stage", "round", "total_rounds", "done", "total", "metrics", "phase_started", "nodes_done")
) | {"nodes_total"}


def is_id_like(name: str) -> bool:
    return bool(_ID_LIKE.search(name))


def shown_metrics(metrics: Any) -> dict[str, Any]:
    """The metrics a page shows: numbers and strings, identifiers left out."""
    if not isinstance(metrics, dict):
        return {}
    return {
        str(k): v for k, v in metrics.items() if not is_id_like(str(k)) and isinstance(v, int | float | str)
    }


def job_steps(kind: str | None, with_reference: bool) -> list[str]:
    """The steps of a job of this kind, in order."""
    if kind == "verify":
        return ["verification"]
    first = "training" if kind == "train" else "unlearning"
    return [first, *(["retrained reference"] if with_reference else []), "verification"]


def step_of(phase: str | None, steps: list[str]) -> int | None:
    """1-based position of the step a phase belongs to (None before any progress)."""
    if not phase:
        return None
    name = {"verify": "verification", "reference": "retrained reference"}.get(phase, steps[0])
    return steps.index(name) + 1 if name in steps else None


def time_left_s(
    started: datetime | None, now: datetime, done: float | None, total: float | None
) -> float | None:
    """Seconds left in a phase at the pace so far (``done`` of ``total`` since ``started``); None when the
    pace is not known yet (nothing done) or there is nothing left to estimate."""
    if started is None or not done or not total or done <= 0 or done >= total:
        return None
    if started.tzinfo is None and now.tzinfo is not None:
        started = started.replace(tzinfo=now.tzinfo)
    elapsed = max(0.0, (now - started).total_seconds())
    return elapsed / done * (total - done)


def duration_words(seconds: float | None) -> str | None:
    """'about 40 s', 'about 3 min', 'about 1 h 20 min'."""
    if seconds is None:
        return None
    s = round(seconds)
    if s < 60:
        return f"about {max(s, 1)} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


def verdict_of(job: dict[str, Any]) -> bool | None:
    """Whether a finished job's model passed verification: its last attempt's outcome, else its report's."""
    attempts = [a for a in job.get("attempts") or [] if isinstance(a, dict)]
    last: Any = attempts[-1].get("outcome") if attempts else None
    if last in ("verified", "verification_failed"):
        return bool(last == "verified")
    report = job.get("report")
    if isinstance(report, dict) and isinstance(report.get("passed"), bool):
        return bool(report["passed"])
    return None


def outcome(state: str, verified: bool | None) -> str:
    """A job's outcome in words that agree with its verification's verdict (``verified``: whether its model
    passed; None when no verdict is on record): a job whose run finished but whose model failed its tests is
    "finished · verification failed", never "succeeded"."""
    if state == "succeeded":
        if verified is None:
            return "finished"
        return "finished · verification passed" if verified else "finished · verification failed"
    return {
        "queued": "queued",
        "running": "running",
        "verifying": "verifying",
        "failed": "failed: the job did not finish",
        "cancelled": "cancelled",
    }.get(state, state)


def progress_facts(
    progress: dict[str, Any] | None,
    *,
    kind: str | None,
    with_reference: bool,
    now: datetime,
) -> dict[str, Any]:
    """The progress record as the page shows it: overall step of steps, phase, stage, round of rounds (a
    bar only where a phase has more than one round or step), nodes done of nodes, time left, the metrics."""
    p = dict(progress or {})
    phase = p.get("phase")
    steps = job_steps(kind, with_reference)
    done, total = p.get("round"), p.get("total_rounds")
    unit = "round"
    if phase == "verify":
        done, total, unit = p.get("done"), p.get("total"), "step"
    done = done if isinstance(done, int | float) else None
    total = total if isinstance(total, int | float) and total else None
    started = _parse_time(p.get("phase_started"))
    nodes_done, nodes_total = p.get("nodes_done"), p.get("nodes_total")
    return {
        "phase": phase,
        "stage": p.get("stage"),
        "step": step_of(phase, steps),
        "steps": len(steps),
        "step_name": steps[(step_of(phase, steps) or 1) - 1],
        "unit": unit,
        "done": done,
        "total": total,
        # a phase of one round is done or not: "round 1 of 1" and a full bar say nothing
        "counted": total is not None and total > 1,
        "nodes_done": nodes_done if isinstance(nodes_done, int | float) and nodes_done else None,
        "nodes_total": nodes_total if isinstance(nodes_total, int | float) and nodes_total else None,
        "time_left": duration_words(time_left_s(started, now, done, total)),
        "metrics": shown_metrics(p.get("metrics")),
        "other": {k: v for k, v in p.items() if k not in _KNOWN and not is_id_like(k)},
    }


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
