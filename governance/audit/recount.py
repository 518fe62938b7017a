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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from governance.audit.canonical import EntryFormatError, commitment, strict_loads

CHOICES = ("approve", "object", "abstain", "block")
VOTE_ACTIONS = ("proposal.vote_cast", "proposal.vote_changed")
REVEAL_ACTION = "proposal.votes_revealed"
TALLY_ACTION = "proposal.tally"
OPEN_ACTION = "proposal.electorate_frozen"


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

    @property
    def turnout(self) -> int:
        return sum(self.counts.values())

    @property
    def closed(self) -> bool:
        return self.published is not None

    @property
    def matches(self) -> bool:
        """The poll closed, every counted choice is known, and the counts are the published ones."""
        return self.closed and not self.unrevealed and self.published == self.counts


def _lines(export: bytes | Iterable[bytes]) -> Iterable[bytes]:
    if isinstance(export, bytes):
        return export.rstrip(b"\n").split(b"\n")
    return export


def recount(export: bytes | Iterable[bytes], proposal_id: int) -> list[Recount]:
    """Every poll of proposal ``proposal_id`` in the export (usually one), recounted in log order."""
    subject = f"proposal:{proposal_id}"
    polls: list[tuple[Recount, dict[str, tuple[int, str | None, str | None]]]] = []
    votes: dict[str, tuple[int, str | None, str | None]] = {}  # actor -> (seq, choice, commitment)
    reveals: dict[int, dict[str, Any]] = {}  # reveals follow the tally: counted once the whole log is read
    poll: Recount | None = None
    for n, raw in enumerate(_lines(export)):
        if n == 0 or not raw:
            continue  # the header
        try:
            entry = strict_loads(raw)["entry"]
        except (EntryFormatError, KeyError, TypeError) as exc:
            raise RecountError(f"line {n + 1} is not an export entry line: {exc}") from exc
        if not isinstance(entry, dict) or entry.get("subject") != subject:
            continue
        action, payload = entry.get("action"), entry.get("payload") or {}
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
            if poll.electorate is None:
                poll.electorate = payload.get("electorate")
            poll = None
    for counted, cast in polls:
        _count(counted, cast, reveals)
    return [counted for counted, _ in polls]


def _count(
    poll: Recount,
    votes: dict[str, tuple[int, str | None, str | None]],
    reveals: dict[int, dict[str, Any]],
) -> None:
    for seq, choice, committed in votes.values():
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
