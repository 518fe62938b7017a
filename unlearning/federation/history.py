"""What a training job keeps so that a node that later leaves can be unlearned without it (FedEraser, Liu et
al. 2021): every ``keep_updates_every`` = k rounds (rounds 1, 1 + k, 1 + 2k, ...), the global model that round
started from and, for each node, its updates (its local model minus the global model it started from) summed
over the k rounds of the interval, with its number of examples. (The paper keeps one round's updates every k
rounds; summed over the interval, the same storage covers the whole training: FedAvg's global model moves by
the example-weighted mean of these sums from one kept global model to the next. With k = 1 they are the same.)

Stored in the artifact store next to the model versions, one directory per training job::

    <artifact root>/histories/<job id>/round-0001.safetensors   global/<param> and p<partition>/<param>
    <artifact root>/histories/<job id>/index.json               rounds, files, sha256, bytes, examples

The trained version's manifest names the history in its ``training.history`` list (one entry per training job
of the lineage: ``{job_id, interval, first_round, last_round, rounds, bytes, index_sha256}``), so the version
id covers it; :mod:`unlearning.update_history` reads it back, re-hashing every file against the index and
the index against the manifest.
Size: (1 + nodes) x parameters x 4 bytes per kept round (see docs/operations.md).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, Message
from torch import Tensor

from unlearning.data import sha256_file
from unlearning.federation import protocol as P
from unlearning.update_history import HISTORIES, INDEX, HistoryError, history_dir

__all__ = ["HISTORIES", "INDEX", "HistoryError", "UpdateRecorder", "history_dir"]


class UpdateRecorder:
    """A round observer of :class:`unlearning.federation.server.Federation` for a train job: keeps rounds
    1, 1 + interval, ... of phase ``train`` (see the module docstring)."""

    def __init__(self, artifact_root: str | Path, job_id: str, interval: int, rounds_before: int = 0) -> None:
        if interval < 1:
            raise ValueError("keep_updates_every must be >= 1 to keep a history")
        self.job_id, self.interval, self.rounds_before = job_id, interval, rounds_before
        self.dir = history_dir(artifact_root, job_id)
        if self.dir.exists():  # an earlier attempt of the same job id: start over
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.entries: list[dict[str, Any]] = []
        self.last_round = rounds_before
        self.first: int | None = None  # the interval being summed: its first round, global model, sums
        self.glob: dict[str, Tensor] | None = None
        self.sums: dict[int, dict[str, Tensor]] = {}
        self.examples: dict[str, float] = {}

    def __call__(
        self, phase: str, round_: int, sent: ArrayRecord, nodes: Sequence[Any], replies: Sequence[Message]
    ) -> None:
        if phase != "train":
            return
        number = self.rounds_before + round_
        if (round_ - 1) % self.interval == 0:
            self._flush()
            self.first, self.glob, self.sums, self.examples = number, P.from_record(sent), {}, {}
        glob = P.from_record(sent)
        for node, reply in zip(nodes, replies, strict=True):
            pid = int(node.partition_id)
            local = P.from_record(P.arrays_of(reply))
            total = self.sums.setdefault(pid, {k: torch.zeros_like(v) for k, v in glob.items()})
            for k, v in local.items():
                total[k] += v - glob[k]
            self.examples[str(pid)] = float(P.metrics_of(reply)["num-examples"])
        self.last_round = number

    def _flush(self) -> None:
        """Write the interval that ends here: its first global model and each node's summed updates."""
        if self.first is None or self.glob is None:
            return
        from safetensors.torch import save_file

        tensors: dict[str, Tensor] = {f"global/{k}": v.contiguous() for k, v in self.glob.items()}
        for pid, total in self.sums.items():
            tensors.update({f"p{pid}/{k}": v.contiguous() for k, v in total.items()})
        path = self.dir / f"round-{self.first:04d}.safetensors"
        save_file(tensors, str(path))
        self.entries.append(
            {
                "round": self.first,
                "through": self.last_round,
                "file": path.name,
                "sha256": sha256_file(path),
                "bytes": path.stat().st_size,
                "examples": dict(self.examples),
            }
        )
        self.first = self.glob = None

    def finish(self) -> dict[str, Any]:
        """Write the last interval and the index; the summary the trained version's manifest records."""
        self._flush()
        index = {
            "format": 1,
            "job_id": self.job_id,
            "interval": self.interval,
            "first_round": self.rounds_before + 1,
            "last_round": self.last_round,
            "rounds": self.entries,
        }
        path = self.dir / INDEX
        path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        return {
            "job_id": self.job_id,
            "interval": self.interval,
            "first_round": self.rounds_before + 1,
            "last_round": self.last_round,
            "rounds": [e["round"] for e in self.entries],
            "bytes": sum(int(e["bytes"]) for e in self.entries) + path.stat().st_size,
            "index_sha256": sha256_file(path),
        }

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
