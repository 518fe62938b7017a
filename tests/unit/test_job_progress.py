"""governance.domain.job_progress: what a job's page says about its progress and outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from governance.domain import job_progress as jp


def test_identifiers_are_not_metrics() -> None:
    shown = jp.shown_metrics({"partition-id": 1.0098, "node_id": 3.0, "num-partitions": 3.0, "loss": 0.5})
    assert shown == {"loss": 0.5}
    assert jp.shown_metrics(None) == {}


def test_outcome_never_contradicts_the_verdict() -> None:
    assert jp.outcome("succeeded", False) == "finished · verification failed"
    assert jp.outcome("succeeded", True) == "finished · verification passed"
    assert jp.outcome("succeeded", None) == "finished"
    assert jp.outcome("failed", None).startswith("failed")
    job = {"attempts": [{"outcome": "verification_failed"}], "report": {"passed": True}}
    assert jp.verdict_of(job) is False  # the attempt's outcome is the verdict of record
    assert jp.verdict_of({"report": {"passed": True}}) is True


def test_steps_rounds_and_time_left() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    started = (now - timedelta(seconds=60)).isoformat()
    p = {"phase": "ascent", "round": 3, "total_rounds": 5, "phase_started": started, "nodes_done": 2}
    facts = jp.progress_facts(p, kind="unlearn", with_reference=True, now=now)
    assert (facts["step"], facts["steps"], facts["step_name"]) == (1, 3, "unlearning")
    assert facts["counted"] and facts["time_left"] == "about 40 s"
    one = jp.progress_facts(
        {"phase": "repair", "round": 1, "total_rounds": 1}, kind="unlearn", with_reference=False, now=now
    )
    assert not one["counted"] and one["time_left"] is None and one["steps"] == 2
    ver = jp.progress_facts(
        {"phase": "verify", "stage": "metric", "done": 2, "total": 8},
        kind="unlearn",
        with_reference=True,
        now=now,
    )
    assert (ver["step"], ver["unit"], ver["done"], ver["total"]) == (3, "step", 2, 8)
    assert jp.duration_words(4000) == "about 1 h 7 min"
