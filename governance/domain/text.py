"""Validating a required piece of text a person writes (a comment, a moderation reason, a part of an outcome
statement): text, not blank once stripped, at most a limit of characters, no NUL character (PostgreSQL refuses
one). Pure; each caller keeps its own wording of the errors (:class:`TextWording`)."""

from __future__ import annotations

from dataclasses import dataclass

from governance.domain.errors import InvalidInput


@dataclass(frozen=True)
class TextWording:
    """How a caller words each error; ``{what}`` is the text's name in the sentence (e.g. "a comment"),
    ``{limit}`` the most characters allowed, ``{length}`` how many the text has."""

    empty: str
    too_long: str
    nul: str
    not_text: str = "{what} must be text"


def required_text(value: object, field: str, what: str, limit: int, wording: TextWording) -> str:
    """``value`` stripped, or :class:`InvalidInput` on ``field`` worded by ``wording``."""
    if value is not None and not isinstance(value, str):
        raise InvalidInput(wording.not_text.format(what=what), field=field)
    text = (value or "").strip()
    if not text:
        raise InvalidInput(wording.empty.format(what=what), field=field)
    if len(text) > limit:
        raise InvalidInput(wording.too_long.format(what=what, limit=limit, length=len(text)), field=field)
    if "\x00" in text:
        raise InvalidInput(wording.nul.format(what=what), field=field)
    return text
