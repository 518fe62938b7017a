"""Datasets on disk: one directory per node with one JSONL file per named data source, plus a manifest.

Layout written by every generator (and by ``commons model init`` for bring-your-own data)::

    DATASET/
      manifest.json            task, seed, generator settings, categories, every file's sha256
      node-0/<source>.jsonl    the node's data sources (training data; one record per line)
      node-0/validation.jsonl  the node's local validation data (used for stop rules and evaluation)
      ...
      heldout/validation.jsonl, heldout/test.jsonl   data no node trains on (benchmarks, central checks)

The generators name their nodes ``node-K``; an imported dataset (``commons model init --data``) keeps the
members' folder names (``alice/notes.jsonl``). A node only ever needs its own directory (``--node-config
data-path=DATASET/node-0`` in deployment). Every record carries ``source`` (the data-source name,
``<node>/<file stem>``) and, where it has one, ``category``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Record = dict[str, Any]


@dataclass
class NodeData:
    """A node's local data as records (the node's own files)."""

    train: list[Record]
    validation: list[Record]


def read_jsonl(path: Path) -> list[Record]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, records: Iterable[Record]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n")


MANIFEST = "manifest.json"
VALIDATION = "validation.jsonl"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_dataset(
    root: Path,
    *,
    task: str,
    seed: int,
    nodes: Mapping[str, Mapping[str, Sequence[Record]]],
    validation: Mapping[str, Sequence[Record]],
    heldout: Mapping[str, Sequence[Record]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write per-node JSONL files and the manifest; returns the manifest. ``nodes[node][stem] = records``."""
    root.mkdir(parents=True, exist_ok=True)
    node_entries = []
    categories: set[str] = set()
    for node, sources in nodes.items():
        entries = []
        for stem, records in sources.items():
            name = f"{node}/{stem}"
            recs = [{**r, "source": name} for r in records]
            categories.update(str(r["category"]) for r in recs if r.get("category") is not None)
            path = root / node / f"{stem}.jsonl"
            write_jsonl(path, recs)
            entries.append(
                {
                    "name": name,
                    "file": f"{node}/{stem}.jsonl",
                    "sha256": sha256_file(path),
                    "records": len(recs),
                }
            )
        vpath = root / node / VALIDATION
        write_jsonl(vpath, [{**r, "source": f"{node}/validation"} for r in validation.get(node, [])])
        node_entries.append(
            {
                "node": node,
                "path": node,
                "sources": entries,
                "validation": {"file": f"{node}/{VALIDATION}", "sha256": sha256_file(vpath)},
            }
        )
    held = {}
    for split, records in heldout.items():
        path = root / "heldout" / f"{split}.jsonl"
        write_jsonl(path, records)
        held[split] = {"file": f"heldout/{split}.jsonl", "sha256": sha256_file(path), "records": len(records)}
    manifest: dict[str, Any] = {
        "format": 1,
        "task": task,
        "seed": seed,
        "categories": sorted(categories),
        "nodes": node_entries,
        "heldout": held,
        **(extra or {}),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no dataset manifest at {path} (create one with `commons model init`)")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def node_dirs(root: Path) -> list[Path]:
    """The node directories of a dataset, in manifest order (node ``partition-id`` = index)."""
    return [root / n["path"] for n in read_manifest(root)["nodes"]]


def load_node_data(node_dir: Path) -> NodeData:
    """A node's local data: every ``*.jsonl`` except ``validation.jsonl`` is training data (sorted by name)."""
    if not node_dir.is_dir():
        raise FileNotFoundError(f"node data directory {node_dir} does not exist")
    train: list[Record] = []
    for path in sorted(node_dir.glob("*.jsonl")):
        if path.name != VALIDATION:
            train.extend(read_jsonl(path))
    vpath = node_dir / VALIDATION
    return NodeData(train=train, validation=read_jsonl(vpath) if vpath.is_file() else [])


def load_heldout(root: Path, split: str) -> list[Record]:
    return read_jsonl(root / "heldout" / f"{split}.jsonl")


def source_names(root: Path) -> list[str]:
    return [s["name"] for n in read_manifest(root)["nodes"] for s in n["sources"]]
