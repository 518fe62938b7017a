"""Canonical JSON and the version-1 entry format."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.audit.canonical import (
    Entry,
    EntryFormatError,
    canonical_dumps,
    commitment,
    format_timestamp,
    is_canonical,
    normalise,
)


class Colour(Enum):
    RED = "red"


def test_sorted_compact_utf8() -> None:
    assert canonical_dumps({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()


def test_floats_and_friends_become_unambiguous_strings() -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert normalise({"q": 0.3, "d": Decimal("1.50"), "t": when, "c": Colour.RED, "s": {2, 1}}) == {
        "q": "0.3",
        "d": "1.50",
        "t": "2024-05-01T10:00:00.000000Z",
        "c": "red",
        "s": [1, 2],
    }


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1: "x"}, object(), "\ud800"])
def test_unencodable_values_are_refused(bad: object) -> None:
    with pytest.raises(EntryFormatError):
        canonical_dumps({"x": bad})


def test_is_canonical() -> None:
    assert is_canonical(b'{"a":1,"b":[]}')
    assert not is_canonical(b'{"b":[],"a":1}')
    assert not is_canonical(b'{"a": 1}')
    assert not is_canonical(b'{"a":1.0}')
    assert not is_canonical(b'{"a":"\\u00e9"}')
    assert not is_canonical(b'{"a":1,"a":1}')
    assert not is_canonical(b"\xff")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_every_plain_value_has_one_canonical_encoding(value: object) -> None:
    try:
        raw = canonical_dumps(value)
    except EntryFormatError:
        return  # lone surrogates
    assert is_canonical(raw)


def _entry(**kw: object) -> Entry:
    base: dict[str, object] = {
        "seq": 3,
        "ts": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "actor": "alice",
        "action": "vote.cast",
        "subject": "proposal:1",
        "payload": {"choice": "approve", "weight": 1},
        "sensitive": {"rationale": commitment(b"s" * 32, "because")},
    }
    base.update(kw)
    return Entry.build(**base)  # type: ignore[arg-type]


def test_entry_round_trip_and_exact_bytes() -> None:
    entry = _entry()
    raw = entry.to_bytes()
    assert raw.startswith(b'{"action":"vote.cast","actor":"alice","payload":{"choice":"approve","weight":1}')
    assert b'"ts":"2024-01-02T03:04:05.000006Z","v":1}' in raw
    assert Entry.from_bytes(raw) == entry


def test_entry_rejects_non_canonical_or_incomplete_input() -> None:
    raw = _entry().to_bytes()
    with pytest.raises(EntryFormatError):
        Entry.from_bytes(raw.replace(b'"v":1', b'"v":2'))
    with pytest.raises(EntryFormatError):
        Entry.from_bytes(raw.replace(b",", b", ", 1))
    with pytest.raises(EntryFormatError):
        Entry.from_bytes(b'{"seq":1}')


@pytest.mark.parametrize(
    "kw",
    [{"action": ""}, {"action": "x" * 101}, {"subject": "y" * 201}, {"actor": ""}, {"payload": ["no"]}],
)
def test_entry_bounds(kw: dict[str, object]) -> None:
    with pytest.raises(EntryFormatError):
        _entry(**kw)


def test_naive_timestamps_are_utc() -> None:
    assert format_timestamp(datetime(2024, 1, 1)) == "2024-01-01T00:00:00.000000Z"


def test_commitments_depend_on_salt_and_value() -> None:
    assert commitment(b"a", "x") != commitment(b"b", "x") != commitment(b"a", "y")
    assert commitment(b"a", "x").startswith("sha256:")
