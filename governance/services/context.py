"""What every use case needs: the engine, the clock, the policy and the settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from governance.domain.clock import Clock, SystemClock
from governance.domain.review import Policy
from governance.domain.voting import VotingRules
from governance.settings import Settings


def policy_from_settings(s: Settings) -> Policy:
    return Policy(
        triage_approvals_required=s.triage_approvals_required,
        triage_period=timedelta(days=s.triage_days),
        voting_period=timedelta(days=s.voting_days),
        council_period=timedelta(days=s.council_days),
        appeal_period=timedelta(days=s.appeal_days),
        voting=VotingRules(
            quorum=s.quorum,
            support_threshold=s.support_threshold,
            extension_window=timedelta(hours=s.extension_window_hours),
            extension=timedelta(hours=s.extension_hours),
        ),
    )


@dataclass
class Ctx:
    engine: Engine
    settings: Settings
    clock: Clock
    policy: Policy
    vote_batcher: Any = None  # governance.services.votes.VoteBatcher when the service runs one

    @classmethod
    def create(cls, engine: Engine, settings: Settings, clock: Clock | None = None) -> Ctx:
        return cls(engine, settings, clock or SystemClock(), policy_from_settings(settings))
