"""Delegation's rules, pure: scopes and which delegation applies, cycles refused when made, transitive
resolution with overrides, the depth limit and recusal, and the tally with delegated weight apart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.domain.delegation import (
    CYCLE,
    NO_VOTE,
    TOO_DEEP,
    Delegation,
    Fate,
    Scope,
    ScopeKind,
    Topic,
    Turnout,
    applicable,
    carried_by,
    check_new,
    delegated_tally,
    find_cycle,
    parse_scope,
    parse_tags,
    resolve,
)
from governance.domain.errors import Conflict, InvalidInput
from governance.domain.voting import Outcome, VotingRules

ALL = Scope(ScopeKind.ALL)
RULES = VotingRules(quorum=0.5, support_threshold=0.6, extension_window=timedelta(0), extension=timedelta(0))


def d(i: int, a: int, b: int, scope: Scope = ALL) -> Delegation:
    return Delegation(i, a, b, scope)


def cat(name: str) -> Scope:
    return Scope(ScopeKind.CATEGORY, name)


def kind(name: str) -> Scope:
    return Scope(ScopeKind.TARGET_KIND, name)


def tag(name: str) -> Scope:
    return Scope(ScopeKind.TAG, name)


# ------------------------------------------------------------------------------- scopes


def test_parse_scope_accepts_the_four_kinds_and_refuses_bad_input() -> None:
    assert parse_scope(None, None) == ALL
    assert parse_scope("all", "") == ALL
    assert parse_scope("target_kind", "data_source") == kind("data_source")
    assert parse_scope("target_kind", "election") == kind("election")
    assert parse_scope("category", " cooking ") == cat("cooking")
    assert parse_scope("tag", "Privacy") == tag("privacy")
    for k, v, field in [
        ("everything", "", "scope"),
        ("all", "x", "scope_value"),
        ("target_kind", "recipes", "scope_value"),
        ("category", "", "scope_value"),
        ("category", "x" * 101, "scope_value"),
        ("category", "a\x00b", "scope_value"),
        ("tag", "two words", "scope_value"),
        ("tag", "-x", "scope_value"),
    ]:
        with pytest.raises(InvalidInput) as exc:
            parse_scope(k, v)
        assert exc.value.field == field, (k, v)
    assert parse_tags(["b", "A", "a"]) == ("a", "b")
    with pytest.raises(InvalidInput):
        parse_tags([f"t{i}" for i in range(11)])


def test_the_most_specific_matching_delegation_applies() -> None:
    ds = [
        d(1, 1, 10),  # everything
        d(2, 1, 11, kind("category")),
        d(3, 1, 12, cat("cooking")),
        d(4, 1, 13, tag("health")),
        d(5, 1, 14, tag("food")),
        d(6, 2, 20, kind("data_source")),
    ]
    cooking = Topic("category", "cooking")
    assert applicable(ds, cooking)[1].delegate == 12
    assert applicable(ds, Topic("category", "garden"))[1].delegate == 11
    assert applicable(ds, Topic("behaviour"))[1].delegate == 10
    # two matching tags: the older delegation wins
    assert applicable(ds, Topic("category", "cooking", frozenset({"food", "health"})))[1].delegate == 13
    assert applicable(ds, Topic("category", "cooking", frozenset({"food"})))[1].delegate == 14
    assert 2 not in applicable(ds, cooking)
    assert applicable(ds, Topic("data_source"))[2].delegate == 20
    assert (
        applicable(ds, Topic("election"))[1].delegate == 10
    )  # elections: everything (or target kind election)


# ------------------------------------------------------------------------------- making one


def test_self_delegation_and_a_second_one_for_the_same_scope_are_refused() -> None:
    with pytest.raises(InvalidInput):
        check_new([], d(1, 5, 5))
    with pytest.raises(Conflict, match="revoke it first"):
        check_new([d(1, 5, 6, cat("x"))], d(2, 5, 7, cat("x")))
    check_new([d(1, 5, 6, cat("x"))], d(2, 5, 7, cat("y")))  # another scope is fine


def test_cycles_are_refused_when_made() -> None:
    chain = [d(1, 1, 2), d(2, 2, 3)]
    with pytest.raises(Conflict, match="member 3 -> member 1 -> member 2 -> member 3"):
        check_new(chain, d(3, 3, 1))
    check_new(chain, d(3, 3, 4))
    # scopes that can never meet on one poll make no cycle
    assert find_cycle([d(1, 1, 2, cat("a"))], d(2, 2, 1, cat("b"))) is None
    assert find_cycle([d(1, 1, 2, kind("data_source"))], d(2, 2, 1, cat("b"))) is None
    assert find_cycle([d(1, 1, 2, kind("data_source"))], d(2, 2, 1, kind("behaviour"))) is None
    # ... and scopes that can do
    assert find_cycle([d(1, 1, 2, cat("a"))], d(2, 2, 1)) == [2, 1, 2]
    assert find_cycle([d(1, 1, 2, kind("category"))], d(2, 2, 1, cat("a"))) == [2, 1, 2]
    assert find_cycle([d(1, 1, 2, tag("x"))], d(2, 2, 1, kind("data_source"))) == [2, 1, 2]
    # the constraint travels along the path: a category a, then a category b, never meet
    assert find_cycle([d(1, 1, 2, cat("a")), d(2, 2, 3, cat("b"))], d(3, 3, 1)) is None
    assert find_cycle([d(1, 1, 2, cat("a")), d(2, 2, 3)], d(3, 3, 1)) == [3, 1, 2, 3]
    # a more specific delegation hiding a cycle today still refuses it (revoking it must not make one)
    assert find_cycle([d(1, 1, 2), d(2, 1, 9, cat("a"))], d(3, 2, 1, cat("a"))) == [2, 1, 2]


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=25))
def test_accepted_delegations_never_form_a_cycle(pairs: list[tuple[int, int]]) -> None:
    active: list[Delegation] = []
    for i, (a, b) in enumerate(pairs):
        new = d(i, a, b)
        try:
            check_new(active, new)
        except (Conflict, InvalidInput):
            continue
        active.append(new)
    edges = {x.delegator: x.delegate for x in active}
    for start in edges:  # follow every chain: it ends
        seen, cur = {start}, start
        while cur in edges:
            cur = edges[cur]
            assert cur not in seen
            seen.add(cur)


# ------------------------------------------------------------------------------- counting


def test_transitive_chain_override_and_depth() -> None:
    edges = {1: 2, 2: 3, 3: 4, 5: 1}
    # 4 votes: 3, 2, 1 follow (1, 2, 3 hops); 5 is 4 hops away: beyond a depth of 3
    r = resolve(electors=range(1, 7), edges=edges, direct={4: "approve"}, max_depth=3)
    assert {m: (b.fate, b.cast_by, b.hops) for m, b in r.ballots.items() if b.fate is Fate.DELEGATED} == {
        1: (Fate.DELEGATED, 4, 3),
        2: (Fate.DELEGATED, 4, 2),
        3: (Fate.DELEGATED, 4, 1),
    }
    assert r.ballots[5].fate is Fate.NOT_CAST and r.ballots[5].why_not == TOO_DEEP
    assert r.ballots[6].why_not == NO_VOTE
    assert r.direct == {"approve": 1} and r.delegated == {"approve": 3} and r.carried == {4: 3}
    # 2 votes directly: that overrides 2's delegation, and 2 now carries 1 and 5
    r = resolve(electors=range(1, 7), edges=edges, direct={4: "approve", 2: "object"}, max_depth=3)
    assert r.ballots[2].fate is Fate.DIRECT and r.ballots[2].choice == "object"
    assert (r.ballots[1].cast_by, r.ballots[5].cast_by, r.ballots[5].hops) == (2, 2, 2)
    assert r.carried == {2: 2, 4: 1}
    assert r.direct == {"approve": 1, "object": 1} and r.delegated == {"object": 2, "approve": 1}


def test_recused_delegate_passes_the_votes_up_the_chain() -> None:
    edges = {1: 2, 2: 3}
    # 2 is recused (owns the data source): 2's own vote counts, 1's goes on to 3
    r = resolve(electors=[1, 2, 3], edges=edges, direct={2: "object", 3: "approve"}, recused={2}, max_depth=3)
    assert r.ballots[2].choice == "object" and r.ballots[2].fate is Fate.DIRECT
    assert r.ballots[1].cast_by == 3 and r.ballots[1].passed_over == (2,) and r.ballots[1].hops == 2
    assert r.carried == {3: 1}
    # with nobody further up, the carried vote is not cast
    r = resolve(electors=[1, 2], edges={1: 2}, direct={2: "approve"}, recused={2}, max_depth=3)
    assert r.ballots[1].fate is Fate.NOT_CAST and r.ballots[1].passed_over == (2,)
    assert carried_by(2, electors=[1, 2], edges={1: 2}, voted=[2], recused={2}, max_depth=3) == 0


def test_non_electors_neither_vote_nor_carry_and_loops_end() -> None:
    r = resolve(electors=[1, 2], edges={1: 3, 2: 1}, direct={3: "approve"}, max_depth=5)
    assert r.ballots[1].fate is Fate.NOT_CAST and 3 not in r.ballots
    r = resolve(electors=[1, 2, 3], edges={1: 2, 2: 1}, direct={}, max_depth=5)
    assert r.ballots[1].why_not == CYCLE


def test_carried_by_counts_whom_a_delegate_would_cast_for_from_who_voted_only() -> None:
    edges = {1: 3, 2: 3, 4: 2, 5: 6}
    assert carried_by(3, electors=range(1, 7), edges=edges, voted=[], max_depth=3) == 3
    assert carried_by(3, electors=range(1, 7), edges=edges, voted=[1], max_depth=3) == 2  # 1 overrode
    assert carried_by(3, electors=range(1, 7), edges=edges, voted=[2], max_depth=3) == 1  # 2, 4 leave
    assert carried_by(2, electors=range(1, 7), edges=edges, voted=[], max_depth=3) == 1
    assert carried_by(3, electors=range(1, 7), edges=edges, voted=[], max_depth=1) == 2


def test_the_tally_counts_delegated_votes_and_shows_them_apart() -> None:
    edges = {1: 4, 2: 4, 3: 4}
    r = resolve(
        electors=range(1, 11), edges=edges, direct={4: "approve", 5: "object"}, recused={9}, max_depth=3
    )
    t = delegated_tally(r, electorate=10, rules=RULES, edges=edges, recused={9})
    assert (t.approve, t.object, t.turnout) == (4, 1, 5)
    assert t.delegated == {"approve": 3, "object": 0, "abstain": 0, "block": 0}
    assert t.direct == {"approve": 1, "object": 1, "abstain": 0, "block": 0}
    assert t.quorum_reached and t.outcome is Outcome.PASSED  # 2 direct votes alone would not make quorum
    assert t.recused_delegates == ()  # 9 carries nothing


def _oracle(electors: list[int], edges: dict[int, int], direct: dict[int, str], depth: int) -> dict[int, str]:
    """Brute force: walk each chain up to ``depth`` hops and take the first vote."""
    out = {}
    for m in electors:
        if m in direct:
            out[m] = direct[m]
            continue
        cur = m
        for _ in range(depth):
            if cur not in edges:
                break
            cur = edges[cur]
            if cur in direct:
                out[m] = direct[cur]
                break
    return out


@given(
    st.dictionaries(st.integers(0, 9), st.integers(0, 9), max_size=10),
    st.dictionaries(st.integers(0, 9), st.sampled_from(["approve", "object", "abstain"]), max_size=10),
    st.integers(1, 4),
)
def test_resolution_matches_a_brute_force_walk(
    edges: dict[int, int], direct: dict[int, str], depth: int
) -> None:
    edges = {a: b for a, b in edges.items() if a != b}
    r = resolve(electors=range(10), edges=edges, direct=direct, max_depth=depth)
    counted = {m: b.choice for m, b in r.ballots.items() if b.choice is not None}
    assert counted == _oracle(list(range(10)), edges, direct, depth)
    assert sum(r.direct.values()) == len(direct)
    assert sum(r.delegated.values()) == sum(r.carried.values()) <= 10 - len(direct)


def _cast_count(edges: dict[int, int], voted: set[int], recused: set[int], depth: int) -> int:
    r = resolve(
        electors=range(12), edges=edges, direct=dict.fromkeys(voted, "x"), recused=recused, max_depth=depth
    )
    return sum(1 for b in r.ballots.values() if b.fate is not Fate.NOT_CAST)


@given(
    st.dictionaries(st.integers(0, 11), st.integers(0, 11), max_size=12),
    st.sets(st.integers(0, 11), max_size=4),
    st.lists(st.integers(0, 11), max_size=12),
    st.sets(st.integers(0, 11), max_size=3),
    st.integers(1, 4),
)
def test_the_incremental_turnout_equals_a_full_recount(
    edges: dict[int, int], voted: set[int], arrivals: list[int], recused: set[int], depth: int
) -> None:
    edges = {a: b for a, b in edges.items() if a != b}
    t = Turnout(edges=edges, voted=voted, recused=recused, max_depth=depth)
    assert t.total == _cast_count(edges, voted, recused, depth)
    for m in arrivals:
        before = _cast_count(edges, voted, recused, depth)
        gain = t.gain(m)
        t.add(m)
        voted = voted | {m}
        assert t.total == _cast_count(edges, voted, recused, depth) == before + gain
