"""Member votes and the tally: pure functions, no storage.

Rules (docs/governance.md):
- choices: approve, object, abstain, block; object and block need a reason;
- quorum: share of the frozen electorate that voted (abstain and block count toward it);
- support: approve / (approve + object) must reach the threshold;
- any block sends the proposal to council review with the block on record;
- the latest vote of a member counts; a vote cast after the deadline is refused;
- if quorum is first reached within the last ``extension_window`` before the deadline, the deadline
  extends once by ``extension``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from governance.domain.errors import InvalidInput


class VoteChoice(StrEnum):
    APPROVE = "approve"
    OBJECT = "object"
    ABSTAIN = "abstain"
    BLOCK = "block"


REASON_REQUIRED = frozenset({VoteChoice.OBJECT, VoteChoice.BLOCK})
MAX_REASON = 4000


def parse_vote(choice: str, reason: str | None) -> tuple[VoteChoice, str | None]:
    try:
        parsed = VoteChoice(choice)
    except ValueError:
        allowed = ", ".join(c.value for c in VoteChoice)
        raise InvalidInput(f"vote must be one of: {allowed}", field="choice") from None
    reason = (reason or "").strip() or None
    if reason is not None:
        check_text(reason, "reason")
    if parsed in REASON_REQUIRED and reason is None:
        raise InvalidInput(f"a vote to {parsed.value} needs a reason", field="reason")
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters", field="reason")
    return parsed, reason


def check_text(text: str, field: str) -> None:
    """Text every database stores as given: no NUL byte (PostgreSQL refuses it) and valid Unicode (no lone
    surrogate, which neither database can encode)."""
    if "\x00" in text:
        raise InvalidInput(f"the {field} contains a NUL character", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"the {field} is not valid Unicode", field=field) from None


@dataclass(frozen=True)
class VotingRules:
    quorum: float  # share of the electorate, 0 < q <= 1
    support_threshold: float  # approve / (approve + object), 0 < t <= 1
    extension_window: timedelta
    extension: timedelta

    def __post_init__(self) -> None:
        if not 0 < self.quorum <= 1:
            raise InvalidInput("quorum must be in (0, 1]", field="quorum")
        if not 0 < self.support_threshold <= 1:
            raise InvalidInput("support threshold must be in (0, 1]", field="support_threshold")


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED_QUORUM = "failed_quorum"
    FAILED_SUPPORT = "failed_support"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Tally:
    electorate: int
    approve: int
    object: int
    abstain: int
    block: int
    quorum_reached: bool
    support: float | None  # None when nobody approved or objected
    outcome: Outcome
    # of the counts above, the votes delegates cast for others, per choice (None: the poll froze no
    # delegation), and the delegates recused from casting what they carry (governance/domain/delegation.py)
    delegated: Mapping[str, int] | None = None
    recused_delegates: tuple[int, ...] = ()

    @property
    def turnout(self) -> int:
        return self.approve + self.object + self.abstain + self.block

    @property
    def direct(self) -> dict[str, int]:
        """The votes members cast themselves, per choice."""
        delegated = self.delegated or {}
        counts = {
            "approve": self.approve,
            "object": self.object,
            "abstain": self.abstain,
            "block": self.block,
        }
        return {c: n - delegated.get(c, 0) for c, n in counts.items()}


def as_fraction(share: float) -> Fraction:
    """Shares are compared exactly: 2/3 given as 0.666... means two thirds, not a hair more."""
    return Fraction(share).limit_denominator(10_000)


def quorum_reached(turnout: int, electorate: int, quorum: float) -> bool:
    if electorate <= 0:
        return False
    return turnout > 0 and Fraction(turnout, electorate) >= as_fraction(quorum)


def tally(choices: Iterable[VoteChoice], electorate: int, rules: VotingRules) -> Tally:
    """Count the *current* vote of each member (one per member) against the frozen electorate size."""
    counts = dict.fromkeys(VoteChoice, 0)
    for c in choices:
        counts[c] += 1
    turnout = sum(counts.values())
    if turnout > electorate:
        raise ValueError(f"{turnout} votes for an electorate of {electorate}")
    decisive = counts[VoteChoice.APPROVE] + counts[VoteChoice.OBJECT]
    support = counts[VoteChoice.APPROVE] / decisive if decisive else None
    has_quorum = quorum_reached(turnout, electorate, rules.quorum)
    if counts[VoteChoice.BLOCK]:
        outcome = Outcome.BLOCKED
    elif not has_quorum:
        outcome = Outcome.FAILED_QUORUM
    elif not decisive or Fraction(counts[VoteChoice.APPROVE], decisive) < as_fraction(
        rules.support_threshold
    ):
        outcome = Outcome.FAILED_SUPPORT
    else:
        outcome = Outcome.PASSED
    return Tally(
        electorate=electorate,
        approve=counts[VoteChoice.APPROVE],
        object=counts[VoteChoice.OBJECT],
        abstain=counts[VoteChoice.ABSTAIN],
        block=counts[VoteChoice.BLOCK],
        quorum_reached=has_quorum,
        support=support,
        outcome=outcome,
    )


def extended_deadline(
    *,
    deadline: datetime,
    already_extended: bool,
    now: datetime,
    turnout_before: int,
    turnout_after: int,
    electorate: int,
    rules: VotingRules,
) -> datetime | None:
    """The new deadline if this vote made quorum within the last stretch before the deadline, else None."""
    if already_extended or now >= deadline or rules.extension <= timedelta(0):
        return None
    if now < deadline - rules.extension_window:
        return None
    before = quorum_reached(turnout_before, electorate, rules.quorum)
    after = quorum_reached(turnout_after, electorate, rules.quorum)
    if after and not before:
        return deadline + rules.extension
    return None
