"""What the evaluation-probe API takes and returns (one family per entity; rows never leave)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from governance.bounds import JsonObject, Text, Title


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ProbeCreate(_In):
    title: Title = Field(description="what the probe checks, in a few words (3-200 characters)")
    description: Text = Field(
        default="", description="why it matters; shown to reviewers and on version pages"
    )
    spec: JsonObject = Field(
        description=(
            'the probe: {"kind": "forbidden", "prompts": [{"prompt": str, "forbidden": [str, ...]}], '
            '"max_new_tokens": 32} or {"kind": "paired", "pairs": [{"a": str, "b": str, "completion": str}], '
            '"threshold": 0.5} (see docs/verification.md, "Community evaluation")'
        )
    )


class ProbeDecisionIn(_In):
    reason: Text = Field(default="", description="why (shown with the probe and in the audit log)")


class ProbePublic(BaseModel):
    id: int
    title: str
    description: str
    kind: str
    spec: dict[str, Any]
    spec_hash: str
    state: str
    submitted_by: int
    reviewed_by: int | None
    review_reason: str
    created_at: datetime
    decided_at: datetime | None
