"""Protected strings: secrets a data source's owner declares on their own node, checked like canaries.

A member whose data holds a secret that the operator's manifest does not list as a canary (a password, an
account number, a phrase written many times) declares it in ``protected.txt`` beside the node's JSONL files,
one string per line (blank lines and lines starting with ``#`` are skipped; surrounding white space is
dropped; at least :data:`MIN_LENGTH` characters). The file never leaves the node. During verification the node
finds each string's occurrences in the target's records (:func:`occurrences`), takes the text before the most
frequent occurrence as its prefix, and scores it with the canaries it holds (greedy and best-of-N extraction,
format-shifted prefixes; exposure when the string is a digit secret, the only format the Secret Sharer's
random alternatives are drawn from). Only counts and scores go back.

So that a node cannot silently drop a string later, the owner may register a **commitment** with the data
source: the number of strings and a salted sha256 of the list (:func:`commitment`), computed where the file is
(``commons data-source register --protected FILE``). The salt (32 random bytes, hex) is kept beside the file in
``protected.salt`` and never sent: the service holds a hash it cannot test guesses against. At verification the
node reports the commitment of the list it checked; one that differs from the registered one makes the
extraction metrics unmeasured (they block every test that names them).

This module imports neither torch nor Flower (the CLI computes the commitment with it).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

PROTECTED_FILE = "protected.txt"
SALT_FILE = "protected.salt"
MIN_LENGTH = 6  # a shorter string is reproduced by chance too easily to mean anything
MAX_STRINGS = 1000
_DOMAIN = "commons-protected-strings-v1"


class ProtectedStringsError(ValueError):
    """A protected-strings file is malformed (the message names the file and the line)."""


def parse_protected(text: str, where: str = PROTECTED_FILE) -> list[str]:
    """The declared strings of a ``protected.txt`` body, deduplicated, in file order."""
    out: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if len(s) < MIN_LENGTH:
            raise ProtectedStringsError(
                f"{where} line {n}: a protected string needs at least {MIN_LENGTH} characters (got {len(s)})"
            )
        if s not in out:
            out.append(s)
    if len(out) > MAX_STRINGS:
        raise ProtectedStringsError(f"{where}: at most {MAX_STRINGS} protected strings (got {len(out)})")
    return out


def read_protected(node_dir: Path) -> list[str]:
    """The strings declared in ``node_dir/protected.txt`` ([] when there is no such file)."""
    path = node_dir / PROTECTED_FILE
    if not path.is_file():
        return []
    try:
        return parse_protected(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError as exc:
        raise ProtectedStringsError(f"{path} is not UTF-8 text: {exc}") from None


def read_salt(directory: Path, *, create: bool = False) -> str:
    """The salt kept beside ``protected.txt`` (hex); ``create``: write a new random one when there is none.
    Without a salt file (and ``create`` False) the salt is empty."""
    path = directory / SALT_FILE
    if path.is_file():
        salt = path.read_text(encoding="ascii").strip()
        try:
            bytes.fromhex(salt)
        except ValueError:
            raise ProtectedStringsError(f"{path} does not hold a hex salt") from None
        return salt
    if not create:
        return ""
    salt = secrets.token_hex(32)
    path.write_text(salt + "\n", encoding="ascii")
    return salt


def commitment(strings: Iterable[str], salt: str) -> str:
    """sha256 (hex) of the domain tag, the salt and the sorted, deduplicated strings, one per line."""
    body = "".join(f"{s}\n" for s in sorted(set(strings)))
    return hashlib.sha256(f"{_DOMAIN}\n{salt}\n{body}".encode()).hexdigest()


def commitment_of_file(path: Path, *, create_salt: bool = False) -> dict[str, Any]:
    """{"count", "sha256"} of a ``protected.txt`` (its salt read, or created, beside it)."""
    try:
        strings = parse_protected(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError as exc:
        raise ProtectedStringsError(f"{path} is not UTF-8 text: {exc}") from None
    return {"count": len(strings), "sha256": commitment(strings, read_salt(path.parent, create=create_salt))}


def node_commitment(node_dir: Path) -> dict[str, Any]:
    """{"count", "sha256"} of the list this node checks (what it reports at verification)."""
    strings = read_protected(node_dir)
    return {"count": len(strings), "sha256": commitment(strings, read_salt(node_dir))}


# A sha256 travels in a Flower MetricRecord (numbers only) as 8 words of 32 bits (exact as floats).
def to_words(digest: str) -> list[float]:
    return [float(int(digest[i : i + 8], 16)) for i in range(0, 64, 8)]


def from_words(words: Sequence[float]) -> str:
    return "".join(f"{int(w):08x}" for w in words)


def occurrences(
    strings: Sequence[str], records: Sequence[dict[str, Any]], covers: Callable[[dict[str, Any], str], bool]
) -> list[tuple[str, str, int]]:
    """Per declared string found in the records ``covers`` accepts for it: (prefix, string, occurrences);
    the prefix is the record's text before the string's most frequent one (ties: the first seen).
    Strings not found are left out."""
    out = []
    for s in strings:
        prefixes: Counter[str] = Counter()
        for r in records:
            text = r.get("text")
            if not isinstance(text, str) or s not in text or not covers(r, s):
                continue
            start = text.find(s)
            while start >= 0:
                prefixes[text[:start]] += 1
                start = text.find(s, start + len(s))
        if prefixes:
            prefix = prefixes.most_common(1)[0][0]
            out.append((prefix, s, sum(prefixes.values())))
    return out
