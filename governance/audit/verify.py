"""Offline verification of an audit export. Pure: works on the export's bytes, no database, no network.

What it checks, stopping at the first failure and naming the entry:
1. the header is canonical JSON of the export format; its checkpoint is signed by its public key (and, when
   given, that key is the one the member trusts);
2. a saved older checkpoint, when given, is signed by the same key and is not ahead of the export;
3. every entry line carries the next sequence number and the leaf hash of its entry, and every revealed
   sensitive value matches its commitment; with ``strict`` every entry is also parsed and checked to be a
   canonical, well-formed version-1 entry (otherwise a line whose bytes are exactly what its entry determines
   is accepted on a fast path: the signed root covers the entry bytes, so integrity is checked either way);
4. the first ``old size`` entries hash to the saved checkpoint's root (consistency with what was seen before);
5. there are exactly ``tree size`` entries and they hash to the signed root.

What it cannot tell: whether others were shown the same log. Members compare checkpoints for that (docs/audit.md).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import operator
from binascii import hexlify
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from governance.audit import merkle
from governance.audit.canonical import (
    Entry,
    EntryFormatError,
    commitment,
    dumps_plain,
    strict_loads,
)
from governance.audit.checkpoint import Checkpoint, CheckpointError, VerifierKey, open_checkpoint
from governance.audit.export import EXPORT_FORMAT, EXPORT_VERSION

HEADER_KEYS = {
    "format",
    "version",
    "origin",
    "tree_size",
    "root_hash",
    "public_key",
    "public_key_pem",
    "checkpoint",
}
LINE_KEYS = {"seq", "leaf_hash", "entry"}
FAST_PREFIX = b'{"entry":'
FAST_START = len(FAST_PREFIX)
FAST_LEAF = b',"leaf_hash":"'
FAST_SEQ = b'","seq":'
CHUNK_LEVEL = 12
CHUNK = 1 << CHUNK_LEVEL
NL = b"\n"
_take = cast("Callable[[bytes, slice], bytes]", operator.getitem)  # line[s] for map, typed
HEX_SLICES = [slice(64 * i, 64 * i + 64) for i in range(CHUNK)]


class VerificationFailed(Exception):
    """The export does not verify. ``seq`` names the first bad entry when the failure is in one."""

    def __init__(self, message: str, *, seq: int | None = None, line: int | None = None) -> None:
        where = f"entry {seq} (line {line}): " if seq is not None else (f"line {line}: " if line else "")
        super().__init__(where + message)
        self.message = message
        self.seq = seq
        self.line = line


@dataclass(frozen=True)
class VerifyResult:
    origin: str
    tree_size: int
    root_hash: bytes
    public_key: str
    checked_against: int | None  # size of the saved checkpoint that was checked, if any
    revealed: int  # sensitive values checked against their commitments


def _header(raw: bytes, trusted_key: VerifierKey | None) -> tuple[dict[str, Any], VerifierKey, Checkpoint]:
    try:
        header = strict_loads(raw)
    except EntryFormatError as exc:
        raise VerificationFailed(f"header is not valid JSON: {exc}", line=1) from exc
    if dumps_plain(header) != raw:
        raise VerificationFailed("header is not canonical JSON", line=1)
    if not isinstance(header, dict) or set(header) != HEADER_KEYS:
        raise VerificationFailed("header does not have the export header's fields", line=1)
    if header["format"] != EXPORT_FORMAT or header["version"] != EXPORT_VERSION:
        raise VerificationFailed(f"not a {EXPORT_FORMAT} version {EXPORT_VERSION} file", line=1)
    if not all(
        isinstance(header[k], str)
        for k in ("origin", "public_key", "public_key_pem", "checkpoint", "root_hash")
    ):
        raise VerificationFailed("header fields have the wrong types", line=1)
    try:
        key = VerifierKey.parse(header["public_key"])
    except CheckpointError as exc:
        raise VerificationFailed(f"public key: {exc}", line=1) from exc
    if header["public_key_pem"] != key.pem():
        raise VerificationFailed("header's PEM public key differs from its verifier key", line=1)
    if trusted_key is not None and (trusted_key.name, trusted_key.raw) != (key.name, key.raw):
        raise VerificationFailed(
            f"the export is signed by {key.encode()}, not by the trusted key {trusted_key.encode()}", line=1
        )
    try:
        checkpoint = open_checkpoint(header["checkpoint"], key, header["origin"])
    except CheckpointError as exc:
        raise VerificationFailed(f"checkpoint: {exc}", line=1) from exc
    if header["tree_size"] != checkpoint.size or header["root_hash"] != checkpoint.root_hash.hex():
        raise VerificationFailed("header size or root differs from its signed checkpoint", line=1)
    return header, key, checkpoint


def _saved(text: str, key: VerifierKey, origin: str, current: Checkpoint) -> Checkpoint:
    try:
        old = open_checkpoint(text, key, origin)
    except CheckpointError as exc:
        raise VerificationFailed(
            f"saved checkpoint: {exc} (a different key means the log was re-signed: history may be rewritten)"
        ) from exc
    if old.size > current.size:
        raise VerificationFailed(
            f"the saved checkpoint has {old.size} entries but the export only {current.size}: the log shrank"
        )
    return old


def verify_export(
    data: bytes | Iterable[bytes],
    *,
    against: str | None = None,
    trusted_key: VerifierKey | None = None,
    strict: bool = False,
) -> VerifyResult:
    """Verify an export (its bytes, or its lines without newlines); raise VerificationFailed at the first fault.

    ``against`` is a signed checkpoint saved earlier, ``trusted_key`` the key the member expects the log to be
    signed with; ``strict`` also checks the format of every entry (slower; integrity is checked either way).
    """
    if isinstance(data, bytes):
        if not data.endswith(b"\n"):
            raise VerificationFailed("the export does not end with a newline (truncated or altered)")
        if not strict and against is None:
            quick = _parallel_verify(data, trusted_key)
            if quick is not None:  # every entry checked on the fast path and the signed root matched
                return quick
        lines = data[:-1].split(b"\n")
    else:
        lines = list(data)
    if not lines:
        raise VerificationFailed("the export is empty")
    header, key, checkpoint = _header(lines[0], trusted_key)
    old = _saved(against, key, checkpoint.origin, checkpoint) if against is not None else None

    body = lines[1:]
    size = checkpoint.size
    count = min(len(body), size)
    check_at = old.size if old is not None and 0 < old.size <= count else None
    # Blocks of whole chunks (hashed a level at a time), split where the saved checkpoint must be compared.
    bounds = sorted({*range(0, count, CHUNK), count, *([check_at] if check_at else [])})
    frontier = merkle.Frontier()
    revealed = 0
    for start, end in itertools.pairwise(bounds):
        block = body[start:end]
        leaves, bad = _fast_leaves(block, start) if not strict else ([b""] * len(block), range(len(block)))
        for i in bad:  # in order, so the first bad entry is the one named
            leaves[i], shown = _check_line(block[i], start + i, start + i + 2)
            revealed += shown
        frontier.extend(leaves, CHUNK_LEVEL)
        if end == check_at and old is not None and frontier.root() != old.root_hash:
            raise VerificationFailed(
                f"the first {check_at} entries do not match the saved checkpoint: history was rewritten"
            )
    if len(body) > size:
        raise VerificationFailed(
            f"the export has more entries than its checkpoint's {size}", seq=size, line=size + 2
        )
    if frontier.size < checkpoint.size:
        raise VerificationFailed(
            f"is missing: the checkpoint has {checkpoint.size} entries, the export {frontier.size}",
            seq=frontier.size,
        )
    if old is not None and old.size == 0 and old.root_hash != merkle.EMPTY_ROOT:
        raise VerificationFailed("the saved checkpoint of an empty log has a wrong root")
    if frontier.root() != checkpoint.root_hash:
        raise VerificationFailed(
            "the entries do not hash to the signed root (entries and leaf hashes were rewritten together)"
        )
    return VerifyResult(
        origin=checkpoint.origin,
        tree_size=checkpoint.size,
        root_hash=checkpoint.root_hash,
        public_key=header["public_key"],
        checked_against=old.size if old is not None else None,
        revealed=revealed,
    )


PARALLEL_MIN_ENTRIES = 32 * CHUNK
_SHARED = b""  # the export, inherited by the forked worker processes (one object: no copy-on-write storm)


def _first_seq(line: bytes) -> int | None:
    """The sequence number a fast-path line ends with (``..."seq":N}\n``), or None."""
    at = line.rfind(FAST_SEQ)
    try:
        return int(line[at + len(FAST_SEQ) : -2]) if at > 0 and line.endswith(b"}\n") else None
    except ValueError:
        return None


def _range_summary(job: tuple[int, int]) -> tuple[int, int, list[bytes], list[bytes], list[bytes], bool]:
    """In a worker: the whole lines of bytes ``[a, b)``. Returns the sequence number the first line claims,
    the number of lines, the leaves up to the first chunk boundary, the roots of the whole chunks, the leaves
    after the last boundary, and whether every line took the fast path (if not, the caller verifies line by
    line to name the first bad entry). The caller checks that the claimed first numbers chain up."""
    a, b = job
    stream = io.BytesIO(_SHARED)  # shares the buffer: the lines are read without copying the range first
    stream.seek(a)
    lines = stream.readlines(b - a)  # exactly the lines of [a, b): both ends are line starts
    first = _first_seq(lines[0]) if lines else None
    if first is None:
        return 0, 0, [], [], [], False
    n = len(lines)
    head = min(n, (-first) % CHUNK)
    whole = (n - head) // CHUNK
    head_leaves, bad = _fast_leaves(lines[:head], first, NL)
    if bad:
        return first, n, [], [], [], False
    roots = []
    for k in range(whole):
        lo = head + k * CHUNK
        leaves, bad = _fast_leaves(lines[lo : lo + CHUNK], first + lo, NL)
        if bad:
            return first, n, [], [], [], False
        roots.append(merkle.perfect_root(leaves))
    tail_leaves, bad = _fast_leaves(lines[head + whole * CHUNK :], first + head + whole * CHUNK, NL)
    return first, n, head_leaves, roots, tail_leaves, not bad


def _parallel_verify(data: bytes, trusted_key: VerifierKey | None) -> VerifyResult | None:
    """Verify a large export on every core: each worker reads and hashes a byte range of whole lines. Returns
    None when it does not apply (small export, one core) or when anything is off, so that the caller's
    line-by-line pass finds and names the first bad entry."""
    import multiprocessing
    import os

    cores = min(os.cpu_count() or 1, 8)
    if cores < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    body_start = data.index(b"\n") + 1
    header, _key, checkpoint = _header(data[: body_start - 1], trusted_key)
    end = len(data)
    if checkpoint.size < PARALLEL_MIN_ENTRIES or end <= body_start:
        return None
    cuts = [body_start]
    for k in range(1, cores):  # split after the newline that follows each share of the bytes
        nl = data.find(b"\n", body_start + (end - body_start) * k // cores)
        if nl < 0 or nl + 1 >= end or nl + 1 <= cuts[-1]:
            break
        cuts.append(nl + 1)
    cuts.append(end)
    global _SHARED
    _SHARED = data
    try:
        with multiprocessing.get_context("fork").Pool(len(cuts) - 1) as pool:
            parts = pool.map(_range_summary, itertools.pairwise(cuts))
    finally:
        _SHARED = b""
    frontier = merkle.Frontier()
    for first, n, head, roots, tail, fine in parts:
        if not fine or first != frontier.size:  # a range that does not start where the last one ended
            return None
        for leaf in head:
            frontier.add(leaf)
        for root in roots:
            frontier.add_subtree(CHUNK_LEVEL, root)
        for leaf in tail:
            frontier.add(leaf)
        if frontier.size != first + n:
            return None
    if frontier.size != checkpoint.size or frontier.root() != checkpoint.root_hash:
        return None
    return VerifyResult(
        origin=checkpoint.origin,
        tree_size=checkpoint.size,
        root_hash=checkpoint.root_hash,
        public_key=header["public_key"],
        checked_against=None,
        revealed=0,
    )


def _fast_leaves(block: list[bytes], start: int, end: bytes = b"") -> tuple[list[bytes], list[int]]:
    """Leaf hashes of entry lines that are exactly ``{"entry":E,"leaf_hash":"H","seq":N}`` (then ``end``) for
    their own E: the only free bytes of such a line are E, and the signed root covers E. Returns the leaves
    and the indices of the other lines (reveals, or anything wrong), which need the thorough check."""
    n = len(block)
    digits = len(b"%d" % start)
    if n and digits == len(b"%d" % (start + n - 1)) and n <= CHUNK:
        leaves = _uniform_leaves(
            block, start, len(FAST_LEAF) + 64 + len(FAST_SEQ) + digits + 1 + len(end), end
        )
        if leaves is not None:
            return leaves, []
    return _line_leaves(block, start, end)


def _uniform_leaves(block: list[bytes], start: int, tail: int, end: bytes) -> list[bytes] | None:
    """``_fast_leaves`` for a block whose sequence numbers have one length, so every line's fixed part has
    ``tail`` bytes after E: the checks are a few comparisons of joined bytes instead of one per line (in
    Python, per-line work costs more than the hashing). None if any line is not on the fast path."""
    sha256, n = hashlib.sha256, len(block)
    entry = slice(FAST_START, -tail)
    leaves = [sha256(b"\x00" + line[entry]).digest() for line in block]
    hexes = hexlify(b"".join(leaves))
    expected = [FAST_LEAF] * (3 * n)  # what must follow each E: the leaf hash of E and the line's number
    expected[1::3] = map(hexes.__getitem__, HEX_SLICES[:n])
    expected[2::3] = map((FAST_SEQ + b"%d}" + end).__mod__, range(start, start + n))
    tails = b"".join(map(_take, block, itertools.repeat(slice(-tail, None))))
    heads = b"".join(map(_take, block, itertools.repeat(slice(0, FAST_START))))
    return leaves if tails == b"".join(expected) and heads == FAST_PREFIX * n else None


def _line_leaves(block: list[bytes], start: int, end: bytes) -> tuple[list[bytes], list[int]]:
    """``_fast_leaves`` line by line, naming the lines that are not on the fast path."""
    sha256 = hashlib.sha256
    cuts = [line.rfind(FAST_LEAF) for line in block]
    leaves = [sha256(b"\x00" + line[FAST_START:cut]).digest() for line, cut in zip(block, cuts, strict=True)]
    tails = [
        b"%s%s%s%d}%s" % (FAST_LEAF, hexlify(leaf), FAST_SEQ, seq, end)
        for leaf, seq in zip(leaves, range(start, start + len(block)), strict=True)
    ]
    bad = [
        i
        for i, (line, cut, tail) in enumerate(zip(block, cuts, tails, strict=True))
        if cut <= 0 or line[cut:] != tail or not line.startswith(FAST_PREFIX)
    ]
    return leaves, bad


def _check_line(raw: bytes, seq: int, line_no: int) -> tuple[bytes, int]:
    """Every check on one entry line; returns its leaf hash and how many revealed values it checked."""
    try:
        record = strict_loads(raw)
    except EntryFormatError as exc:
        raise VerificationFailed(str(exc), seq=seq, line=line_no) from exc
    if dumps_plain(record) != raw:
        raise VerificationFailed("line is not canonical JSON", seq=seq, line=line_no)
    if not isinstance(record, dict) or not LINE_KEYS <= set(record) <= {*LINE_KEYS, "reveal"}:
        raise VerificationFailed("line does not have the fields seq, leaf_hash, entry", seq=seq, line=line_no)
    found = record["seq"]
    if found != seq:
        what = (
            f"is missing (found entry {found} in its place)"
            if isinstance(found, int) and found > seq
            else f"is out of order (found entry {found!r} in its place)"
        )
        raise VerificationFailed(what, seq=seq, line=line_no)
    try:
        entry = Entry.from_json(record["entry"])
    except EntryFormatError as exc:
        raise VerificationFailed(f"invalid entry: {exc}", seq=seq, line=line_no) from exc
    if entry.seq != seq:
        raise VerificationFailed(f"entry says it is number {entry.seq}", seq=seq, line=line_no)
    leaf = merkle.leaf_hash(dumps_plain(record["entry"]))
    if record["leaf_hash"] != leaf.hex():
        raise VerificationFailed("the entry does not hash to its leaf hash (altered)", seq=seq, line=line_no)
    reveal = record.get("reveal")
    return leaf, (_check_reveal(reveal, entry, seq, line_no) if reveal is not None else 0)


def _check_reveal(reveal: Any, entry: Entry, seq: int, line_no: int) -> int:
    if not isinstance(reveal, dict) or not reveal:
        raise VerificationFailed("reveal is not an object of fields", seq=seq, line=line_no)
    for name, item in reveal.items():
        if name not in entry.sensitive:
            raise VerificationFailed(f"revealed field {name!r} has no commitment", seq=seq, line=line_no)
        if (
            not isinstance(item, dict)
            or set(item) != {"salt", "value"}
            or not isinstance(item["salt"], str)
            or not isinstance(item["value"], str)
        ):
            raise VerificationFailed(f"revealed field {name!r} is malformed", seq=seq, line=line_no)
        try:
            salt = bytes.fromhex(item["salt"])
        except ValueError as exc:
            raise VerificationFailed(
                f"revealed field {name!r} has a bad salt", seq=seq, line=line_no
            ) from exc
        if commitment(salt, item["value"]) != entry.sensitive[name]:
            raise VerificationFailed(
                f"revealed field {name!r} does not match its commitment", seq=seq, line=line_no
            )
    return len(reveal)
