"""SQLModel table of the contribution ledger: what a training job trained on and each node's contribution.

One row per trained model version, written when the version enters the registry from the artifact store
(governance/services/ledger.py), in the same transaction as its ``model.trained`` audit entry. Which data
sources every other version holds is derived from these rows and the registry's parent chain (an unlearning
version holds its parent's sources less the one it unlearned), never stored twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

import governance.db.base  # noqa: F401  (naming convention first)
from governance.db.base import utcnow
from governance.db.types import UTCDateTime


class TrainingRecord(SQLModel, table=True):
    __tablename__ = "training_record"
    model_version: str = Field(foreign_key="model_version.version", primary_key=True, max_length=64)
    job_id: str | None = Field(default=None, max_length=200)
    # the data sources the job trained on: [{"name": "node-0/notebook", "sha256": ..., "partition": 0}];
    # None when the job did not record them (its dataset's manifest was not on the server)
    sources: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # the job's contribution section (unlearning.contract.CONTRIBUTION_FORMAT), None when not measured
    contribution: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    audit_seq: int = Field(default=-1)  # the model.trained audit entry that records this row
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
