"""How a verification report names the nodes a figure was computed on: by the node's name in the dataset's
manifest (a bring-your-own dataset keeps its folder names: ``alice``, ``bob``; docs/bring-your-own.md), and
``node-<partition>`` only where the manifest names none. The probes, the metrics' state and the nodes' replies
all label nodes through :func:`node_label` / :func:`nodes_where`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def manifest_node_names(manifest: Mapping[str, Any]) -> dict[int, str]:
    """Partition id (the node's place in the manifest's node list) -> its name: the entry's ``node``, else its
    folder ``path``; an entry with neither is left out (labelled ``node-<partition>``)."""
    names: dict[int, str] = {}
    nodes = manifest.get("nodes")
    for pid, entry in enumerate(nodes if isinstance(nodes, list) else []):
        if isinstance(entry, Mapping):
            name = str(entry.get("node") or entry.get("path") or "").strip()
            if name:
                names[pid] = name
    return names


def node_label(partition_id: int, names: Mapping[int, str]) -> str:
    """The node's name from the manifest, else ``node-<partition>``."""
    return names.get(partition_id) or f"node-{partition_id}"


def nodes_where(partition_ids: Iterable[int], names: Mapping[int, str]) -> str:
    """A report's ``computed_at`` entry for figures computed on these nodes: ``"nodes: alice, bob"``."""
    return "nodes: " + ", ".join(node_label(p, names) for p in partition_ids)
