"""What an unlearning method may ask of the federation: the federated building blocks, declared here so that
methods depend on this protocol and not on a runtime. Parameters cross as plain tensors (:data:`Params`);
:class:`unlearning.federation.server.Federation` implements the protocol over Flower messages (and is the only
place that turns tensors into records and back).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from torch import Tensor

from unlearning.tasks import Target, Task

# a model's trainable parameters by name (tied weights once): detached CPU tensors, a plain state dict
Params = dict[str, Tensor]


class Node(Protocol):
    """A node of the federation, as a method sees it."""

    @property
    def node_id(self) -> int: ...

    @property
    def partition_id(self) -> int: ...


class FederationBlocks(Protocol):
    """The building blocks a method composes. Every block sends messages to the nodes and waits for their
    replies; each may raise the runtime's cancellation (at a round boundary) or node-failure errors."""

    @property
    def task(self) -> Task:
        """The job's task (model family, defaults for EWC and repair)."""
        ...

    @property
    def seed(self) -> int:
        """The job's seed (batch orders on the nodes, random reference models)."""
        ...

    @property
    def nodes(self) -> Sequence[Node]:
        """The nodes taking part in the job (after discovery; departed nodes are never among them)."""
        ...

    def holders(self, target: Target) -> tuple[Sequence[Node], set[int]]:
        """Nodes that run the ascent, and the ids of those of them that add the proposal's behaviour
        examples."""
        ...

    def fedavg(
        self,
        params: Params,
        rounds: int,
        phase: str,
        local: dict[str, Any],
        *,
        target: Target | None = None,
        use: str = "retain",
        anchor: Params | None = None,
        fisher: Params | None = None,
        lam: float = 0.0,
        guard: Mapping[str, Any] | None = None,
        teacher: Params | None = None,
        distill: float = 0.0,
    ) -> Params:
        """``rounds`` FedAvg rounds of local training on retained data (``use="all"``: every example): the
        train, retrain and repair rounds; with ``anchor`` and ``fisher`` the EWC proximal step (weight
        ``lam``), with ``guard`` the holders' repair guard, with ``teacher`` distillation from its outputs
        (weight ``distill``)."""
        ...

    def fisher(
        self,
        params: Params,
        which: str,
        target: Target | None,
        *,
        examples: int = 64,
        phase: str = "fisher",
        include_examples: Iterable[int] = (),
    ) -> Params | None:
        """Federated diagonal Fisher of the ``which`` ("retain" | "forget") data at ``params``, averaged by
        examples and normalised to mean 1; None when no node holds such data."""
        ...

    def halimi_reference(self, params: Params, target: Target, local: dict[str, Any]) -> Params:
        """The global model with the holders' contribution removed (Halimi et al. 2022)."""
        ...

    def ascent(
        self,
        params: Params,
        target: Target,
        local: dict[str, Any],
        stop: dict[str, Any],
        *,
        max_rounds: int = 5,
        ball_center: Params | None = None,
        ball_radius: float = math.inf,
        anchor: Params | None = None,
        fisher: Params | None = None,
        lam: float = 0.0,
    ) -> tuple[Params, dict[str, float]]:
        """Federated bounded gradient ascent on the holders until their ``stop`` rule holds; returns the
        unlearned parameters and a summary (steps, rounds, holders, the holders' last metrics)."""
        ...

    def local_updates(
        self,
        params: Params,
        phase: str,
        local: dict[str, Any],
        nodes: Sequence[Node],
        *,
        target: Target | None = None,
        round_: int = 1,
        total: int = 1,
    ) -> dict[int, tuple[Params, float]]:
        """One round of local training on retained data on each of ``nodes`` from ``params``, not averaged:
        each node's model and number of examples by partition id (FedEraser's calibration)."""
        ...

    def evaluate(self, params: Params, target: Target | None, phase: str = "evaluate") -> dict[str, Any]:
        """Every node evaluates ``params`` on its local validation data: {"nodes", "mean", "worst"}."""
        ...
