"""Canonical JSON and the versioned audit entry format. Pure: no database, no I/O.

Canonical JSON here means: object keys sorted by code point, no insignificant whitespace, UTF-8 (non-ASCII
characters written as themselves, never ``\\u`` escapes), no NaN or infinities. Floats are never written as
JSON numbers, because two implementations may print the same float differently: ``normalise`` turns a float
into its shortest round-trip decimal *string* (``0.3`` -> ``"0.3"``), a ``Decimal`` likewise, a datetime into
an ISO 8601 UTC string, an Enum into its value. A given value therefore has exactly one encoding, and
``is_canonical(raw)`` can tell whether bytes are that encoding.

An entry (format version 1) is the canonical JSON object::

    {"action": str, "actor": str | null, "payload": {...}, "seq": int, "sensitive": {field: "sha256:<hex>"},
     "subject": str, "ts": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "v": 1}

and its bytes are the Merkle leaf data. ``sensitive`` holds commitments, SHA-256(salt || UTF-8 value), to
values stored beside the log, so that a value can be erased while the entry, and every proof, stays valid.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

ENTRY_VERSION = 1
COMMITMENT_PREFIX = "sha256:"
MAX_ACTION = 100
MAX_SUBJECT = 200
MAX_ACTOR = 200
MAX_FIELD = 100

JSONValue = None | bool | int | str | list["JSONValue"] | dict[str, "JSONValue"]


class EntryFormatError(ValueError):
    """A value cannot be written into, or read back from, an audit entry."""


def normalise(value: Any, path: str = "$") -> JSONValue:
    """Turn a payload into plain JSON values with exactly one canonical encoding."""
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            _check_text(value, path)
        return value
    if isinstance(value, Enum):
        return normalise(value.value, path)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EntryFormatError(f"{path}: {value!r} cannot be written to the audit log")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise EntryFormatError(f"{path}: {value!r} cannot be written to the audit log")
        return str(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EntryFormatError(f"{path}: object keys must be strings, got {key!r}")
            _check_text(key, path)
            out[key] = normalise(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [normalise(item, f"{path}[{i}]") for i, item in enumerate(items)]
    raise EntryFormatError(f"{path}: {type(value).__name__} cannot be written to the audit log")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EntryFormatError(f"{path}: text is not valid Unicode (lone surrogate)") from exc


def canonical_dumps(value: Any) -> bytes:
    """The canonical UTF-8 bytes of a value (normalised first)."""
    return dumps_plain(normalise(value))


def dumps_plain(value: JSONValue) -> bytes:
    """The canonical bytes of a value that is already plain JSON (e.g. what ``strict_loads`` returned)."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # a lone surrogate cannot be encoded as UTF-8
        raise EntryFormatError(f"cannot be written as canonical JSON: {exc}") from exc


def _reject_constant(name: str) -> None:
    raise EntryFormatError(f"{name} is not allowed in canonical JSON")


def _reject_float(text: str) -> None:
    raise EntryFormatError(f"number {text} is not allowed in canonical JSON (floats are written as strings)")


def strict_loads(raw: bytes) -> Any:
    """Parse canonical-JSON bytes; floats, NaN and invalid UTF-8 are errors."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EntryFormatError("not valid UTF-8") from exc
    try:
        return json.loads(text, parse_float=_reject_float, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise EntryFormatError(f"not valid JSON: {exc.msg} at column {exc.colno}") from exc


def is_canonical(raw: bytes) -> bool:
    """True when ``raw`` is exactly the canonical encoding of the value it parses to."""
    try:
        return dumps_plain(strict_loads(raw)) == raw
    except EntryFormatError:
        return False


def format_timestamp(moment: datetime) -> str:
    """UTC, microseconds, ``Z``. A naive datetime is taken to be UTC (that is what SQLite gives back)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise EntryFormatError(f"timestamp {text!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ") from exc


def commitment(salt: bytes, value: str) -> str:
    """The salted hash that stands in an entry for a sensitive value."""
    return COMMITMENT_PREFIX + hashlib.sha256(salt + value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One audit entry as it is hashed. ``to_bytes`` is the leaf data; ``from_bytes`` accepts only that."""

    seq: int
    ts: str
    actor: str | None
    action: str
    subject: str
    payload: dict[str, JSONValue]
    sensitive: dict[str, str]

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "v": ENTRY_VERSION,
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "payload": self.payload,
            "sensitive": dict(self.sensitive),
        }

    def to_bytes(self) -> bytes:
        return canonical_dumps(self.to_json())

    @classmethod
    def build(
        cls,
        *,
        seq: int,
        ts: datetime,
        actor: str | None,
        action: str,
        subject: str,
        payload: Mapping[str, Any],
        sensitive: Mapping[str, str],
    ) -> Entry:
        """Validate and normalise the parts of a new entry."""
        _bounded("actor", actor, MAX_ACTOR, optional=True)
        _bounded("action", action, MAX_ACTION)
        _bounded("subject", subject, MAX_SUBJECT)
        if not isinstance(payload, Mapping):
            raise EntryFormatError("payload must be a JSON object")
        for name in sensitive:
            _bounded("sensitive field name", name, MAX_FIELD)
        normal = normalise(payload, "payload")
        if not isinstance(normal, dict):  # pragma: no cover - a Mapping always normalises to a dict
            raise EntryFormatError("payload must be a JSON object")
        return cls(seq, format_timestamp(ts), actor, action, subject, normal, dict(sensitive))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Entry:
        """Parse entry bytes, accepting only the canonical encoding of a valid version-1 entry."""
        value = strict_loads(raw)
        if dumps_plain(value) != raw:
            raise EntryFormatError("entry is not in canonical form")
        return cls.from_json(value)

    @classmethod
    def from_json(cls, value: Any) -> Entry:
        """Validate an already parsed entry object."""
        if not isinstance(value, dict):
            raise EntryFormatError("entry is not a JSON object")
        expected = {"v", "seq", "ts", "actor", "action", "subject", "payload", "sensitive"}
        if set(value) != expected:
            raise EntryFormatError(f"entry keys are {sorted(value)}, expected {sorted(expected)}")
        if value["v"] != ENTRY_VERSION:
            raise EntryFormatError(f"unknown entry format version {value['v']!r}")
        seq, ts, actor, action = value["seq"], value["ts"], value["actor"], value["action"]
        subject, payload, sensitive = value["subject"], value["payload"], value["sensitive"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise EntryFormatError("seq must be a non-negative integer")
        if not isinstance(ts, str):
            raise EntryFormatError("ts must be a string")
        parse_timestamp(ts)
        if not (actor is None or isinstance(actor, str)) or not isinstance(action, str):
            raise EntryFormatError("actor and action must be strings")
        if not isinstance(subject, str) or not isinstance(payload, dict) or not isinstance(sensitive, dict):
            raise EntryFormatError("subject must be a string, payload and sensitive objects")
        for name, digest in sensitive.items():
            if not isinstance(digest, str) or not digest.startswith(COMMITMENT_PREFIX):
                raise EntryFormatError(f"sensitive field {name!r} is not a sha256 commitment")
        return cls(seq, ts, actor, action, subject, payload, sensitive)


def _bounded(name: str, value: str | None, limit: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise EntryFormatError(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise EntryFormatError(f"{name} is longer than {limit} characters")
    _check_text(value, name)
