"""SIGKILL workers in the middle of unlearning jobs (the harness of bench/worker_kill.py, fewer trials)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import worker_kill  # bench/worker_kill.py


@pytest.mark.slow
def test_killed_workers_lose_nothing(tmp_path: Path) -> None:
    h = worker_kill.setup(tmp_path)
    rng = random.Random(1)
    results = [worker_kill.trial(h, n, rng) for n in range(2)]
    assert sum(r["kills"] for r in results) >= 2
    for r in results:
        assert r["problems"] == [], r
        assert r["versions"] == 1 and r["attempts"] >= r["kills"] + 1
