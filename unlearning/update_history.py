"""Reading a lineage's kept training updates (what :mod:`unlearning.federation.history` writes during training;
see there for the layout): :func:`check_complete` and :func:`load_rounds`, for methods such as ``federaser``
(which may not import the federation). Every file is re-hashed against its index, and every index against the
trained version's manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from unlearning.data import sha256_file

HISTORIES = "histories"
INDEX = "index.json"


class HistoryError(ValueError):
    """The lineage kept no (complete, intact) update history."""


def history_dir(artifact_root: str | Path, job_id: str) -> Path:
    if not job_id or "/" in job_id or job_id.startswith("."):
        raise HistoryError(f"{job_id!r} is not a job id")
    return Path(artifact_root) / HISTORIES / job_id


@dataclass
class KeptRound:
    round: int  # the interval's first round ...
    through: int  # ... and its last
    global_params: dict[str, Tensor]
    updates: dict[int, dict[str, Tensor]]  # partition id -> update
    examples: dict[int, float]


def check_complete(lineage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The lineage's history entries, checked to cover every training round from its initial model; raises
    :class:`HistoryError` saying what is missing."""
    entries = list(lineage.get("history") or [])
    rounds = int(lineage.get("rounds", 0))
    if not entries:
        raise HistoryError(
            "the base version's training kept no update history: train with keep_updates_every >= 1 "
            "(see docs/unlearning.md, FedEraser)"
        )
    expected = 1
    for e in entries:
        if int(e["first_round"]) != expected:
            raise HistoryError(
                f"the update history misses rounds {expected}..{int(e['first_round']) - 1} of the lineage's "
                "training (a training job kept none)"
            )
        expected = int(e["last_round"]) + 1
    if expected - 1 != rounds:
        raise HistoryError(
            f"the update history covers {expected - 1} of the lineage's {rounds} training rounds"
        )
    return entries


def load_rounds(artifact_root: str | Path, entries: Sequence[Mapping[str, Any]]) -> Iterator[KeptRound]:
    """Every kept round of ``entries`` in order, each file re-hashed against its index (and each index
    against the manifest's ``index_sha256``)."""
    from safetensors.torch import load_file

    for entry in entries:
        d = history_dir(artifact_root, str(entry["job_id"]))
        index_path = d / INDEX
        if not index_path.is_file():
            raise HistoryError(f"the update history of training job {entry['job_id']} is missing ({d})")
        if sha256_file(index_path) != entry.get("index_sha256"):
            raise HistoryError(f"the update history of training job {entry['job_id']} was modified (index)")
        index = json.loads(index_path.read_text())
        for r in index["rounds"]:
            path = d / str(r["file"])
            if not path.is_file() or sha256_file(path) != r["sha256"]:
                raise HistoryError(f"the update history's {r['file']} of job {entry['job_id']} was modified")
            tensors = load_file(str(path))
            glob = {k.removeprefix("global/"): v for k, v in tensors.items() if k.startswith("global/")}
            updates: dict[int, dict[str, Tensor]] = {}
            for k, v in tensors.items():
                if k.startswith("p"):
                    pid, name = k[1:].split("/", 1)
                    updates.setdefault(int(pid), {})[name] = v
            yield KeptRound(
                int(r["round"]),
                int(r.get("through", r["round"])),
                glob,
                updates,
                {int(p): float(n) for p, n in r["examples"].items()},
            )
