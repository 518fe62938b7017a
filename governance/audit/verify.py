"""Offline verification of an audit export. Pure: works on the export's bytes, no database, no network.

What it checks, stopping at the first failure and naming the entry:
1. the header is canonical JSON of the export format; its checkpoint is signed by its public key (and, when
   given, that key is the one the member trusts);
2. a saved older checkpoint, when given, is signed by the same key and is not ahead of the export;
3. every entry line is canonical JSON, carries the next sequence number, holds a valid entry whose leaf hash
   is the declared one, and every revealed sensitive value matches its commitment;
4. the first ``old size`` entries hash to the saved checkpoint's root (consistency with what was seen before);
5. there are exactly ``tree size`` entries and they hash to the signed root.

What it cannot tell: whether others were shown the same log. Members compare checkpoints for that (docs/audit.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
) -> VerifyResult:
    """Verify an export (its bytes, or its lines without newlines); raise VerificationFailed at the first fault."""
    if isinstance(data, bytes):
        if not data.endswith(b"\n"):
            raise VerificationFailed("the export does not end with a newline (truncated or altered)")
        lines: Iterable[bytes] = data[:-1].split(b"\n")
    else:
        lines = data
    it = iter(lines)
    first = next(it, None)
    if first is None:
        raise VerificationFailed("the export is empty")
    header, key, checkpoint = _header(first, trusted_key)
    old = _saved(against, key, checkpoint.origin, checkpoint) if against is not None else None

    frontier = merkle.Frontier()
    revealed = 0
    sha256 = hashlib.sha256
    for seq, raw in enumerate(it):
        line_no = seq + 2
        if seq >= checkpoint.size:
            raise VerificationFailed(
                f"the export has more entries than its checkpoint's {checkpoint.size}", seq=seq, line=line_no
            )
        try:
            record = strict_loads(raw)
        except EntryFormatError as exc:
            raise VerificationFailed(str(exc), seq=seq, line=line_no) from exc
        if dumps_plain(record) != raw:
            raise VerificationFailed("line is not canonical JSON", seq=seq, line=line_no)
        if not isinstance(record, dict) or not LINE_KEYS <= set(record) <= {*LINE_KEYS, "reveal"}:
            raise VerificationFailed(
                "line does not have the fields seq, leaf_hash, entry", seq=seq, line=line_no
            )
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
        leaf = sha256(merkle.LEAF_PREFIX + dumps_plain(record["entry"])).digest()
        if record["leaf_hash"] != leaf.hex():
            raise VerificationFailed(
                "the entry does not hash to its leaf hash (altered)", seq=seq, line=line_no
            )
        reveal = record.get("reveal")
        if reveal is not None:
            revealed += _check_reveal(reveal, entry, seq, line_no)
        frontier.add(leaf)
        if old is not None and frontier.size == old.size and frontier.root() != old.root_hash:
            raise VerificationFailed(
                f"the first {old.size} entries do not match the saved checkpoint: history was rewritten"
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
