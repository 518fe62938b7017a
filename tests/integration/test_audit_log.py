"""The audit log on a migrated database (SQLite and PostgreSQL): append in the caller's transaction, proofs,
erasure, append-only storage and concurrent appends."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from governance.audit import log, merkle
from governance.audit.checkpoint import Checkpoint, SigningKey
from governance.audit.verify import verify_export
from governance.db.engine import read_session, write_session

ORIGIN = "test.commons/audit"
KEY = SigningKey(ORIGIN, Ed25519PrivateKey.generate())


def add(engine: Engine, n: int, *, sensitive: bool = False) -> list[log.AuditEntry]:
    out = []
    with write_session(engine) as s:
        for i in range(n):
            out.append(
                log.append(
                    s,
                    actor=f"member:{i % 4}",
                    action="vote.cast",
                    subject=f"proposal:{i % 3}",
                    payload={"choice": "approve", "i": i, "quorum": 0.3},
                    sensitive={"rationale": f"my reason {i}"} if sensitive else None,
                )
            )
    return out


def test_append_returns_dense_sequence_and_proofs_verify(engine: Engine) -> None:
    entries = add(engine, 23)
    assert [e.seq for e in entries] == list(range(23))
    with read_session(engine) as s:
        head = log.tree_head(s)
        tree = merkle.MemoryTree(merkle.leaf_hash(e.body.encode()) for e in entries)
        assert (head.size, head.root_hash) == (23, tree.root())
        for size in (1, 5, 16, 23):
            assert log.root_at(s, size) == tree.root(size)
            for seq in range(size):
                proof = log.inclusion_proof(s, seq, size)
                assert proof.hashes == tree.inclusion_proof(seq, size)
                assert merkle.verify_inclusion(
                    seq, size, entries[seq].leaf_hash, proof.hashes, proof.root_hash
                )
            for first in range(size + 1):
                cons = log.consistency_proof(s, first, size)
                assert merkle.verify_consistency(first, size, cons.first_root, cons.second_root, cons.hashes)
        got = log.get_entry(s, 7)
        assert got.payload == {"choice": "approve", "i": 7, "quorum": "0.3"}
        assert got.timestamp.tzinfo is not None
        assert [e.seq for e in log.list_entries(s, 20, 40)] == [20, 21, 22]
        assert [e.seq for e in log.entries_for_subject(s, "proposal:1")][:3] == [1, 4, 7]


def test_entry_rolls_back_with_the_change(engine: Engine) -> None:
    add(engine, 2)
    with pytest.raises(RuntimeError), write_session(engine) as s:
        log.append(s, actor="x", action="a.b", subject="s", payload={})
        raise RuntimeError("the change failed")
    entries = add(engine, 1)
    assert entries[0].seq == 2
    with read_session(engine) as s:
        assert log.tree_head(s).size == 3


def test_bad_input_is_refused_without_a_trace(engine: Engine) -> None:
    with pytest.raises(log.AuditInvalid), write_session(engine) as s:
        log.append(s, actor="x", action="", subject="s", payload={})
    with pytest.raises(log.AuditInvalid), write_session(engine) as s:
        log.append(s, actor="x", action="a", subject="s", payload={"v": float("nan")})
    with read_session(engine) as s:
        assert log.tree_head(s).size == 0
        with pytest.raises(log.AuditInvalid):
            log.inclusion_proof(s, 0)
        with pytest.raises(log.AuditNotFound):
            log.get_entry(s, 0)
        with pytest.raises(log.AuditInvalid):
            log.consistency_proof(s, 1, 0)


def test_erasure_keeps_every_proof_valid(engine: Engine) -> None:
    entries = add(engine, 6, sensitive=True)
    with read_session(engine) as s:
        before = log.export_bytes(s, KEY, ORIGIN, include_sensitive=True)
        assert log.sensitive_values(s, 1) == {"rationale": "my reason 1"}
    assert verify_export(before).revealed == 6
    assert b"my reason" not in entries[0].body.encode()

    with write_session(engine) as s:
        erasure = log.erase(s, 1, "rationale", "member:0", "consent withdrawn")
    with write_session(engine) as s:
        by_subject = log.erase(s, "proposal:2", "rationale", "member:0", "consent withdrawn")
    assert erasure.action == log.ERASE_ACTION and erasure.seq == 6
    assert erasure.payload["erased"] == [{"field": "rationale", "seq": 1}]
    assert by_subject.payload["erased"] == [
        {"field": "rationale", "seq": 2},
        {"field": "rationale", "seq": 5},
    ]

    with read_session(engine) as s:
        assert log.sensitive_values(s, 1) == {"rationale": None}
        assert log.sensitive_values(s, 0) == {"rationale": "my reason 0"}
        after = log.export_bytes(s, KEY, ORIGIN, include_sensitive=True)
        assert log.get_entry(s, 1).body == entries[1].body
    result = verify_export(
        after,
        against=KEY.sign(Checkpoint(ORIGIN, 6, merkle.root_from_leaf_hashes(e.leaf_hash for e in entries))),
    )
    assert result.revealed == 3 and result.tree_size == 8
    assert b"my reason 1" not in after and b"my reason 5" not in after

    with pytest.raises(log.AlreadyErased), write_session(engine) as s:
        log.erase(s, 1, "rationale", "member:0", "again")
    with pytest.raises(log.AuditNotFound), write_session(engine) as s:
        log.erase(s, 99, "rationale", "member:0", "no such entry")
    with pytest.raises(log.AuditNotFound), write_session(engine) as s:
        log.erase(s, 0, "other-field", "member:0", "no such field")


def test_the_database_refuses_to_change_entries(engine: Engine) -> None:
    add(engine, 2)
    for statement in (
        "UPDATE audit_entry SET actor = 'mallory' WHERE seq = 0",
        "DELETE FROM audit_entry WHERE seq = 1",
        "DELETE FROM audit_node",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with read_session(engine) as s:
        assert log.get_entry(s, 0).actor == "member:0"


def test_parallel_appends_have_no_duplicates_or_gaps(engine: Engine) -> None:
    threads, per_thread = 8, 15
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with write_session(engine) as s:
                    log.append(s, actor=f"t{t}", action="vote.cast", subject=f"p:{t}", payload={"i": i})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    total = threads * per_thread
    with read_session(engine) as s:
        entries = log.list_entries(s, 0, total + 10)
        assert [e.seq for e in entries] == list(range(total))
        assert log.tree_head(s).size == total
        data = log.export_bytes(s, KEY, ORIGIN)
    assert verify_export(data).tree_size == total


def test_timestamps_are_utc(engine: Engine) -> None:
    with write_session(engine) as s:
        e = log.append(
            s, actor=None, action="a.b", subject="s", payload={}, at=datetime(2024, 1, 1, tzinfo=UTC)
        )
    assert '"ts":"2024-01-01T00:00:00.000000Z"' in e.body
    with read_session(engine) as s:
        assert log.get_entry(s, 0).timestamp == datetime(2024, 1, 1, tzinfo=UTC)


def test_append_many_is_one_ordered_burst(engine: Engine) -> None:
    add(engine, 3)
    naive = datetime(2024, 6, 1, 12, 0)
    with write_session(engine) as s:
        burst = log.append_many(
            s,
            [
                log.NewEntry(
                    "member:1", "proposal.vote_cast", "proposal:9", {"n": i}, {"why": f"w{i}"}, naive
                )
                for i in range(5)
            ],
        )
        assert log.append_many(s, []) == []
    assert [e.seq for e in burst] == [3, 4, 5, 6, 7]
    assert all(e.timestamp == datetime(2024, 6, 1, 12, 0, tzinfo=UTC) for e in burst)
    with read_session(engine) as s:
        assert log.sensitive_values(s, 5) == {"why": "w2"}
        head = log.tree_head(s)
        assert head.size == 8
        for e in burst:
            proof = log.inclusion_proof(s, e.seq)
            assert merkle.verify_inclusion(e.seq, 8, e.leaf_hash, proof.hashes, head.root_hash)
        data = log.export_bytes(s, KEY, ORIGIN, include_sensitive=True)
    assert verify_export(data, strict=True).revealed == 5
