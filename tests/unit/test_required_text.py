"""One rule for required text (governance/domain/text.py), worded by each caller: an outcome statement's parts
and a comment's body or a moderation reason keep their own error sentences."""

from __future__ import annotations

import pytest

from governance.domain.errors import InvalidInput
from governance.domain.outcome import MAX_PART, parse_statement
from governance.domain.text import TextWording, required_text
from governance.services.comments import _text

WORDING = TextWording(empty="no {what}", too_long="{what}: {length} > {limit}", nul="{what}: NUL")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "no a note"),
        ("  \n ", "no a note"),
        ("x" * 6, "a note: 6 > 5"),
        ("ab\x00c", "a note: NUL"),
        (3, "a note must be text"),
    ],
)
def test_each_refusal_is_worded_by_the_caller_on_its_field(value: object, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        required_text(value, "note", "a note", 5, WORDING)
    assert str(err.value) == message and err.value.field == "note"


def test_the_text_is_stripped() -> None:
    assert required_text("  hello \n", "note", "a note", 5, WORDING) == "hello"


def test_the_statement_and_the_comments_keep_their_sentences() -> None:
    def refused(call: object) -> tuple[str, str | None]:
        with pytest.raises(InvalidInput) as err:
            call()  # type: ignore[operator]
        return str(err.value), err.value.field

    assert refused(lambda: parse_statement(" ", "why", "next")) == ("write what was decided", "decided")
    long = "x" * (MAX_PART + 1)
    assert refused(lambda: parse_statement("ok", long, "next")) == (
        f"why it was decided is longer than {MAX_PART} characters ({MAX_PART + 1})",
        "reasons",
    )
    assert refused(lambda: parse_statement("ok", "why", "a\x00b")) == (
        "what happens next holds a NUL character",
        "next_steps",
    )
    assert refused(lambda: _text("", "body", 10, "a comment")) == ("a comment cannot be empty", "body")
    assert refused(lambda: _text("x" * 11, "reason", 10, "the reason")) == (
        "the reason has at most 10 characters (this one has 11)",
        "reason",
    )
    assert refused(lambda: _text("a\x00", "body", 10, "a comment")) == (
        "a comment must not contain a NUL character",
        "body",
    )
