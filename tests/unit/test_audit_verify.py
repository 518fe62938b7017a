"""The offline verifier against tampering: every byte flip, dropped, reordered, rewritten and re-signed logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.audit import merkle
from governance.audit.canonical import Entry, commitment, dumps_plain
from governance.audit.checkpoint import Checkpoint, SigningKey
from governance.audit.export import build_export, entry_line, entry_line_raw, header_line
from governance.audit.verify import VerificationFailed, verify_export

ORIGIN = "test.commons/audit"
KEY = SigningKey(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
SALT = bytes(32)


def make_entries(n: int, *, tweak: int | None = None) -> list[Entry]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        Entry.build(
            seq=i,
            ts=start + timedelta(minutes=i),
            actor=f"member-{i % 3}",
            action="vote.cast" if i % 2 else "proposal.submitted",
            subject=f"proposal:{i // 2}",
            payload={"choice": "approve" if i != tweak else "object", "n": i, "note": "ünïcødé"},
            sensitive={"rationale": commitment(SALT, f"reason {i}")} if i % 3 == 0 else {},
        )
        for i in range(n)
    ]


def export_of(n: int, key: SigningKey = KEY, *, tweak: int | None = None, reveal: bool = True) -> bytes:
    reveals = {i: {"rationale": (SALT, f"reason {i}")} for i in range(n) if i % 3 == 0} if reveal else None
    return build_export(key, ORIGIN, make_entries(n, tweak=tweak), reveals)


def checkpoint_of(n: int, key: SigningKey = KEY) -> str:
    leaves = [merkle.leaf_hash(e.to_bytes()) for e in make_entries(n)]
    return key.sign(Checkpoint(ORIGIN, n, merkle.root_from_leaf_hashes(leaves)))


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def join(parts: list[bytes]) -> bytes:
    return b"".join(p + b"\n" for p in parts)


@pytest.mark.parametrize("strict", [False, True])
def test_an_honest_export_verifies(strict: bool) -> None:
    result = verify_export(export_of(9), against=checkpoint_of(4), trusted_key=KEY.verifier, strict=strict)
    assert (result.tree_size, result.checked_against, result.revealed) == (9, 4, 3)


def test_strict_mode_rejects_a_malformed_entry_that_the_log_signed() -> None:
    good = [e.to_json() for e in make_entries(3)]
    bogus = {**good[1], "v": 2, "extra": True}  # not a version-1 entry, yet signed by the log
    objs = [good[0], bogus, good[2]]
    leaves = [merkle.leaf_hash(dumps_plain(o)) for o in objs]
    header = header_line(KEY, Checkpoint(ORIGIN, 3, merkle.root_from_leaf_hashes(leaves)))
    forged = join([header, *(entry_line(o, leaf) for o, leaf in zip(objs, leaves, strict=True))])
    verify_export(forged)  # integrity holds: this is what the key signed
    with pytest.raises(VerificationFailed, match="invalid entry") as failure:
        verify_export(forged, strict=True)
    assert failure.value.seq == 1
    verify_export(export_of(3), strict=True)


def _line_of_offset(data: bytes, offset: int) -> int:
    """0 for the header, k + 1 for entry k (the newline ending a line belongs to it)."""
    return data.count(b"\n", 0, offset)


@pytest.mark.parametrize("strict", [False, True])
def test_every_single_byte_flip_is_detected_at_its_entry(strict: bool) -> None:
    data = export_of(7)
    for offset in range(len(data)):
        tampered = bytearray(data)
        tampered[offset] ^= 0x01
        with pytest.raises(VerificationFailed) as failure:
            verify_export(bytes(tampered), strict=strict)
        line = _line_of_offset(data, offset)
        if line == 0:
            assert failure.value.seq is None, offset
        elif offset != len(data) - 1:  # the final newline: the file no longer ends cleanly
            assert failure.value.seq == line - 1, (offset, str(failure.value))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_byte_changed_to_any_value_is_detected(data: st.DataObject) -> None:
    raw = export_of(5)
    offset = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[offset]))
    tampered = bytearray(raw)
    tampered[offset] = value
    with pytest.raises(VerificationFailed):
        verify_export(bytes(tampered))


@pytest.mark.parametrize("dropped", range(6))
def test_a_dropped_entry_is_named(dropped: int) -> None:
    parts = lines(export_of(6))
    del parts[dropped + 1]
    with pytest.raises(VerificationFailed, match=f"entry {dropped} ") as failure:
        verify_export(join(parts))
    assert failure.value.seq == dropped


@pytest.mark.parametrize(("a", "b"), [(0, 1), (2, 5), (4, 5)])
def test_reordered_entries_are_named(a: int, b: int) -> None:
    parts = lines(export_of(6))
    parts[a + 1], parts[b + 1] = parts[b + 1], parts[a + 1]
    with pytest.raises(VerificationFailed) as failure:
        verify_export(join(parts))
    assert failure.value.seq == a


def test_an_appended_forgery_is_named() -> None:
    parts = lines(export_of(4))
    parts.append(lines(export_of(5))[-1])
    with pytest.raises(VerificationFailed) as failure:
        verify_export(join(parts))
    assert failure.value.seq == 4


def test_rewriting_an_entry_and_its_leaf_hash_breaks_the_signed_root() -> None:
    honest, forged = lines(export_of(6)), lines(export_of(6, tweak=2))
    parts = [*honest[:3], forged[3], *honest[4:]]
    with pytest.raises(VerificationFailed, match="signed root"):
        verify_export(join(parts))


def test_history_rewritten_and_resigned_with_another_key() -> None:
    impostor = SigningKey(ORIGIN, Ed25519PrivateKey.generate())
    forged = export_of(8, impostor, tweak=1)
    verify_export(forged)  # self-consistent on its own: only a trusted key or a saved checkpoint can tell
    with pytest.raises(VerificationFailed, match="trusted key"):
        verify_export(forged, trusted_key=KEY.verifier)
    with pytest.raises(VerificationFailed, match="saved checkpoint"):
        verify_export(forged, against=checkpoint_of(3))


def test_history_rewritten_by_the_log_itself_fails_consistency() -> None:
    rewritten = export_of(8, tweak=1)  # signed with the real key
    verify_export(rewritten, trusted_key=KEY.verifier)
    with pytest.raises(VerificationFailed, match="first 3 entries do not match"):
        verify_export(rewritten, against=checkpoint_of(3))
    verify_export(rewritten, against=checkpoint_of(1))  # the rewrite came after entry 0


def test_a_log_that_shrank_fails() -> None:
    with pytest.raises(VerificationFailed, match="shrank"):
        verify_export(export_of(3), against=checkpoint_of(5))


def test_a_revealed_value_must_match_its_commitment() -> None:
    data = export_of(4).replace(b'"value":"reason 3"', b'"value":"reason X"')
    with pytest.raises(VerificationFailed, match="commitment") as failure:
        verify_export(data)
    assert failure.value.seq == 3


def test_erased_values_still_verify() -> None:
    assert verify_export(export_of(6, reveal=False)).revealed == 0


def test_truncated_file() -> None:
    with pytest.raises(VerificationFailed, match="newline"):
        verify_export(export_of(3)[:-1])
    with pytest.raises(VerificationFailed, match="empty"):
        verify_export([])


def test_spliced_lines_equal_serialised_lines() -> None:
    for entry in make_entries(4):
        leaf = merkle.leaf_hash(entry.to_bytes())
        reveal = {"rationale": {"salt": SALT.hex(), "value": 'x ü "q"'}}
        assert entry_line_raw(entry.to_bytes(), leaf, entry.seq) == entry_line(entry.to_json(), leaf)
        assert entry_line_raw(entry.to_bytes(), leaf, entry.seq, reveal) == entry_line(
            entry.to_json(), leaf, reveal
        )


def test_parallel_chunk_hashing_verifies_and_names_the_first_bad_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Large exports hash whole chunks in worker processes; the verdict and the blame stay the same."""
    from governance.audit import verify as verify_module

    monkeypatch.setattr(verify_module, "PARALLEL_MIN_ENTRIES", 2 * verify_module.CHUNK)
    n = 3 * verify_module.CHUNK + 7
    data = export_of(n, reveal=False)
    assert verify_module.verify_export(data).tree_size == n
    parts = lines(data)
    for seq in (5, verify_module.CHUNK + 11, 2 * verify_module.CHUNK + 1):
        line = parts[seq + 1]
        i = line.index(b'"action":"') + 11
        forged = [
            *parts[: seq + 1],
            line[:i] + (b"X" if line[i : i + 1] != b"X" else b"Y") + line[i + 1 :],
            *parts[seq + 2 :],
        ]
        with pytest.raises(VerificationFailed) as info:
            verify_module.verify_export(join(forged))
        assert info.value.seq == seq


def test_parallel_ranges_must_chain_and_every_redundant_field_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each worker takes the number its first line claims; renumbering a whole range (so that it is consistent
    in itself) or altering one line's leaf hash or number is still caught, and the first bad entry named."""
    from governance.audit import verify as verify_module

    monkeypatch.setattr(verify_module, "PARALLEL_MIN_ENTRIES", 2 * verify_module.CHUNK)
    n = 3 * verify_module.CHUNK + 7  # the numbers cross 9999 -> 10000 inside a chunk
    data = export_of(n, reveal=False)
    parts = lines(data)
    body_start = data.index(b"\n") + 1
    middle = data.find(b"\n", body_start + (len(data) - body_start) // 2) + 1
    second = data.count(b"\n", body_start, middle)  # the first entry of the second worker's range

    def renumber(line: bytes, seq: int) -> bytes:
        at = line.rindex(b'"seq":')
        return line[:at] + b'"seq":%d}' % seq

    shifted = parts[: second + 1] + [
        renumber(line, i + 1) for i, line in enumerate(parts[second + 1 :], second)
    ]
    with pytest.raises(VerificationFailed) as info:
        verify_module.verify_export(join(shifted))
    assert info.value.seq == second

    for seq in (0, 9999, second - 1, second, n - 1):
        line = parts[seq + 1]
        i = line.index(b'"leaf_hash":"') + 20
        flipped = line[:i] + (b"0" if line[i : i + 1] != b"0" else b"1") + line[i + 1 :]
        for forged_line in (flipped, renumber(line, seq + 2)):
            forged = [*parts[: seq + 1], forged_line, *parts[seq + 2 :]]
            with pytest.raises(VerificationFailed) as info:
                verify_module.verify_export(join(forged))
            assert info.value.seq == seq
