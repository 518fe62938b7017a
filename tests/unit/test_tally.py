"""The tally, exhaustively for small electorates against an exact-fraction oracle, and by property."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.domain.errors import InvalidInput
from governance.domain.voting import (
    Outcome,
    VoteChoice,
    VotingRules,
    extended_deadline,
    parse_vote,
    quorum_reached,
    tally,
)

DAY = timedelta(days=1)


def rules(q: float, t: float) -> VotingRules:
    return VotingRules(quorum=q, support_threshold=t, extension_window=DAY, extension=DAY)


def oracle(a: int, o: int, x: int, b: int, n: int, q: Fraction, t: Fraction) -> Outcome:
    if b:
        return Outcome.BLOCKED
    if Fraction(a + o + x + b, n) < q:
        return Outcome.FAILED_QUORUM
    if a + o == 0 or Fraction(a, a + o) < t:
        return Outcome.FAILED_SUPPORT
    return Outcome.PASSED


QS = [(0.3, Fraction(3, 10)), (0.5, Fraction(1, 2)), (2 / 3, Fraction(2, 3)), (1.0, Fraction(1))]
TS = [(0.5, Fraction(1, 2)), (0.6, Fraction(3, 5)), (2 / 3, Fraction(2, 3)), (1.0, Fraction(1))]


@pytest.mark.parametrize("n", range(1, 9))
def test_exhaustive_small_electorates(n: int) -> None:
    checked = 0
    for (qf, qx), (tf, tx) in product(QS, TS):
        r = rules(qf, tf)
        for a, o, x, b in product(range(n + 1), repeat=4):
            if a + o + x + b > n:
                continue
            choices = (
                [VoteChoice.APPROVE] * a
                + [VoteChoice.OBJECT] * o
                + [VoteChoice.ABSTAIN] * x
                + [VoteChoice.BLOCK] * b
            )
            t = tally(choices, n, r)
            assert (t.approve, t.object, t.abstain, t.block, t.turnout) == (a, o, x, b, a + o + x + b)
            assert t.outcome is oracle(a, o, x, b, n, qx, tx), (a, o, x, b, n, qf, tf)
            checked += 1
    assert checked > 0


def test_abstain_counts_toward_quorum_not_support() -> None:
    r = rules(0.5, 0.6)
    t = tally([VoteChoice.APPROVE, VoteChoice.ABSTAIN, VoteChoice.ABSTAIN], 6, r)
    assert t.quorum_reached and t.support == 1.0 and t.outcome is Outcome.PASSED
    t = tally([VoteChoice.APPROVE], 6, r)
    assert not t.quorum_reached and t.outcome is Outcome.FAILED_QUORUM


def test_more_votes_than_electorate_is_a_bug() -> None:
    with pytest.raises(ValueError):
        tally([VoteChoice.APPROVE] * 3, 2, rules(0.5, 0.5))


@given(
    st.lists(st.sampled_from(list(VoteChoice)), max_size=60),
    st.integers(min_value=0, max_value=40),
    st.floats(min_value=0.01, max_value=1.0),
    st.floats(min_value=0.01, max_value=1.0),
)
def test_tally_properties(choices: list[VoteChoice], extra: int, q: float, t: float) -> None:
    n = len(choices) + extra
    if n == 0:
        return
    result = tally(choices, n, rules(q, t))
    assert result.turnout == len(choices)
    # order of votes never matters
    assert tally(list(reversed(choices)), n, rules(q, t)) == result
    if result.outcome is Outcome.PASSED:
        assert result.block == 0 and result.quorum_reached and result.support is not None
        # one more approval never turns a pass into a fail
        if extra:
            assert tally([*choices, VoteChoice.APPROVE], n, rules(q, t)).outcome is Outcome.PASSED
    if result.block:
        assert result.outcome is Outcome.BLOCKED


@given(st.integers(1, 500), st.integers(0, 500), st.floats(0.001, 1.0))
def test_quorum_is_an_exact_share(n: int, turnout: int, q: float) -> None:
    turnout = min(turnout, n)
    needed = max(1, math.ceil(Fraction(q).limit_denominator(10_000) * n))  # voters needed, counted up
    assert quorum_reached(turnout, n, q) == (turnout >= needed)
    assert quorum_reached(n, n, q)  # full turnout always makes quorum


def test_parse_vote_requires_reason_for_object_and_block() -> None:
    assert parse_vote("approve", None) == (VoteChoice.APPROVE, None)
    with pytest.raises(InvalidInput, match="reason"):
        parse_vote("object", "  ")
    with pytest.raises(InvalidInput, match="reason"):
        parse_vote("block", None)
    with pytest.raises(InvalidInput, match="one of"):
        parse_vote("maybe", None)


def test_deadline_extends_once_when_quorum_reached_late() -> None:
    r = rules(0.5, 0.6)
    deadline = datetime(2026, 1, 8, tzinfo=UTC)
    late = deadline - timedelta(hours=2)
    kw = dict(deadline=deadline, electorate=4, rules=r)
    # quorum (2 of 4) first reached in the last day: extend by a day
    assert extended_deadline(already_extended=False, now=late, turnout_before=1, turnout_after=2, **kw) == (
        deadline + DAY
    )
    # only once
    assert extended_deadline(already_extended=True, now=late, turnout_before=1, turnout_after=2, **kw) is None
    # early quorum does not extend
    early = deadline - 3 * DAY
    assert (
        extended_deadline(already_extended=False, now=early, turnout_before=1, turnout_after=2, **kw) is None
    )
    # quorum already reached before this vote: no extension
    assert (
        extended_deadline(already_extended=False, now=late, turnout_before=2, turnout_after=3, **kw) is None
    )
    # a vote change (turnout unchanged) never extends
    assert (
        extended_deadline(already_extended=False, now=late, turnout_before=1, turnout_after=1, **kw) is None
    )
