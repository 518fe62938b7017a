"""The audit log on the database: append (inside the caller's transaction), erase, read, prove, export.

Callers own the transaction: ``append`` and ``erase`` only add rows and flush; the service layer commits, so a
change and its audit entry are committed together or not at all. Appends serialise on the single
audit_tree_head row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the write transaction already holds the
database lock because the service opens it with ``BEGIN IMMEDIATE``).

Cost: an append reads one row and writes the entry, its leaf and the perfect subtrees it completes (amortised
two nodes, at most log2 n + 1); a proof reads O(log n) stored nodes in one query.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from governance.audit import merkle
from governance.audit.canonical import Entry, EntryFormatError, commitment
from governance.audit.checkpoint import Checkpoint, SigningKey
from governance.audit.export import entry_line_raw, header_line
from governance.audit.models import TREE_HEAD_ID, AuditEntryRow, AuditNode, AuditSensitive, AuditTreeHead
from governance.domain.errors import Conflict, InvalidInput, NotFound

ERASE_ACTION = "audit.erased"
MAX_PAGE = 1000
MAX_SEQ = 2**62  # far beyond any log; keeps numbers from the outside inside a BIGINT


class AuditNotFound(NotFound):
    """No entry with that sequence number, or no sensitive value to erase."""


class AuditInvalid(InvalidInput):
    """A malformed entry, or a range / size / index that is not in the log."""


class AlreadyErased(Conflict):
    """Every value named has already been erased."""


@dataclass(frozen=True)
class AuditEntry:
    """An entry as the rest of the service sees it; ``body`` is the exact canonical JSON that was hashed."""

    seq: int
    timestamp: datetime
    actor: str | None
    action: str
    subject: str
    payload: dict[str, Any]
    sensitive: dict[str, str]
    body: str
    leaf_hash: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "entry": _entry_json(self.body),
            "leaf_hash": self.leaf_hash.hex(),
        }


@dataclass(frozen=True)
class TreeHead:
    size: int
    root_hash: bytes


def _entry_json(body: str) -> dict[str, Any]:
    return Entry.from_bytes(body.encode("utf-8")).to_json()


def _public(row: AuditEntryRow) -> AuditEntry:
    entry = Entry.from_bytes(row.body.encode("utf-8"))
    return AuditEntry(
        seq=row.seq,
        timestamp=row.created_at,
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        payload=entry.payload,
        sensitive=entry.sensitive,
        body=row.body,
        leaf_hash=row.leaf_hash,
    )


# -- the tree head ---------------------------------------------------------------------------------------------


def _empty_head() -> dict[str, Any]:
    return {
        "id": TREE_HEAD_ID,
        "size": 0,
        "root_hash": merkle.EMPTY_ROOT,
        "frontier": b"",
        "updated_at": datetime.now(UTC),
    }


_HEAD = AuditTreeHead.__table__  # type: ignore[attr-defined]
_ENTRY = AuditEntryRow.__table__  # type: ignore[attr-defined]
_NODE = AuditNode.__table__  # type: ignore[attr-defined]
_SENSITIVE = AuditSensitive.__table__  # type: ignore[attr-defined]
# Core statements, built once: the append and proof paths run them many times a second.
_SELECT_HEAD = sa.select(_HEAD.c.size, _HEAD.c.root_hash, _HEAD.c.frontier).where(_HEAD.c.id == TREE_HEAD_ID)
_LOCK_HEAD = _SELECT_HEAD.with_for_update()
_UPDATE_HEAD = sa.update(_HEAD).where(_HEAD.c.id == TREE_HEAD_ID)
_INSERT_ENTRY, _INSERT_NODE, _INSERT_SENSITIVE = sa.insert(_ENTRY), sa.insert(_NODE), sa.insert(_SENSITIVE)
_SELECT_NODES: dict[int, sa.Select[Any]] = {}


def _nodes_statement(count: int) -> sa.Select[Any]:
    """SELECT of ``count`` stored nodes by primary key, as ORed point lookups (which both databases answer
    from the primary-key index; a row-value IN list makes SQLite scan). Cached per power-of-two count."""
    stmt = _SELECT_NODES.get(count)
    if stmt is None:
        stmt = sa.select(_NODE.c.level, _NODE.c.idx, _NODE.c.hash).where(
            sa.or_(
                *(
                    sa.and_(_NODE.c.level == sa.bindparam(f"l{i}"), _NODE.c.idx == sa.bindparam(f"i{i}"))
                    for i in range(count)
                )
            )
        )
        _SELECT_NODES[count] = stmt
    return stmt


def _lock_head(session: Session) -> tuple[int, bytes]:
    """Size and frontier of the tree, its head row locked for the rest of the transaction.

    The row is created by the very first append (concurrent first appends both insert-or-ignore, then lock).
    """
    row = session.connection().execute(_LOCK_HEAD).first()
    if row is not None:
        return row.size, row.frontier
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(_HEAD).values(_empty_head()).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(_HEAD).values(_empty_head()).on_conflict_do_nothing())
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        try:
            with session.begin_nested():
                session.execute(sa.insert(_HEAD).values(_empty_head()))
        except IntegrityError:
            pass
    row = session.connection().execute(_LOCK_HEAD).first()
    if row is None:  # pragma: no cover - the insert above guarantees the row
        raise RuntimeError("audit tree head row could not be created")
    return row.size, row.frontier


def tree_head(session: Session) -> TreeHead:
    row = session.connection().execute(_SELECT_HEAD).first()
    if row is None:
        return TreeHead(0, merkle.EMPTY_ROOT)
    return TreeHead(row.size, row.root_hash)


# -- append and erase ------------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already (what SQLite hands back)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class NewEntry:
    """One entry to append: what ``append`` takes, as a value (for ``append_many``)."""

    actor: str | None
    action: str
    subject: str
    payload: Mapping[str, Any]
    sensitive: Mapping[str, str] | None = None
    at: datetime | None = None


def append(
    session: Session,
    *,
    actor: str | None,
    action: str,
    subject: str,
    payload: Mapping[str, Any],
    sensitive: Mapping[str, str] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (never commits). Returns it with its seq and leaf hash.

    ``sensitive`` values are stored in audit_sensitive and enter the entry only as salted SHA-256
    commitments, so ``erase`` can remove them later without changing the entry.
    """
    (entry,) = append_many(session, [NewEntry(actor, action, subject, payload, sensitive, at)])
    return entry


def append_many(session: Session, items: list[NewEntry]) -> list[AuditEntry]:
    """Append entries in order, in the caller's transaction: one head lock and a few multi-row inserts for
    the lot (a burst of votes is recorded at the cost of about one entry)."""
    if not items:
        return []
    prepared = []
    for item in items:
        sensitive = dict(item.sensitive or {})
        for name, value in sensitive.items():
            if not isinstance(value, str):
                raise AuditInvalid(f"sensitive field {name!r} must be a string", field=name)
        prepared.append((item, sensitive, {name: secrets.token_bytes(32) for name in sensitive}))
    size, frontier_blob = _lock_head(session)
    frontier = merkle.Frontier.from_bytes(size, frontier_blob)
    entries: list[AuditEntry] = []
    entry_rows: list[dict[str, Any]] = []
    node_rows: list[dict[str, Any]] = []
    sensitive_rows: list[dict[str, Any]] = []
    moment = datetime.now(UTC)
    for item, sensitive, salts in prepared:
        moment = _utc(item.at or datetime.now(UTC))
        try:
            entry = Entry.build(
                seq=frontier.size,
                ts=moment,
                actor=item.actor,
                action=item.action,
                subject=item.subject,
                payload=item.payload,
                sensitive={name: commitment(salts[name], value) for name, value in sensitive.items()},
            )
        except EntryFormatError as exc:
            raise AuditInvalid(str(exc)) from exc
        data = entry.to_bytes()
        leaf = merkle.leaf_hash(data)
        node_rows += [{"level": r.level, "idx": r.idx, "hash": h} for r, h in frontier.append(leaf)]
        body = data.decode("utf-8")
        entry_rows.append(
            {
                "seq": entry.seq,
                "created_at": moment,
                "actor": item.actor,
                "action": item.action,
                "subject": item.subject,
                "body": body,
                "leaf_hash": leaf,
            }
        )
        sensitive_rows += [
            {"seq": entry.seq, "field": name, "salt": salts[name], "value": value}
            for name, value in sensitive.items()
        ]
        entries.append(
            AuditEntry(
                seq=entry.seq,
                timestamp=moment,
                actor=item.actor,
                action=item.action,
                subject=item.subject,
                payload=entry.payload,
                sensitive=entry.sensitive,
                body=body,
                leaf_hash=leaf,
            )
        )
    conn = session.connection()  # Core statements straight on the transaction's connection: no ORM overhead
    conn.execute(_INSERT_ENTRY, entry_rows)
    conn.execute(_INSERT_NODE, node_rows)
    if sensitive_rows:
        conn.execute(_INSERT_SENSITIVE, sensitive_rows)
    conn.execute(
        _UPDATE_HEAD,
        {
            "size": frontier.size,
            "frontier": frontier.to_bytes(),
            "root_hash": frontier.root(),
            "updated_at": moment,
        },
    )
    return entries


def erase(
    session: Session,
    target: int | str,
    field: str,
    actor: str | None,
    reason: str,
) -> AuditEntry:
    """Erase a sensitive value: of entry ``target`` (a seq), or of every entry whose subject is ``target``.

    Value and salt are deleted (the salt too, so a guessable value cannot be confirmed against its hash); the
    entry and its commitment stay, so every proof still verifies. The erasure is itself appended, in the
    caller's transaction, and returned.
    """
    if isinstance(target, bool) or not isinstance(target, int | str):
        raise AuditInvalid("erase target must be a sequence number or a subject")
    stmt = select(AuditSensitive).where(AuditSensitive.field == field)
    if isinstance(target, int):
        if not 0 <= target <= MAX_SEQ:
            raise AuditNotFound(f"no audit entry {target}")
        subject = session.exec(select(AuditEntryRow.subject).where(AuditEntryRow.seq == target)).first()
        if subject is None:
            raise AuditNotFound(f"no audit entry {target}")
        stmt = stmt.where(AuditSensitive.seq == target)
    else:
        subject = target
        seqs = select(AuditEntryRow.seq).where(AuditEntryRow.subject == target)
        stmt = stmt.where(col(AuditSensitive.seq).in_(seqs))
    rows = list(session.exec(stmt.order_by(col(AuditSensitive.seq))).all())
    if not rows:
        raise AuditNotFound(f"no sensitive field {field!r} recorded for {target!r}")
    pending = [row for row in rows if row.erased_at is None]
    if not pending:
        raise AlreadyErased(f"sensitive field {field!r} of {target!r} is already erased")
    erasure = append(
        session,
        actor=actor,
        action=ERASE_ACTION,
        subject=subject,
        payload={"erased": [{"seq": row.seq, "field": row.field} for row in pending], "reason": reason},
    )
    for row in pending:
        row.value = None
        row.salt = None
        row.erased_at = erasure.timestamp
        row.erased_by = actor
        row.erased_in_seq = erasure.seq
        session.add(row)
    session.flush()
    return erasure


def sensitive_values(session: Session, seq: int) -> dict[str, str | None]:
    """The stored sensitive values of one entry (None where erased), for pages that show them."""
    rows = session.exec(select(AuditSensitive).where(AuditSensitive.seq == seq)).all()
    return {row.field: row.value for row in rows}


# -- reading ---------------------------------------------------------------------------------------------------


def get_entry(session: Session, seq: int) -> AuditEntry:
    if not 0 <= seq <= MAX_SEQ:
        raise AuditNotFound(f"no audit entry {seq}")
    row = session.get(AuditEntryRow, seq)
    if row is None:
        raise AuditNotFound(f"no audit entry {seq}")
    return _public(row)


def list_entries(session: Session, start: int, end: int | None = None) -> list[AuditEntry]:
    """Entries with start <= seq < end (at most MAX_PAGE of them)."""
    if start < 0 or (end is not None and end < start):
        raise AuditInvalid(f"invalid range [{start}, {end})")
    if start > MAX_SEQ:
        return []
    end = start + MAX_PAGE if end is None else min(end, start + MAX_PAGE)
    stmt = (
        select(AuditEntryRow)
        .where(AuditEntryRow.seq >= start, AuditEntryRow.seq < end)
        .order_by(col(AuditEntryRow.seq))
    )
    return [_public(row) for row in session.exec(stmt).all()]


def entries_for_subject(session: Session, subject: str) -> list[AuditEntry]:
    stmt = select(AuditEntryRow).where(AuditEntryRow.subject == subject).order_by(col(AuditEntryRow.seq))
    return [_public(row) for row in session.exec(stmt).all()]


# -- proofs ----------------------------------------------------------------------------------------------------


def _fetch_nodes(session: Session, refs: set[merkle.NodeRef]) -> dict[merkle.NodeRef, bytes]:
    if not refs:
        return {}
    keys = sorted(refs)
    count = max(8, 1 << (len(keys) - 1).bit_length())
    keys += [keys[-1]] * (count - len(keys))  # pad with repeats so that few statement shapes exist
    params: dict[str, int] = {}
    for i, ref in enumerate(keys):
        params[f"l{i}"], params[f"i{i}"] = ref.level, ref.idx
    rows = session.connection().execute(_nodes_statement(count), params)
    return {merkle.NodeRef(level, idx): h for level, idx, h in rows}


def _resolve(session: Session, plans: list[merkle.Plan]) -> list[bytes]:
    try:
        return merkle.assemble(plans, _fetch_nodes(session, merkle.nodes_of(plans)))
    except merkle.ProofError as exc:  # pragma: no cover - storage corrupted
        raise RuntimeError(str(exc)) from exc


def _check_size(session: Session, size: int | None) -> int:
    current = tree_head(session).size
    if size is None:
        return current
    if not 0 <= size <= current:
        raise AuditInvalid(f"tree size {size} is not between 0 and the log's {current} entries")
    return size


def root_at(session: Session, size: int) -> bytes:
    """The root of the tree of the first ``size`` entries."""
    size = _check_size(session, size)
    return _resolve(session, [merkle.range_nodes(0, size)])[0] if size else merkle.EMPTY_ROOT


@dataclass(frozen=True)
class InclusionProof:
    seq: int
    tree_size: int
    leaf_hash: bytes
    root_hash: bytes
    hashes: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "root_hash": self.root_hash.hex(),
            "hashes": [h.hex() for h in self.hashes],
        }


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    hashes: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "first_root": self.first_root.hex(),
            "second_root": self.second_root.hex(),
            "hashes": [h.hex() for h in self.hashes],
        }


def inclusion_proof(session: Session, seq: int, size: int | None = None) -> InclusionProof:
    """Proof that entry ``seq`` is in the tree of ``size`` entries (default: the current tree)."""
    size = _check_size(session, size)
    if not 0 <= seq < size:
        raise AuditInvalid(f"entry {seq} is not in a tree of {size} entries")
    plans = merkle.inclusion_plan(seq, size)
    root_plan = merkle.range_nodes(0, size)
    nodes = _fetch_nodes(session, merkle.nodes_of([*plans, root_plan, [merkle.NodeRef(0, seq)]]))
    hashes = merkle.assemble(plans, nodes)
    root = merkle.assemble([root_plan], nodes)[0]
    return InclusionProof(seq, size, nodes[merkle.NodeRef(0, seq)], root, hashes)


def consistency_proof(session: Session, first: int, second: int | None = None) -> ConsistencyProof:
    """Proof that the tree of ``first`` entries is a prefix of the tree of ``second`` (default: current)."""
    second = _check_size(session, second)
    if not 0 <= first <= second:
        raise AuditInvalid(f"no consistency proof from size {first} to size {second}")
    plans = merkle.consistency_plan(first, second)
    roots = [merkle.range_nodes(0, n) for n in (first, second) if n]
    nodes = _fetch_nodes(session, merkle.nodes_of([*plans, *roots]))
    hashes = merkle.assemble(plans, nodes)
    first_root = merkle.assemble([merkle.range_nodes(0, first)], nodes)[0] if first else merkle.EMPTY_ROOT
    second_root = merkle.assemble([merkle.range_nodes(0, second)], nodes)[0] if second else merkle.EMPTY_ROOT
    return ConsistencyProof(first, second, first_root, second_root, hashes)


# -- checkpoints and export ------------------------------------------------------------------------------------


def checkpoint(session: Session, key: SigningKey, origin: str) -> tuple[Checkpoint, str]:
    """The current tree head as a checkpoint and its signed note."""
    head = tree_head(session)
    cp = Checkpoint(origin, head.size, head.root_hash)
    return cp, key.sign(cp)


def export_lines(
    session: Session, key: SigningKey, origin: str, *, include_sensitive: bool = False, batch: int = 1000
) -> Iterator[bytes]:
    """The export, one canonical JSON line at a time (no trailing newlines).

    First a header with the format, the public key and the signed checkpoint, then one line per entry up to
    the checkpoint's size: ``{"entry": {...}, "leaf_hash": hex, "seq": n}`` and, with ``include_sensitive``,
    ``"reveal": {field: {"salt": hex, "value": str}}`` for values not erased.
    """
    cp, _ = checkpoint(session, key, origin)
    yield header_line(key, cp)
    conn = session.connection()
    for start in range(0, cp.size, batch):
        end = min(start + batch, cp.size)
        rows = conn.execute(
            sa.select(_ENTRY.c.seq, _ENTRY.c.body, _ENTRY.c.leaf_hash)
            .where(_ENTRY.c.seq >= start, _ENTRY.c.seq < end)
            .order_by(_ENTRY.c.seq)
        ).all()
        reveals: dict[int, dict[str, Any]] = {}
        if include_sensitive:
            shown = conn.execute(
                sa.select(_SENSITIVE.c.seq, _SENSITIVE.c.field, _SENSITIVE.c.salt, _SENSITIVE.c.value).where(
                    _SENSITIVE.c.seq >= start,
                    _SENSITIVE.c.seq < end,
                    _SENSITIVE.c.value.is_not(None),
                    _SENSITIVE.c.salt.is_not(None),
                )
            ).all()
            for seq, field, salt, value in shown:
                reveals.setdefault(seq, {})[field] = {"salt": salt.hex(), "value": value}
        for seq, body, leaf in rows:
            yield entry_line_raw(body.encode("utf-8"), leaf, seq, reveals.get(seq))


def export_bytes(session: Session, key: SigningKey, origin: str, *, include_sensitive: bool = False) -> bytes:
    return b"".join(
        line + b"\n" for line in export_lines(session, key, origin, include_sensitive=include_sensitive)
    )
