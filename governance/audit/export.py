"""The export format, written line by line. Pure: the database side (log.py) and tests share it.

An export is JSON Lines, every line canonical JSON, the file ending in a newline:

    line 1   {"checkpoint": signed note, "format": "commons-audit-export", "origin": ..., "public_key": vkey,
              "public_key_pem": PEM, "root_hash": hex, "tree_size": n, "version": 1}
    line k+2 {"entry": entry k, "leaf_hash": hex, "seq": k[, "reveal": {field: {"salt": hex, "value": str}}]}

``entry`` is the entry object itself, so its canonical bytes (the Merkle leaf data) are exactly the bytes of
that member of the line. ``reveal`` is present only in exports that include sensitive values not yet erased.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from governance.audit import merkle
from governance.audit.canonical import Entry, dumps_plain
from governance.audit.checkpoint import Checkpoint, SigningKey

EXPORT_FORMAT = "commons-audit-export"
EXPORT_VERSION = 1


def header_line(key: SigningKey, checkpoint: Checkpoint) -> bytes:
    return dumps_plain(
        {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "origin": checkpoint.origin,
            "tree_size": checkpoint.size,
            "root_hash": checkpoint.root_hash.hex(),
            "public_key": key.verifier.encode(),
            "public_key_pem": key.verifier.pem(),
            "checkpoint": key.sign(checkpoint),
        }
    )


def entry_line(entry: Mapping[str, Any], leaf_hash: bytes, reveal: Mapping[str, Any] | None = None) -> bytes:
    line: dict[str, Any] = {"seq": entry["seq"], "leaf_hash": leaf_hash.hex(), "entry": dict(entry)}
    if reveal:
        line["reveal"] = dict(reveal)
    return dumps_plain(line)


def entry_line_raw(body: bytes, leaf_hash: bytes, seq: int, reveal: Mapping[str, Any] | None = None) -> bytes:
    """``entry_line`` for canonical entry bytes, without parsing them: canonical JSON is compositional, so
    splicing the canonical parts in key order gives the canonical line."""
    shown = b',"reveal":' + dumps_plain(dict(reveal)) if reveal else b""
    return b'{"entry":%s,"leaf_hash":"%s"%s,"seq":%d}' % (body, leaf_hash.hex().encode("ascii"), shown, seq)


def build_export(
    key: SigningKey,
    origin: str,
    entries: Iterable[Entry],
    reveals: Mapping[int, Mapping[str, tuple[bytes, str]]] | None = None,
) -> bytes:
    """A whole export from entries held in memory (tests, benchmarks, re-publishing)."""
    reveals = reveals or {}
    lines: list[bytes] = []
    frontier = merkle.Frontier()
    for entry in entries:
        leaf = merkle.leaf_hash(entry.to_bytes())
        frontier.add(leaf)
        shown = {
            name: {"salt": salt.hex(), "value": value}
            for name, (salt, value) in reveals.get(entry.seq, {}).items()
        }
        lines.append(entry_line(entry.to_json(), leaf, shown))
    header = header_line(key, Checkpoint(origin, frontier.size, frontier.root()))
    return b"".join(line + b"\n" for line in [header, *lines])
