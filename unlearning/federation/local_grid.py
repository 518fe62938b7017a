"""The in-process runtime: a Flower ``Grid`` that delivers every message to the ClientApp in this process.

No Ray, no SuperLink: ``push_messages`` serialises the message to protobuf (Flower's own ``message_to_proto``)
and parses it back, calls the ClientApp with the destination node's ``Context``, and round-trips the reply the
same way, so what the apps exchange is exactly what would cross the wire. ``observer`` (if given) sees every
message after serialisation, both directions (tests use it to check that no data set content crosses).

Node failures can be staged the way a SuperLink shows them to a ServerApp: :meth:`LocalGrid.stop_node` takes a
node off the list of connected nodes and answers every message to it with Flower's ``NODE_UNAVAILABLE`` error
(what the SuperLink replies once a SuperNode misses its heartbeats) or, ``silent``, stays listed and answers
nothing (a hung node, or replies lost on the way); :meth:`LocalGrid.restart_node` brings it back under a new node id, as a restarted SuperNode.

Flower stamps new messages with the process-wide ``TaskIdentity`` (run id, node id); the simulation and
deployment runtimes set it for their ServerApp process, and this grid sets the same values (a fixed run id,
the SuperLink's node id), so several in-process jobs in threads agree on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import count
from pathlib import Path
from typing import Any
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

LOCAL_RUN_ID = 1
Observer = Callable[[str, Message], None]  # ("to-node" | "from-node", message)


def claim_task_identity() -> None:
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = LOCAL_RUN_ID
    TaskIdentity.node_id = SUPERLINK_NODE_ID


def _roundtrip(message: Message) -> Message:
    return message_from_proto(message_to_proto(message))


class LocalGrid(Grid):
    """Nodes are ``node_configs[i]`` (each gets node id ``1000 + i`` and its own persistent Context)."""

    def __init__(
        self,
        client_app: ClientApp,
        node_configs: Iterable[Mapping[str, Any]],
        run_config: Mapping[str, Any] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.client_app = client_app
        self.observer = observer
        self._run = Run.create_empty(LOCAL_RUN_ID)
        self._contexts: dict[int, Context] = {}
        for i, cfg in enumerate(node_configs):
            node_id = 1000 + i
            self._contexts[node_id] = Context(
                run_id=LOCAL_RUN_ID,
                node_id=node_id,
                node_config=dict(cfg),
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
        self._replies: dict[str, Message] = {}
        self._ids = count(1)
        self._down: dict[int, bool] = {}  # stopped node id -> silent
        self._next_node_id = 1000 + len(self._contexts)
        claim_task_identity()

    @classmethod
    def for_dataset(
        cls,
        client_app: ClientApp,
        dataset_dir: Path,
        observer: Observer | None = None,
        node_root: Path | None = None,
    ) -> LocalGrid:
        """One node per node of ``dataset_dir``'s manifest, each with its own folder as node config
        ``data-path`` (what a SuperNode gets): beside the manifest, or ``<node_root>/<the manifest's node
        path>`` where the nodes' data lives apart from it (``FlowerSettings.node_data_dir``)."""
        from unlearning.data import node_dirs

        dirs = node_dirs(dataset_dir, node_root)
        configs = [
            {"partition-id": i, "num-partitions": len(dirs), "data-path": str(d)} for i, d in enumerate(dirs)
        ]
        return cls(client_app, configs, observer=observer)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [i for i in self._contexts if not (i in self._down and not self._down[i])]

    def stop_node(self, node_id: int, *, silent: bool = False) -> None:
        """The node stops answering: it is no longer listed, and a message to it gets Flower's
        ``NODE_UNAVAILABLE`` error reply (``silent``: it stays listed, and a message to it gets no reply)."""
        self._down[node_id] = silent

    def resume_node(self, node_id: int) -> None:
        """The stopped node answers again under its own node id (a network that came back)."""
        self._down.pop(node_id, None)

    def restart_node(self, node_id: int) -> int:
        """The node comes back, with its node config and data, under a new node id (returned): Flower gives a
        restarted SuperNode a new id; the old one stays unavailable."""
        self._down[node_id] = False
        new_id = self._next_node_id
        self._next_node_id += 1
        old = self._contexts[node_id]
        self._contexts[new_id] = Context(
            run_id=LOCAL_RUN_ID,
            node_id=new_id,
            node_config=dict(old.node_config),
            state=RecordDict(),
            run_config=dict(old.run_config),
        )
        return new_id

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            dst = msg.metadata.dst_node_id
            if dst not in self._contexts:
                raise ValueError(f"unknown node id {dst}")
            msg.metadata.__dict__["_message_id"] = uuid4().hex
            wire = _roundtrip(msg)
            if self.observer is not None:
                self.observer("to-node", wire)
            if dst in self._down:
                ids.append(msg.metadata.message_id)
                if not self._down[dst]:  # the SuperLink answers for a node that missed its heartbeats
                    error = Error(code=ErrorCode.NODE_UNAVAILABLE, reason="Error: Node Unavailable")
                    reply = Message(error, reply_to=wire)
                    reply.metadata.__dict__["_message_id"] = uuid4().hex
                    self._replies[msg.metadata.message_id] = _roundtrip(reply)
                continue
            try:
                reply = self.client_app(wire, self._contexts[dst])
            except Exception as exc:  # Flower turns ClientApp exceptions into error replies
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=wire)
            reply.metadata.__dict__["_message_id"] = uuid4().hex
            reply = _roundtrip(reply)
            if self.observer is not None:
                self.observer("from-node", reply)
            self._replies[msg.metadata.message_id] = reply
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        # delivery is synchronous: every reply is here when push_messages returns (timeout is moot)
        return list(self.pull_messages(list(self.push_messages(messages))))
