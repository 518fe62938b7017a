"""Consent of a data source's owner: granted until a withdrawal is filed; withdrawn once it is approved."""

from __future__ import annotations

from enum import StrEnum


class ConsentState(StrEnum):
    GRANTED = "granted"
    WITHDRAWAL_PENDING = "withdrawal_pending"  # a consent-withdrawal proposal is open
    WITHDRAWN = "withdrawn"  # approved: the data source is forgotten and never trained on again
