"""Community evaluation: the members' evaluation probes and their triage (governance/services/probes.py).

The evaluation of a candidate itself is stored with the version, inside its signed verification report
(``report["community_evaluation"]``), so that the gate reads exactly what the verifier signed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

import governance.db.base  # noqa: F401  (naming convention first)
from governance.db.base import utcnow
from governance.db.types import UTCDateTime


class EvaluationProbe(SQLModel, table=True):
    __tablename__ = "evaluation_probe"
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=4000)
    kind: str = Field(max_length=16)  # forbidden | paired
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    spec_hash: str = Field(max_length=64)
    state: str = Field(default="submitted", max_length=16, index=True)  # submitted | accepted | rejected
    submitted_by: int = Field(foreign_key="member.id", index=True)
    reviewed_by: int | None = Field(default=None, foreign_key="member.id")
    review_reason: str = Field(default="", max_length=4000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    decided_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
