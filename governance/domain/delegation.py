"""Delegation (liquid democracy) as pure functions: scopes, which delegation applies to a poll, cycles, and how
a poll's frozen delegations turn the direct votes into votes cast, direct and delegated.

Rules (docs/governance.md, "Delegation"):

- a member delegates their vote to another member for everything or for a topic: a target kind
  (``data_source``, ``category``, ``behaviour``, or ``election`` for elections), a category name, or a tag;
  one delegation per member and scope; revocable at any time;
- for a poll, each member's delegation is the most specific one whose scope matches the poll: a tag, then a
  category, then a target kind, then everything (between two matching tags, the older delegation);
- delegation is transitive: a delegator's vote follows their delegate's vote, or, when the delegate did not
  vote, the delegate's own delegate's, and so on, at most ``max_depth`` hops; beyond that it is not cast;
- a cycle (A to B to A on a topic both delegations could apply to) is refused when it would be made;
- a member who votes directly overrides their delegation for that poll (and carries the votes delegated to
  them);
- a recused delegate (the owner of the targeted data source, an election's candidate, a member who declared
  a conflict of interest on the proposal) cannot cast the votes they carry: those votes pass on up the chain,
  as if the recused delegate had not voted (their own vote still counts, as every member's does).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from governance.domain.errors import Conflict, InvalidInput
from governance.domain.proposals import TargetKind
from governance.domain.voting import Tally, VoteChoice, VotingRules, check_text, tally

ELECTION = "election"  # the "target kind" of an election (it has no unlearning target)
TOPIC_KINDS = (*(k.value for k in TargetKind), ELECTION)
MAX_SCOPE_VALUE = 100
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
MAX_TAGS = 10


class ScopeKind(StrEnum):
    ALL = "all"
    TARGET_KIND = "target_kind"
    CATEGORY = "category"
    TAG = "tag"


SPECIFICITY = {ScopeKind.TAG: 3, ScopeKind.CATEGORY: 2, ScopeKind.TARGET_KIND: 1, ScopeKind.ALL: 0}


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind
    value: str = ""

    @property
    def label(self) -> str:
        if self.kind is ScopeKind.ALL:
            return "everything"
        return f"{self.kind.value.replace('_', ' ')} {self.value}"


def parse_tag(raw: str) -> str:
    tag = raw.strip().lower() if isinstance(raw, str) else ""
    if not TAG_RE.match(tag):
        raise InvalidInput(
            f"a tag is 1-40 lowercase letters, digits or ._- starting with a letter or digit (got {raw!r})",
            field="tags",
        )
    return tag


def parse_tags(raw: Iterable[str]) -> tuple[str, ...]:
    tags = sorted({parse_tag(t) for t in raw})
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags", field="tags")
    return tuple(tags)


def parse_scope(kind: str | None, value: str | None) -> Scope:
    """A scope from plain data (API, form, CLI); raises InvalidInput naming the field."""
    try:
        k = ScopeKind(kind or ScopeKind.ALL.value)
    except ValueError:
        allowed = ", ".join(s.value for s in ScopeKind)
        raise InvalidInput(f"scope must be one of: {allowed}", field="scope") from None
    v = (value or "").strip() if isinstance(value, str) or value is None else None
    if v is None:
        raise InvalidInput("the scope's value is text", field="scope_value")
    if k is ScopeKind.ALL:
        if v:
            raise InvalidInput("a delegation for everything takes no scope value", field="scope_value")
        return Scope(k)
    if not v:
        raise InvalidInput(
            f"a {k.value} delegation names its {k.value.replace('_', ' ')}", field="scope_value"
        )
    check_text(v, "scope_value")
    if k is ScopeKind.TARGET_KIND and v not in TOPIC_KINDS:
        raise InvalidInput(f"target kind must be one of: {', '.join(TOPIC_KINDS)}", field="scope_value")
    if k is ScopeKind.CATEGORY and len(v) > MAX_SCOPE_VALUE:
        raise InvalidInput(f"a category name is at most {MAX_SCOPE_VALUE} characters", field="scope_value")
    if k is ScopeKind.TAG:
        try:
            v = parse_tag(v)
        except InvalidInput as exc:
            raise InvalidInput(str(exc), field="scope_value") from None
    return Scope(k, v)


@dataclass(frozen=True)
class Topic:
    """What a poll is about, as delegation scopes see it."""

    target_kind: str | None  # data_source | category | behaviour | election
    category: str | None = None
    tags: frozenset[str] = frozenset()


def matches(scope: Scope, topic: Topic) -> bool:
    if scope.kind is ScopeKind.ALL:
        return True
    if scope.kind is ScopeKind.TARGET_KIND:
        return topic.target_kind == scope.value
    if scope.kind is ScopeKind.CATEGORY:
        return topic.target_kind == TargetKind.CATEGORY.value and topic.category == scope.value
    return scope.value in topic.tags


@dataclass(frozen=True)
class Delegation:
    id: int
    delegator: int
    delegate: int
    scope: Scope


def applicable(delegations: Iterable[Delegation], topic: Topic) -> dict[int, Delegation]:
    """For each delegator, the one delegation that applies to a poll on ``topic``: the most specific matching
    scope; between two matching ones of the same specificity (two tags), the older (lower id)."""
    chosen: dict[int, Delegation] = {}
    for d in delegations:
        if not matches(d.scope, topic):
            continue
        held = chosen.get(d.delegator)
        if held is None or (SPECIFICITY[d.scope.kind], -d.id) > (SPECIFICITY[held.scope.kind], -held.id):
            chosen[d.delegator] = d
    return chosen


# ------------------------------------------------------------------------------- making a delegation


@dataclass(frozen=True)
class _Constraint:
    """The topics every delegation on a path could apply to together (None: not narrowed yet)."""

    target_kind: str | None = None
    category: str | None = None

    def narrow(self, scope: Scope) -> _Constraint | None:
        """The constraint with ``scope`` added, or None when no topic matches all of them."""
        if scope.kind in (ScopeKind.ALL, ScopeKind.TAG):  # any poll may carry any tag
            return self
        if scope.kind is ScopeKind.TARGET_KIND:
            if self.target_kind not in (None, scope.value):
                return None
            return _Constraint(scope.value, self.category)
        if self.category not in (None, scope.value) or self.target_kind not in (
            None,
            TargetKind.CATEGORY.value,
        ):
            return None
        return _Constraint(TargetKind.CATEGORY.value, scope.value)


def find_cycle(active: Iterable[Delegation], new: Delegation) -> list[int] | None:
    """The members of a cycle that ``new`` would close, or None.

    A cycle counts when there is a poll every delegation on it could apply to (their scopes can match one
    topic). Which delegation wins for a member depends on the delegations they hold at the poll's opening, so
    the check ignores that precedence: a cycle that a more specific delegation hides today would appear when
    that one is revoked, and revocations are never refused."""
    start = _Constraint().narrow(new.scope)
    assert start is not None
    by_delegator: dict[int, list[Delegation]] = {}
    for d in active:
        by_delegator.setdefault(d.delegator, []).append(d)
    seen: set[tuple[int, _Constraint]] = set()
    stack: list[tuple[int, _Constraint, list[int]]] = [(new.delegate, start, [new.delegator, new.delegate])]
    while stack:
        member, constraint, path = stack.pop()
        if member == new.delegator:
            return path
        if (member, constraint) in seen:
            continue
        seen.add((member, constraint))
        for d in by_delegator.get(member, ()):
            narrowed = constraint.narrow(d.scope)
            if narrowed is not None:
                stack.append((d.delegate, narrowed, [*path, d.delegate]))
    return None


def check_new(active: Iterable[Delegation], new: Delegation) -> None:
    """Refuse a delegation to oneself, a second one for the same scope, or one that closes a cycle."""
    active = list(active)
    if new.delegate == new.delegator:
        raise InvalidInput("you cannot delegate your vote to yourself", field="delegate")
    for d in active:
        if d.delegator == new.delegator and d.scope == new.scope:
            raise Conflict(
                f"you already delegate {new.scope.label} to member {d.delegate} (delegation {d.id}); "
                "revoke it first"
            )
    cycle = find_cycle(active, new)
    if cycle is not None:
        chain = " -> ".join(f"member {m}" for m in cycle)
        raise Conflict(f"this delegation would make a cycle: {chain}")


# ------------------------------------------------------------------------------- counting a poll


class Fate(StrEnum):
    DIRECT = "direct"
    DELEGATED = "delegated"
    NOT_CAST = "not_cast"


@dataclass(slots=True)
class Ballot:
    """How one elector's vote was counted."""

    member: int
    fate: Fate
    choice: str | None = None
    cast_by: int | None = None  # whose vote it follows (the member themselves when direct)
    hops: int = 0
    passed_over: tuple[int, ...] = ()  # recused delegates on the way, who could not cast it
    why_not: str | None = None  # when not cast


@dataclass
class Resolution:
    ballots: dict[int, Ballot]
    direct: dict[str, int] = field(default_factory=dict)  # per choice
    delegated: dict[str, int] = field(default_factory=dict)  # per choice
    carried: dict[int, int] = field(default_factory=dict)  # voter -> delegated votes they cast

    def choices(self) -> Iterator[str]:
        """Every vote cast, direct and delegated (one per elector who has a vote cast)."""
        for b in self.ballots.values():
            if b.choice is not None:
                yield b.choice

    @property
    def delegated_total(self) -> int:
        return sum(self.delegated.values())


NO_VOTE = "no one on the delegation chain voted"
TOO_DEEP = "the chain to a voting delegate is longer than the depth limit"
CYCLE = "the delegation chain loops"


def _follow(
    member: int,
    edges: Mapping[int, int],
    direct: Mapping[int, str],
    recused: Collection[int],
    max_depth: int,
) -> Ballot:
    cur, hops, seen = member, 0, {member}
    passed: list[int] = []
    while True:
        nxt = edges.get(cur)
        if nxt is None:
            return Ballot(member, Fate.NOT_CAST, hops=hops, passed_over=tuple(passed), why_not=NO_VOTE)
        hops += 1
        if hops > max_depth:
            return Ballot(member, Fate.NOT_CAST, hops=hops, passed_over=tuple(passed), why_not=TOO_DEEP)
        if nxt in seen:  # refused when made; a frozen set still cannot loop forever
            return Ballot(member, Fate.NOT_CAST, hops=hops, passed_over=tuple(passed), why_not=CYCLE)
        seen.add(nxt)
        if nxt in direct:
            if nxt not in recused:
                return Ballot(member, Fate.DELEGATED, direct[nxt], nxt, hops, tuple(passed))
            passed.append(nxt)
        cur = nxt


def resolve(
    *,
    electors: Iterable[int],
    edges: Mapping[int, int],
    direct: Mapping[int, str],
    recused: Collection[int] = (),
    max_depth: int,
) -> Resolution:
    """Count a poll: each elector's direct vote, else the vote their delegation chain leads to.

    ``edges`` maps each delegator to their delegate for this poll (the frozen, applicable delegations);
    ``direct`` maps each member who voted to their current choice; ``recused`` are the members who may not
    cast the votes they carry. Members outside ``electors`` neither vote nor carry."""
    if max_depth < 1:
        raise ValueError("the depth limit is at least 1")
    voters = set(electors)
    direct = {m: c for m, c in direct.items() if m in voters}
    edges = {a: b for a, b in edges.items() if a in voters and b in voters}
    res = Resolution(ballots={})
    recused = frozenset(recused)
    for m in sorted(voters):
        if m in direct:
            choice = direct[m]
            b = Ballot(m, Fate.DIRECT, choice, m)
            res.direct[choice] = res.direct.get(choice, 0) + 1
        elif m not in edges:  # most electors: no delegation and no vote
            b = Ballot(m, Fate.NOT_CAST, why_not=NO_VOTE)
        else:
            b = _follow(m, edges, direct, recused, max_depth)
            if b.fate is Fate.DELEGATED:
                assert b.choice is not None and b.cast_by is not None
                res.delegated[b.choice] = res.delegated.get(b.choice, 0) + 1
                res.carried[b.cast_by] = res.carried.get(b.cast_by, 0) + 1
        res.ballots[m] = b
    return res


def carried_by(
    member: int,
    *,
    electors: Iterable[int],
    edges: Mapping[int, int],
    voted: Collection[int],
    recused: Collection[int] = (),
    max_depth: int,
) -> int:
    """How many votes ``member`` casts, or would cast by voting, on behalf of others: the electors whose
    chain reaches them first. Needs only *who* voted (public), never what anyone chose, so a delegate learns
    nothing of a hidden tally from it."""
    if member in recused:
        return 0
    direct = dict.fromkeys(voted, "x")
    direct[member] = "x"
    return resolve(
        electors=electors, edges=edges, direct=direct, recused=recused, max_depth=max_depth
    ).carried.get(member, 0)


def delegated_tally(
    res: Resolution,
    *,
    electorate: int,
    rules: VotingRules,
    edges: Mapping[int, int],
    recused: Collection[int] = (),
) -> Tally:
    """The tally of a resolved poll: every vote cast, with the delegated ones shown apart, and the recused
    delegates who carried votes they could not cast."""
    t = tally((VoteChoice(c) for c in res.choices()), electorate, rules)
    delegates = set(edges.values())
    return replace(
        t,
        delegated={c.value: res.delegated.get(c.value, 0) for c in VoteChoice},
        recused_delegates=tuple(sorted(m for m in recused if m in delegates)),
    )


class Turnout:
    """The turnout of a poll with delegations (votes cast, direct and delegated) kept up to date as votes
    arrive, for the late-quorum extension: what one more vote adds is found by walking back from the voter
    along the delegations, within the depth limit, instead of counting the whole poll again."""

    def __init__(
        self,
        *,
        edges: Mapping[int, int],
        voted: Iterable[int],
        recused: Collection[int] = (),
        max_depth: int,
    ) -> None:
        self.edges, self.recused, self.max_depth = dict(edges), frozenset(recused), max_depth
        self.voted = set(voted)
        self.delegators: dict[int, list[int]] = {}
        for a, b in self.edges.items():
            self.delegators.setdefault(b, []).append(a)
        electors = self.voted | set(self.edges) | set(self.edges.values())
        res = resolve(
            electors=electors,
            edges=self.edges,
            direct=dict.fromkeys(self.voted, "x"),
            recused=self.recused,
            max_depth=max_depth,
        )
        self.cast = {m for m, b in res.ballots.items() if b.fate is not Fate.NOT_CAST}

    @property
    def total(self) -> int:
        return len(self.cast)

    def _newly_cast(self, member: int) -> set[int]:
        """The electors whose vote ``member``'s first vote would cast that are not cast now (``member``
        included)."""
        if member in self.voted:
            return set()
        out = {member} - self.cast
        if member in self.recused:  # a recused delegate's vote carries nobody
            return out
        frontier, seen = [member], {member}
        for _ in range(self.max_depth):
            nxt = []
            for m in frontier:
                for d in self.delegators.get(m, ()):
                    if d in seen:
                        continue
                    seen.add(d)
                    if d in self.voted and d not in self.recused:
                        continue  # their own vote carries their delegators
                    if d not in self.voted and d not in self.cast:
                        out.add(d)
                    nxt.append(d)
            frontier = nxt
        return out

    def gain(self, member: int) -> int:
        """How much ``member``'s vote adds to the turnout now (0 for a change of vote)."""
        return len(self._newly_cast(member))

    def add(self, member: int) -> None:
        self.cast |= self._newly_cast(member)
        self.voted.add(member)
