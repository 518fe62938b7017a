"""Every limit on what a client may send, in one place: ids, offsets, numbers, texts, lists and free JSON.

The API's path and query parameters, the pydantic schemas (governance/schemas.py, registry_schemas.py), the UI's
form parsing and the domain's target checks take their bounds from here, so a value the database cannot hold (an
id beyond PostgreSQL's 32-bit ``integer``, a NUL byte in PostgreSQL text, a 400-digit number) is refused with a
4xx before it reaches a query. docs/api.md lists the limits.

The types are plain ``Annotated`` types over ``annotated_types`` constraints, which both Litestar (parameters)
and pydantic (bodies) read and publish in the OpenAPI document. Text and JSON types add a validator that
refuses NUL characters and, for JSON, too deep or too large values.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, TypeGuard

from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import AfterValidator, StringConstraints

from unlearning.contract import MAX_PATTERN_LENGTH

#: the largest id any table holds: PostgreSQL's ``integer`` (SQLite's INTEGER holds 2^63 - 1)
MAX_ID = 2**31 - 1
#: the largest offset a list takes, and the largest audit sequence number
MAX_OFFSET = 2**31 - 1
#: a short name (handle, title, token name, node id, ...)
MAX_NAME = 200
#: a reason, a comment, a description, one behaviour example's prompt or completion
MAX_TEXT = 4000
#: a proposal's rationale or evidence
MAX_LONG_TEXT = 20000
#: a behaviour target's regular expression (the contract's limit)
MAX_PATTERN = MAX_PATTERN_LENGTH
#: a query filter (a state, a kind, a role)
MAX_FILTER = 100
#: items in a list the API takes (roles, events, acceptance tests)
MAX_LIST = 100
#: free JSON (a target, a job's settings, a verification report): nesting, items in all, one string's length
MAX_JSON_DEPTH = 32
MAX_JSON_ITEMS = 100_000
MAX_JSON_STRING = 100_000
#: an integer in free JSON: what a JSON number (a double) holds exactly
MAX_JSON_INT = 2**53
#: behaviour examples in one target
MAX_EXAMPLES = 200
#: a regular expression for texts validated outside pydantic (msgspec bodies): no NUL character
NO_NUL = r"^[^\x00]*$"


def no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain a NUL character")
    return text


def check_json(value: Any, *, depth: int = MAX_JSON_DEPTH, items: int = MAX_JSON_ITEMS) -> Any:
    """``value`` unchanged when it is JSON the service can store: at most ``depth`` levels, ``items`` values in
    all, strings (keys too) of at most ``MAX_JSON_STRING`` characters without NUL, integers within
    +-``MAX_JSON_INT``, finite floats. Raises ``ValueError`` naming the first problem."""
    count = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        count += 1
        if count > items:
            raise ValueError(f"at most {items} values in all")
        if isinstance(node, dict | list):
            if level > depth:
                raise ValueError(f"nested deeper than {depth} levels")
            children = node.values() if isinstance(node, dict) else node
            if isinstance(node, dict):
                for key in node:
                    _check_scalar(key)
            stack.extend((child, level + 1) for child in children)
        else:
            _check_scalar(node)
    return value


def _check_scalar(node: Any) -> None:
    if isinstance(node, str):
        if len(node) > MAX_JSON_STRING:
            raise ValueError(f"a string longer than {MAX_JSON_STRING} characters")
        no_nul(node)
    elif isinstance(node, bool) or node is None:
        return
    elif isinstance(node, int):
        if abs(node) > MAX_JSON_INT:
            raise ValueError(f"an integer beyond +-2^53 ({str(node)[:20]}...)")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ValueError("a number that is not finite")


def parse_id(raw: str | None) -> int | None:
    """An id typed into a form or a query string: digits within ``1..MAX_ID``, else ``None``."""
    text = (raw or "").strip()
    if not text.isdigit() or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def is_id(value: Any) -> TypeGuard[int]:
    """An id given as JSON: an integer (not a bool) within ``1..MAX_ID``."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


# -- the types -------------------------------------------------------------------------------------------------

#: a row's id (path, query or body)
Id = Annotated[int, Ge(1), Le(MAX_ID)]
OptionalId = Annotated[int | None, Ge(1), Le(MAX_ID)]
#: an audit log position or size (0-based)
Seq = Annotated[int, Ge(0), Le(MAX_OFFSET)]
OptionalSeq = Annotated[int | None, Ge(0), Le(MAX_OFFSET)]
Offset = Annotated[int, Ge(0), Le(MAX_OFFSET)]
#: a list filter in a query string (a state, a kind, a role)
Filter = Annotated[str | None, MaxLen(MAX_FILTER)]
#: a model version id in a path
VersionRef = Annotated[str, MinLen(1), MaxLen(MAX_FILTER)]


_NoNul = AfterValidator(no_nul)
#: texts in a body: no NUL, bounded
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME), _NoNul]
Title = Annotated[str, StringConstraints(min_length=3, max_length=MAX_NAME), _NoNul]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT), _NoNul]
LongText = Annotated[str, StringConstraints(max_length=MAX_LONG_TEXT), _NoNul]
Word = Annotated[str, StringConstraints(max_length=MAX_FILTER), _NoNul]
#: free JSON in a body (a target, an election, a job's settings, a report)
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]
