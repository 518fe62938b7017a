"""What the contribution ledger's API returns (docs/ledger.md): a data source's lineage through the model
versions, and each node's contribution to a training job (also as open data, one row per version and node)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from governance.schemas import DataSourcePublic


class LedgerVersion(BaseModel):
    """One model version and whether it holds the data source."""

    version: str
    parent_version: str | None
    kind: str = Field(description="init | train | unlearn")
    state: str = Field(description="candidate | verified | failed | released | rejected")
    holds: str = Field(description="contains | never | removed | unknown")
    since: str | None = Field(description="the version that brought the source in, or removed it")
    job_id: str | None
    proposal_id: int | None
    created_at: datetime
    released_at: datetime | None


class LedgerUnlearning(BaseModel):
    """A version that unlearned the data source, with its verification report."""

    version: str
    state: str
    proposal_id: int | None
    report_id: int | None
    passed: bool | None = Field(description="the latest report on this exact model; None: not verified yet")
    summary: str | None
    policy_hash: str | None
    report_url: str | None


class ContributionRow(BaseModel):
    """One node's contribution to one training job: the open-data row (unlearning.contract
    CONTRIBUTION_COLUMNS; the CSV has the same columns in the same order)."""

    model_version: str
    job_id: str | None
    method: str
    utility: str = Field(description="accuracy | loss: what the scores are shares of")
    partition: int
    node: str
    sources: str = Field(description="the node's data sources, space-separated federation names")
    score: float = Field(description="the sum over rounds of the node's per-round Shapley value")
    share: float | None = Field(description="score / total_improvement; None when the model did not improve")
    rounds: int
    total_improvement: float


class ModelContribution(BaseModel):
    """A training job's contribution section, as stored with its model version."""

    model_version: str
    job_id: str | None
    method: str
    utility: str
    initial_utility: float | None
    final_utility: float | None
    total_improvement: float
    sum_of_scores: float
    residual: float = Field(description="total_improvement - sum_of_scores (truncation's error)")
    nodes: list[ContributionRow]
    rounds: list[dict[str, Any]]
    cost: dict[str, Any] = Field(description="evaluations, exchanges, messages, bytes, CPU and wall seconds")
    settings: dict[str, Any]
    audit_seq: int = Field(description="the model.trained audit entry that records it")


class DataSourceLedger(BaseModel):
    """Is my data in the released model? The answer, the lineage behind it and the audit proofs."""

    data_source: DataSourcePublic
    federation_name: str = Field(description="the source's name in jobs and datasets (node-K/<name>)")
    answer: str = Field(description="yes | no | unknown | no released model")
    explanation: str
    released_version: str | None = Field(
        description="the latest released version, the one the answer is about"
    )
    trained_in: list[LedgerVersion] = Field(
        description="versions whose own training job trained on the source"
    )
    unlearned_by: list[LedgerUnlearning]
    released_containing: list[str] = Field(description="released versions that still hold the source")
    released_without: list[str] = Field(
        description="released versions that do not (never did, or unlearned it)"
    )
    versions: list[LedgerVersion] = Field(description="every registered version, newest first")
    contributions: list[ContributionRow] = Field(description="its node's contribution in those training jobs")
    proofs: list[dict[str, Any]] = Field(
        description="the audit entries behind each step, with inclusion proofs against the checkpoint"
    )
    checkpoint: dict[str, Any] = Field(description="the signed checkpoint every proof leads to")
