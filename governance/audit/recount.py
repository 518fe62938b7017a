"""Recount a proposal's vote from an audit export. Pure: the export's bytes in, the counts out.

A community member who doubts a tally runs this on the export (``commons audit recount log.jsonl 12``, after
``commons audit verify log.jsonl``, which checks that the export is the signed log). For each poll of the
proposal (from its ``proposal.electorate_frozen`` entry to its ``proposal.tally`` entry) it takes the vote
entries in log order, the latest vote of each member counting, and reads each choice:

- from the entry's payload (``"choice"``) for an ordinary vote;
- for a vote of a hidden tally (the entry commits to the choice as ``sensitive.choice``), from the
  ``proposal.votes_revealed`` entry appended when the poll closed, whose ``{seq, choice, salt}`` must match the
  commitment: SHA-256(salt || choice).

It then compares the counts with the ones the ``proposal.tally`` entry published. A choice that was never
revealed (the poll is still open) or whose reveal does not match its commitment is reported, never guessed.

A poll with delegations (docs/governance.md, "Delegation") has a ``proposal.delegations_frozen`` entry after its
electorate: the delegations that count, ``[delegator, delegate]``, each one its delegator made
(``delegation.created``) and had not revoked (``delegation.revoked``) by then, and the depth limit. A delegator
who revoked during the poll has a ``proposal.delegation_withdrawn`` entry. The recount resolves the chains
itself (governance/domain/delegation.py): a member's own vote, else their chain's first voting delegate within
the depth limit, passing over recused delegates, whom it also derives from the log (the targeted data source's
owner from its ``data_source.registered`` entry, an election's candidate from ``proposal.created``, members who
declared a conflict). It compares the delegated votes, per choice, with the tally entry's ``delegated``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from governance.audit.canonical import EntryFormatError, commitment, strict_loads
from governance.domain.delegation import resolve

CHOICES = ("approve", "object", "abstain", "block")
VOTE_ACTIONS = ("proposal.vote_cast", "proposal.vote_changed")
REVEAL_ACTION = "proposal.votes_revealed"
TALLY_ACTION = "proposal.tally"
OPEN_ACTION = "proposal.electorate_frozen"
DELEGATIONS_ACTION = "proposal.delegations_frozen"
WITHDRAWN_ACTION = "proposal.delegation_withdrawn"
CREATED_ACTION = "proposal.created"
CONFLICT_ACTION = "proposal.declare_conflict"
SOURCE_ACTION = "data_source.registered"
DELEGATED_ACTION = "delegation.created"
REVOKED_ACTION = "delegation.revoked"


class RecountError(ValueError):
    """The export cannot be read, or a revealed choice does not match what its vote entry committed to."""


@dataclass
class Recount:
    """One poll of a proposal, recounted. ``published`` is what its tally entry said (None while open)."""

    proposal_id: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHOICES, 0))
    electorate: int | None = None
    published: dict[str, int] | None = None
    hidden_votes: int = 0  # votes whose choice the log committed to while the poll was open
    unrevealed: list[int] = field(default_factory=list)  # seqs of votes whose choice the log does not reveal
    # delegation: the frozen delegations (less the ones withdrawn during the poll), the depth limit, the
    # delegated votes per choice (part of ``counts``) and what the tally entry published of them
    delegations: dict[int, int] = field(default_factory=dict)
    max_depth: int | None = None
    delegated: dict[str, int] | None = None
    published_delegated: dict[str, int] | None = None
    recused_delegates: list[int] = field(default_factory=list)
    published_recused: list[int] | None = None
    unbacked: list[list[int]] = field(default_factory=list)  # frozen edges no standing delegation backs

    @property
    def turnout(self) -> int:
        return sum(self.counts.values())

    @property
    def closed(self) -> bool:
        return self.published is not None

    @property
    def matches(self) -> bool:
        """The poll closed, every counted choice is known, and the counts are the published ones."""
        return (
            self.closed
            and not self.unrevealed
            and not self.unbacked
            and self.published == self.counts
            and self.published_delegated == self.delegated
            and (self.published_recused is None or self.published_recused == self.recused_delegates)
        )

    @property
    def direct(self) -> dict[str, int]:
        """The votes members cast themselves, per choice."""
        return {c: n - (self.delegated or {}).get(c, 0) for c, n in self.counts.items()}


def _lines(export: bytes | Iterable[bytes]) -> Iterable[bytes]:
    if isinstance(export, bytes):
        return export.rstrip(b"\n").split(b"\n")
    return export


def recount(export: bytes | Iterable[bytes], proposal_id: int) -> list[Recount]:
    """Every poll of proposal ``proposal_id`` in the export (usually one), recounted in log order."""
    subject = f"proposal:{proposal_id}"
    polls: list[tuple[Recount, dict[str, tuple[int, str | None, str | None]]]] = []
    closed_with: dict[int, set[int]] = {}  # id(poll) -> who was recused when it closed
    votes: dict[str, tuple[int, str | None, str | None]] = {}  # actor -> (seq, choice, commitment)
    reveals: dict[int, dict[str, Any]] = {}  # reveals follow the tally: counted once the whole log is read
    poll: Recount | None = None
    owners: dict[str, int] = {}  # data source subject -> owner (from its registration)
    source: str | None = None  # the proposal's targeted data source
    recused: set[int] = set()  # an election's candidate, members who declared a conflict
    standing: dict[tuple[Any, Any], int] = {}  # (delegator, delegate) -> delegations made less revoked
    for n, raw in enumerate(_lines(export)):
        if n == 0 or not raw:
            continue  # the header
        try:
            entry = strict_loads(raw)["entry"]
        except (EntryFormatError, KeyError, TypeError) as exc:
            raise RecountError(f"line {n + 1} is not an export entry line: {exc}") from exc
        if not isinstance(entry, dict):
            continue
        if entry.get("action") == SOURCE_ACTION and (owner := _member(entry.get("actor"))) is not None:
            owners[str(entry.get("subject"))] = owner
        if entry.get("action") in (DELEGATED_ACTION, REVOKED_ACTION):
            given = entry.get("payload") or {}
            pair = (given.get("delegator"), given.get("delegate"))
            standing[pair] = standing.get(pair, 0) + (1 if entry.get("action") == DELEGATED_ACTION else -1)
        if entry.get("subject") != subject:
            continue
        action, payload = entry.get("action"), entry.get("payload") or {}
        if action == CREATED_ACTION:
            if isinstance(payload.get("data_source_id"), int):
                source = f"data_source:{payload['data_source_id']}"
            if isinstance(payload.get("election_candidate_id"), int):
                recused.add(payload["election_candidate_id"])
        elif action == CONFLICT_ACTION and (who := _member(entry.get("actor"))) is not None:
            recused.add(who)
        elif action == DELEGATIONS_ACTION and poll is not None:
            poll.delegations = {int(a): int(b) for a, b in payload.get("edges", [])}
            # every frozen delegation is one its delegator made and had not revoked by then
            poll.unbacked = [[a, b] for a, b in poll.delegations.items() if standing.get((a, b), 0) < 1]
            poll.max_depth = int(payload.get("max_depth", 1))
        elif action == WITHDRAWN_ACTION and poll is not None:
            poll.delegations.pop(int(payload.get("delegator", -1)), None)
        if action == OPEN_ACTION:
            poll, votes = Recount(proposal_id, electorate=payload.get("size")), {}
            polls.append((poll, votes))
        elif action in VOTE_ACTIONS:
            if poll is None:  # a log that starts mid-poll (no electorate entry): count from here
                poll, votes = Recount(proposal_id), {}
                polls.append((poll, votes))
            committed = (entry.get("sensitive") or {}).get("choice")
            votes[str(entry.get("actor"))] = (entry["seq"], payload.get("choice"), committed)
            poll.hidden_votes += committed is not None
        elif action == REVEAL_ACTION:
            for item in payload.get("votes", []):
                if isinstance(item, dict) and isinstance(item.get("seq"), int):
                    reveals[item["seq"]] = item
        elif action == TALLY_ACTION and poll is not None:
            poll.published = {c: int(payload.get(c, 0)) for c in CHOICES}
            if isinstance(payload.get("delegated"), dict):
                poll.published_delegated = {c: int(payload["delegated"].get(c, 0)) for c in CHOICES}
                poll.published_recused = sorted(int(m) for m in payload.get("recused_delegates", []))
            if poll.electorate is None:
                poll.electorate = payload.get("electorate")
            closed_with[id(poll)] = _recused(recused, owners, source)
            poll = None
    for counted, cast in polls:
        _count(counted, cast, reveals, closed_with.get(id(counted)) or _recused(recused, owners, source))
    return [counted for counted, _ in polls]


def _recused(declared: set[int], owners: dict[str, int], source: str | None) -> set[int]:
    """Who could not carry votes: the candidate and declared conflicts so far, and the source's owner."""
    out = set(declared)
    if source is not None and source in owners:
        out.add(owners[source])
    return out


def _member(actor: object) -> int | None:
    """``member:12`` -> 12 (None for the system or anything else)."""
    if isinstance(actor, str) and actor.startswith("member:") and actor[7:].isdigit():
        return int(actor[7:])
    return None


def _count(
    poll: Recount,
    votes: dict[str, tuple[int, str | None, str | None]],
    reveals: dict[int, dict[str, Any]],
    recused: set[int],
) -> None:
    direct: dict[int, str] = {}
    for actor, (seq, choice, committed) in votes.items():
        if committed is not None:
            shown = reveals.get(seq)
            if shown is None or shown.get("salt") is None or not isinstance(shown.get("choice"), str):
                poll.unrevealed.append(seq)
                continue
            try:
                salt = bytes.fromhex(shown["salt"])
            except (TypeError, ValueError) as exc:
                raise RecountError(f"the salt revealed for entry {seq} is not hex") from exc
            if commitment(salt, shown["choice"]) != committed:
                raise RecountError(f"the choice revealed for entry {seq} does not match its commitment")
            choice = shown["choice"]
        if choice not in CHOICES:
            raise RecountError(f"entry {seq} has no valid choice ({choice!r})")
        poll.counts[choice] += 1
        if (member := _member(actor)) is not None:
            direct[member] = choice
    if poll.max_depth is None:
        return
    edges = poll.delegations
    res = resolve(
        electors=set(direct) | set(edges) | set(edges.values()),
        edges=edges,
        direct=direct,
        recused=recused,
        max_depth=max(poll.max_depth, 1),
    )
    poll.delegated = {c: res.delegated.get(c, 0) for c in CHOICES}
    for c, k in poll.delegated.items():
        poll.counts[c] += k
    delegates = set(edges.values())
    poll.recused_delegates = sorted(m for m in recused if m in delegates)
