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

:func:`publish` splits such a dataset the way a real federation holds it: each node's folder under a root of
node folders (``NODES/<node>/``, each standing for a member's machine), and only the published manifest and
held-out split in the service's dataset directory (what ``commons demo`` lays out).
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


def node_dirs(root: Path, node_root: Path | None = None) -> list[Path]:
    """The node directories of a dataset, in manifest order (node ``partition-id`` = index): beside the
    manifest in ``root``, or under ``node_root`` where the nodes' data lives apart from the manifest
    (``<node_root>/<the manifest's node path>``, the layout :func:`publish` makes)."""
    base = root if node_root is None else node_root
    return [base / n["path"] for n in read_manifest(root)["nodes"]]


def published_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator publishes of a manifest: all of it but the canaries inserted in members' data."""
    return {**manifest, "canaries": [c for c in manifest.get("canaries", []) if not c.get("inserted")]}


def laid_out(service_dir: Path, node_root: Path, manifest: Mapping[str, Any]) -> bool:
    """Whether ``manifest`` is already laid out as :func:`publish` does: ``service_dir`` publishes it and
    every node file it lists is under ``node_root`` with the listed sha256."""
    if not (service_dir / MANIFEST).is_file() or read_manifest(service_dir) != published_manifest(manifest):
        return False
    files = [(f["file"], f["sha256"]) for n in manifest["nodes"] for f in [*n["sources"], n["validation"]]]
    return all((node_root / f).is_file() and sha256_file(node_root / f) == h for f, h in files)


def publish(dataset: Path, service_dir: Path, node_root: Path) -> dict[str, Any]:
    """Lay a dataset (``dataset``: a generator's or ``commons model init``'s output) out as a federation
    does: each node's folder moves to ``<node_root>/<the manifest's node path>`` (one folder a member's
    machine, what its SuperNode's ``data-path`` names), and ``service_dir`` gets only what the operator
    publishes to the service: the manifest without the canaries inserted in members' data (their secrets are
    members' data) and the held-out split no node trains on. ``dataset`` is removed; returns the published
    manifest. Refuses (ValueError, nothing moved) when a node's folder already exists under ``node_root`` or
    ``service_dir`` already holds a manifest."""
    import shutil

    manifest = read_manifest(dataset)
    if (service_dir / MANIFEST).exists():
        raise ValueError(f"{service_dir} already holds a dataset manifest")
    taken = [str(node_root / n["path"]) for n in manifest["nodes"] if (node_root / n["path"]).exists()]
    if taken:
        raise ValueError(f"a node's data folder already exists: {', '.join(taken)}")
    published = published_manifest(manifest)
    node_root.mkdir(parents=True, exist_ok=True)
    for n in manifest["nodes"]:
        (node_root / n["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(dataset / n["path"]), str(node_root / n["path"]))
    service_dir.mkdir(parents=True, exist_ok=True)
    if (dataset / "heldout").is_dir():
        shutil.copytree(dataset / "heldout", service_dir / "heldout", dirs_exist_ok=True)
    text = json.dumps(published, indent=2, sort_keys=True) + "\n"
    (service_dir / MANIFEST).write_text(text, encoding="utf-8")
    shutil.rmtree(dataset)
    return published


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
