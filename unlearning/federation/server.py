"""The server side of every job, written once against Flower's ``Grid`` (any runtime: in-process, simulation,
deployment). :class:`Federation` holds the job's message conventions, accounting, progress and cancellation;
its methods are the federated building blocks (FedAvg rounds, federated Fisher, federated bounded ascent, the
Halimi reference, federated evaluation) that the unlearning methods compose: it implements
:class:`unlearning.methods.blocks.FederationBlocks`, taking and returning parameters as tensors (``Params``) and
turning them into ArrayRecords only for the messages. :func:`execute_job` runs a
:class:`~unlearning.jobs.JobSpec` end to end and returns a :class:`~unlearning.jobs.JobResult`.

Failing nodes. A job must reach every node of its dataset (``JobSpec.node_names``, by partition id; or every
one of ``JobSpec.nodes``), never fewer. Discovery waits up to ``node_timeout_s`` for all of them to connect.
In an exchange, a node failure that looks transient (Flower's ``NODE_UNAVAILABLE``: the SuperNode missed its
heartbeats; a message or reply that expired; a crashed ClientApp process; no reply within ``timeout_s``) is
re-sent with backoff (1, 2, 4 ... 15 s) to whichever connected node answers for that partition (a restarted
SuperNode comes back under a new Flower node id) until ``node_timeout_s`` after the failure; then the job fails
with :class:`NodeFailure` naming the partition and the node's name in the manifest. A ClientApp that raises
fails the job at once (retrying would raise again).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from unlearning.artifacts import ArtifactNotFound
from unlearning.contract import ContractError
from unlearning.federation import protocol as P
from unlearning.jobs import (
    JobCost,
    JobResult,
    JobSpec,
    JobSpecError,
    ProgressCallback,
    ProgressEvent,
    RoundCost,
)
from unlearning.methods.blocks import Node, Params
from unlearning.tasks import Target, Task

log = logging.getLogger("unlearning.federation")


class JobCancelled(Exception):
    """The job's cancel event was set; raised at the next round boundary."""


class NodeFailure(RuntimeError):
    """A node replied with an error, or did not (re)appear before the node timeout."""


# sees every FedAvg round: (phase, round, the global model sent, the nodes, their replies in that order)
RoundObserver = Callable[[str, int, ArrayRecord, Sequence["NodeInfo"], Sequence[Message]], None]


TRANSIENT_ERRORS = frozenset(
    {
        ErrorCode.NODE_UNAVAILABLE,  # the SuperNode missed its heartbeats (died, or cut off)
        ErrorCode.MESSAGE_UNAVAILABLE,  # the instruction expired or its node was removed
        ErrorCode.REPLY_MESSAGE_UNAVAILABLE,  # the reply expired
        ErrorCode.CLIENT_APP_CRASHED,  # the ClientApp process died (not an exception it raised)
    }
)
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 15.0
DEFAULT_EXCHANGE_TIMEOUT_S = 300.0  # FlowerSettings' defaults, for a spec that names none
DEFAULT_NODE_TIMEOUT_S = 120.0


def send_and_receive(grid: Grid, messages: list[Message], timeout: float) -> list[Message]:
    """Push ``messages`` and pull their replies until all came or ``timeout`` passed: ``Grid.send_and_receive``,
    except that on the Deployment Engine (Flower's ``HttpGrid``, which waits a fixed 3 s between pulls) the
    replies are pulled every 0.05 s at first and at most every 0.25 s afterwards, or at once again when the
    SuperLink held the pull until something came or its hold ended (superlink_runtime.py). Other grids keep
    their own (the LocalGrid answers at once, the simulation's grid pulls every 0.1 s)."""
    from flwr.superlink.grid.http_grid import HttpGrid

    if not isinstance(grid, HttpGrid):
        return list(grid.send_and_receive(messages, timeout=timeout))
    import flwr.superlink.grid.http_grid as http_grid

    from unlearning.federation import trace
    from unlearning.federation.node_runtime import fast_object_pulls
    from unlearning.federation.superlink_runtime import HELD_PULL_S

    fast_object_pulls(http_grid)  # a reply's objects: retried after 0.01, 0.02 ... s, not 1, 2, 4 ... s
    if trace.enabled() and not isinstance(grid._client, trace.TracedClient):
        grid._client = trace.TracedClient(grid._runtime_client, "serverapp")  # type: ignore[assignment]
    trace.event("serverapp", "push", messages=len(messages))
    pending = set(grid.push_messages(messages))
    trace.event("serverapp", "pushed", ids=",".join(trace.short(m) for m in pending))
    replies: list[Message] = []
    deadline, wait = time.monotonic() + timeout, 0.05
    fast = http_grid.pull_objects  # type: ignore[attr-defined]
    http_grid.pull_objects = senders_guard(  # type: ignore[attr-defined]
        fast, _connected(grid, {m.metadata.dst_node_id for m in messages})
    )
    try:
        while True:
            asked = time.monotonic()
            got = list(grid.pull_messages(pending))
            replies += got
            pending -= {m.metadata.reply_to_message_id for m in got}
            for m in got:
                trace.event("serverapp", "reply", reply_to=trace.short(m.metadata.reply_to_message_id))
            if not pending or time.monotonic() >= deadline:
                return replies
            if got or time.monotonic() - asked >= HELD_PULL_S:
                continue  # a reply came (ask for the rest now) or the SuperLink already waited for one
            time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(wait * 1.5, 0.25)
    finally:
        http_grid.pull_objects = fast  # type: ignore[attr-defined]


#: a reply's objects missing this long: the pull asks whether the nodes the exchange waits on are connected
SENDER_CHECK_S = 2.0


def senders_guard(pull: Callable[..., Any], connected: Callable[[], bool]) -> Callable[..., Any]:
    """``pull`` (Flower's ``pull_objects``) that stops retrying a reply's missing objects once they have been
    missing for ``SENDER_CHECK_S`` and ``connected()`` says a node the exchange waits on is gone. A SuperNode
    killed while it uploads its reply never sends the rest, and Flower retries until the SuperLink drops the
    objects (three minutes on this machine, against the minute its heartbeats take to lapse); the reply is
    then Flower's MESSAGE_UNAVAILABLE error, which the exchange treats as a node that stopped answering (its
    instruction is re-sent if it comes back within the node timeout)."""
    from flwr.supercore.inflatable.inflatable_utils import ObjectPullError, ObjectUnavailableError

    def guarded(object_ids: list[str], pull_object_fn: Callable[[str], bytes], **kw: Any) -> Any:
        start = time.monotonic()

        def pull_one(object_id: str) -> bytes:
            try:
                return pull_object_fn(object_id)
            except ObjectUnavailableError:
                if time.monotonic() - start >= SENDER_CHECK_S and not connected():
                    raise ObjectPullError(
                        object_id, "a node this exchange waits on is no longer connected"
                    ) from None
                raise

        return pull(object_ids, pull_one, **kw)

    return guarded


def _connected(grid: Grid, node_ids: set[int]) -> Callable[[], bool]:
    """Whether every one of ``node_ids`` is connected to the SuperLink (asked at most once a second: the
    object pulls' threads share the answer)."""
    lock, last = threading.Lock(), [-math.inf, True]

    def connected() -> bool:
        with lock:
            if time.monotonic() - float(last[0]) >= 1.0:
                last[:] = [time.monotonic(), node_ids <= set(grid.get_node_ids())]
            return bool(last[1])

    return connected


def manifest_names(dataset_dir: str) -> list[str] | None:
    """The dataset's node names by partition id, when this machine has its manifest."""
    from unlearning.data import read_manifest

    if not dataset_dir:
        return None
    try:
        return [str(n.get("node", n["path"])) for n in read_manifest(Path(dataset_dir))["nodes"]]
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class NodeInfo:
    node_id: int
    partition_id: int
    n_train: int
    n_retain: int
    n_forget: int
    n_validation: int


def weighted_summary(replies: Sequence[Message]) -> dict[str, float]:
    """Per-metric mean over replies weighted by ``num-examples`` (NaNs skipped); counts and cpu are summed."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for r in replies:
        m = P.metrics_of(r)
        w = m.get("num-examples", 1.0)
        for k, v in m.items():
            if k in ("num-examples", "steps", "cpu-s", "num-forget"):
                sums[k] = sums.get(k, 0.0) + v
                weights[k] = 1.0
            elif math.isfinite(v) and w > 0:
                sums[k] = sums.get(k, 0.0) + v * w
                weights[k] = weights.get(k, 0.0) + w
    return {k: sums[k] / weights[k] for k in sums if weights.get(k)}


class Federation:
    """One job's view of the federation."""

    def __init__(
        self,
        grid: Grid,
        spec: JobSpec,
        task: Task,
        model_config: dict[str, Any],
        excluded: Sequence[Target],
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.grid, self.spec, self.task = grid, spec, task
        self.model_config_json = json.dumps(model_config, sort_keys=True)
        self.excluded_json = json.dumps([json.loads(t.to_json()) for t in excluded], sort_keys=True)
        self.progress, self.cancel = progress, cancel
        self.cost = JobCost()
        self.nodes: list[NodeInfo] = []
        self.timeout_s = spec.timeout_s if spec.timeout_s is not None else DEFAULT_EXCHANGE_TIMEOUT_S
        self.node_timeout_s = (
            spec.node_timeout_s if spec.node_timeout_s is not None else DEFAULT_NODE_TIMEOUT_S
        )
        names = spec.node_names if spec.node_names is not None else manifest_names(spec.dataset_dir)
        self.names: dict[int, str] = dict(enumerate(names or []))
        wanted = spec.nodes if spec.nodes is not None else (sorted(self.names) if names is not None else None)
        self.required: list[int] | None = sorted(set(wanted)) if wanted is not None else None
        self.departed: dict[int, str] = {}  # partitions left out by design (see leave_out), by id -> name
        self.round_observers: list[RoundObserver] = []  # called after every FedAvg round's replies

    @property
    def seed(self) -> int:
        return self.spec.seed

    def label(self, partition_id: int) -> str:
        """How errors name a node: its partition id and its name in the dataset's manifest."""
        name = self.names.get(partition_id)
        return f"partition {partition_id} ({name})" if name else f"partition {partition_id}"

    def _labels(self, partition_ids: Iterable[int]) -> str:
        return ", ".join(self.label(p) for p in sorted(partition_ids))

    def _check_cancel(self, where: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise JobCancelled(f"cancelled {where}")

    def _send(self, messages: Sequence[Message]) -> dict[int, Message]:
        """Send ``messages`` and wait up to the exchange timeout; the replies that came, by message index."""
        replies = send_and_receive(self.grid, list(messages), self.timeout_s)
        index = {m.metadata.message_id: i for i, m in enumerate(messages)}
        out: dict[int, Message] = {}
        for r in replies:
            i = index.get(r.metadata.reply_to_message_id)
            if i is not None:
                out[i] = r
        return out

    def _sleep(self, backoff: float, deadline: float, where: str) -> float:
        """Wait ``backoff`` (at most until ``deadline``), watching the cancel event; the next backoff."""
        end = min(time.monotonic() + backoff, deadline)
        while time.monotonic() < end:
            self._check_cancel(where)
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
        return min(backoff * 2, BACKOFF_MAX_S)

    # ---- messages -------------------------------------------------------------------------------------
    def config(self, target: Target | None, round_: int = 0, **extra: Any) -> ConfigRecord:
        cfg: dict[str, Any] = {
            "task": self.task.name,
            "model-config": self.model_config_json,
            "seed": self.spec.seed,
            "round": round_,
            "target": target.to_json() if target is not None else "",
            "excluded": self.excluded_json,
        }
        for k, v in extra.items():
            cfg[k] = json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
        return ConfigRecord(cfg)

    def message(
        self, node: NodeInfo, mtype: str, phase: str, round_: int, records: dict[str, Any]
    ) -> Message:
        return Message(
            RecordDict(P.bundle(records)),
            dst_node_id=node.node_id,
            message_type=mtype,
            ttl=self.timeout_s,  # a message not answered in time expires on the SuperLink (it is re-sent)
            group_id=f"{self.spec.job_id}:{phase}:{round_}",
        )

    def _account(
        self, phase: str, round_: int, total: int, messages: int, sent: int, replies: list[Message], t0: float
    ) -> None:
        received = sum(P.content_size(r) for r in replies)
        summary = weighted_summary(replies)
        steps = int(summary.get("steps", 0))
        self.cost.rounds.append(
            RoundCost(phase, round_, messages, sent, received, time.perf_counter() - t0, steps)
        )
        self.cost.optimizer_steps += steps
        self.cost.node_cpu_s += summary.get("cpu-s", 0.0)
        self.cost.bytes_sent += sent + received
        self.cost.bytes_to_nodes += sent
        self.cost.bytes_from_nodes += received
        if self.progress is not None:
            self.progress(ProgressEvent(self.spec.job_id, phase, round_, total, summary, len(replies)))

    def exchange(self, phase: str, round_: int, total: int, messages: list[Message]) -> list[Message]:
        """Send, wait for every reply (re-sending after transient node failures, see the module docstring),
        account bytes and steps, report progress; the replies in the order of ``messages``. Raises
        JobCancelled (cancel set before sending, or while waiting for a node) or NodeFailure."""
        self._check_cancel(f"before {phase} round {round_}")
        if not messages:
            return []
        t0 = time.perf_counter()
        sent = sum(P.content_size(m) for m in messages)
        count = len(messages)
        by_id = {n.node_id: n for n in self.nodes}
        owners = [by_id.get(m.metadata.dst_node_id) for m in messages]
        current = list(messages)
        replies: dict[int, Message] = {}
        why: dict[int, str] = {}
        deadline: float | None = None
        backoff = BACKOFF_FIRST_S
        while True:
            live = set(self.grid.get_node_ids())
            pending = [i for i in range(len(current)) if i not in replies]
            batch = [i for i in pending if current[i].metadata.dst_node_id in live]
            for i in pending:
                if i not in batch:
                    why.setdefault(i, "not connected")  # keep Flower's reason when it gave one
            got = self._send([current[i] for i in batch]) if batch else {}
            for k, i in enumerate(batch):
                reply = got.get(k)
                if reply is None:
                    why[i] = f"no reply within {self.timeout_s:g} s"
                elif not reply.has_error():
                    replies[i] = reply
                elif reply.error.code in TRANSIENT_ERRORS:
                    why[i] = reply.error.reason or f"error {reply.error.code}"
                else:
                    who = self._who(owners[i], current[i])
                    raise NodeFailure(f"{who} failed in {phase} round {round_}: {reply.error.reason}")
            missing = [i for i in range(len(current)) if i not in replies]
            if not missing:
                break
            if deadline is None:
                deadline = time.monotonic() + self.node_timeout_s
                log.warning(
                    "%s: %s did not answer in %s round %s; waiting up to %g s",
                    self.spec.job_id,
                    ", ".join(self._who(owners[i], current[i]) for i in missing),
                    phase,
                    round_,
                    self.node_timeout_s,
                )
            if time.monotonic() >= deadline or any(owners[i] is None for i in missing):
                detail = "; ".join(f"{self._who(owners[i], current[i])}: {why[i]}" for i in missing)
                raise NodeFailure(
                    f"{self._who_all([owners[i] for i in missing], [current[i] for i in missing])} "
                    f"stopped answering in {phase} round {round_} and did not come back within "
                    f"{self.node_timeout_s:g} s ({detail})"
                )
            backoff = self._sleep(backoff, deadline, f"while waiting for nodes in {phase} round {round_}")
            self._rejoin([o for i in missing if (o := owners[i]) is not None])
            for i in missing:
                owner = owners[i]
                assert owner is not None
                old = current[i]
                current[i] = Message(
                    old.content,
                    dst_node_id=owner.node_id,
                    message_type=old.metadata.message_type,
                    ttl=self.timeout_s,
                    group_id=old.metadata.group_id,
                )
                sent += P.content_size(current[i])
                count += 1
        ordered = [replies[i] for i in range(len(current))]
        self._account(phase, round_, total, count, sent, ordered, t0)
        return ordered

    def _who(self, owner: NodeInfo | None, message: Message) -> str:
        if owner is None:
            return f"Flower node {message.metadata.dst_node_id}"
        return self.label(owner.partition_id)

    def _who_all(self, owners: Sequence[NodeInfo | None], messages: Sequence[Message]) -> str:
        return ", ".join(self._who(o, m) for o, m in zip(owners, messages, strict=True))

    def _ask_info(
        self, node_ids: Sequence[int], target: Target | None
    ) -> tuple[list[NodeInfo], int, int, int]:
        """``query.info`` to ``node_ids``: the nodes that answered, and the messages, bytes sent and bytes
        received. Transient failures are left out (the caller asks again); a ClientApp error raises."""
        cfg = self.config(target)
        msgs = [
            self.message(NodeInfo(i, -1, 0, 0, 0, 0), P.INFO, "info", 0, {P.CONFIG: cfg}) for i in node_ids
        ]
        sent = sum(P.content_size(m) for m in msgs)
        got = self._send(msgs)
        infos: list[NodeInfo] = []
        received = 0
        for k, node_id in enumerate(node_ids):
            r = got.get(k)
            if r is None:
                continue
            received += P.content_size(r)
            if r.has_error():
                if r.error.code in TRANSIENT_ERRORS:
                    continue
                raise NodeFailure(
                    f"a node (Flower node {node_id}) failed in info, before naming its partition: {r.error.reason}"
                )
            m = P.metrics_of(r)
            infos.append(
                NodeInfo(
                    node_id=node_id,
                    partition_id=int(m["partition-id"]),
                    n_train=int(m["num-train"]),
                    n_retain=int(m["num-retain"]),
                    n_forget=int(m["num-forget"]),
                    n_validation=int(m["num-validation"]),
                )
            )
        return infos, len(msgs), sent, received

    def _rejoin(self, nodes: Sequence[NodeInfo]) -> None:
        """Point each of ``nodes`` that is no longer connected at the connected node that now answers for its
        partition (a restarted SuperNode has a new node id), if one does."""
        live = set(self.grid.get_node_ids())
        gone = {n.partition_id: n for n in nodes if n.node_id not in live}
        known = {n.node_id for n in self.nodes}
        new = sorted(live - known)
        if not gone or not new:
            return
        infos, _, _, _ = self._ask_info(new, None)
        for info in infos:
            node = gone.get(info.partition_id)
            if node is None:
                continue
            if (info.n_train, info.n_validation) != (node.n_train, node.n_validation):
                raise NodeFailure(
                    f"{self.label(node.partition_id)} came back with other data "
                    f"({info.n_train} training examples, was {node.n_train})"
                )
            log.warning(
                "%s: %s is back as Flower node %s",
                self.spec.job_id,
                self.label(node.partition_id),
                info.node_id,
            )
            node.node_id = info.node_id

    def leave_out(self, names: Iterable[str]) -> dict[int, str]:
        """Nodes that left the federation (manifest names): the job never contacts them (they are no longer
        required, and discovery drops them if they answer). Unknown names raise ValueError."""
        wanted = set(names)
        if not wanted:
            return {}
        by_name = {name: pid for pid, name in self.names.items()}
        unknown = sorted(wanted - set(by_name))
        if unknown:
            raise ValueError(
                f"departed node(s) {', '.join(unknown)} are not in the dataset "
                f"(its nodes: {', '.join(by_name) or 'unknown: no manifest'})"
            )
        self.departed = {by_name[n]: n for n in sorted(wanted)}
        base = self.required if self.required is not None else sorted(self.names)
        self.required = [p for p in base if p not in self.departed]
        if not self.required:
            raise ValueError("every node of the dataset has departed: nothing is left to run on")
        return self.departed

    # ---- building blocks -----------------------------------------------------------------------------
    def discover(self, target: Target | None) -> list[NodeInfo]:
        """Ask every connected node which partition it holds, until every required node has answered (see
        the module docstring); waits up to ``node_timeout_s``, then fails naming the missing nodes."""
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.node_timeout_s
        backoff = BACKOFF_FIRST_S
        found: dict[int, NodeInfo] = {}
        answered: set[int] = set()
        messages = sent = received = 0
        while True:
            self._check_cancel("while discovering nodes")
            new = sorted(set(self.grid.get_node_ids()) - answered)
            if new:
                infos, n, s_, r_ = self._ask_info(new, target)
                messages, sent, received = messages + n, sent + s_, received + r_
                claimed: dict[int, int] = {}
                for info in infos:
                    answered.add(info.node_id)
                    if info.partition_id in claimed:
                        raise NodeFailure(
                            f"Flower nodes {claimed[info.partition_id]} and {info.node_id} both claim "
                            f"{self.label(info.partition_id)}"
                        )
                    claimed[info.partition_id] = info.node_id
                    found[info.partition_id] = info  # a later answer replaces an earlier one (a restart)
            if self.required is None:
                if found:
                    break
            elif not set(self.required) - set(found):
                break
            if time.monotonic() >= deadline:
                if self.required is None:
                    raise NodeFailure(f"no node answered within {self.node_timeout_s:g} s")
                missing = set(self.required) - set(found)
                joined = set(self.required) & set(found)
                raise NodeFailure(
                    f"{self._labels(missing)} did not join the job within {self.node_timeout_s:g} s "
                    f"(joined: {self._labels(joined) or 'none'})"
                )
            backoff = self._sleep(backoff, deadline, "while discovering nodes")
        nodes = sorted(
            (n for n in found.values() if n.partition_id not in self.departed), key=lambda n: n.partition_id
        )
        if self.required is not None:
            wanted = set(self.required)
            nodes = [n for n in nodes if n.partition_id in wanted]
        self.nodes = nodes
        self.cost.rounds.append(RoundCost("info", 1, messages, sent, received, time.perf_counter() - t0, 0))
        self.cost.bytes_sent += sent + received
        self.cost.bytes_to_nodes += sent
        self.cost.bytes_from_nodes += received
        if self.progress is not None:
            self.progress(
                ProgressEvent(self.spec.job_id, "info", 1, 1, {"nodes": float(len(nodes))}, len(nodes))
            )
        return nodes

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
        nodes: Sequence[NodeInfo] | None = None,
        guard: Mapping[str, Any] | None = None,
        teacher: Params | None = None,
        distill: float = 0.0,
    ) -> Params:
        """``rounds`` FedAvg rounds of local training (on retained data, or ``use="all"``), optionally with
        the EWC proximal step towards ``anchor`` weighted by ``fisher``, ``guard`` settings (the holders'
        repair guard, see unlearning.local.Guard) and distillation from ``teacher`` (weight ``distill``)."""
        chosen = [
            n
            for n in (nodes if nodes is not None else self.nodes)
            if (n.n_train if use == "all" else n.n_retain)
        ]
        if not chosen:
            raise NodeFailure(f"no node has data for {phase}")
        arrays = P.to_record(params)
        ewc = _ewc_records(anchor, fisher)
        if teacher is not None and distill > 0:
            ewc[P.TEACHER] = P.to_record(teacher)
        for r in range(1, rounds + 1):
            extra: dict[str, Any] = {"local": local, "use": use, **(guard or {})}
            if anchor is not None and fisher is not None:
                extra["ewc-lambda"] = float(lam)
            if P.TEACHER in ewc:
                extra["distill-weight"] = float(distill)
            msgs = []
            for n in chosen:
                records: dict[str, Any] = {P.ARRAYS: arrays, P.CONFIG: self.config(target, r, **extra), **ewc}
                msgs.append(self.message(n, P.TRAIN, phase, r, records))
            replies = self.exchange(phase, r, rounds, msgs)
            for observe in self.round_observers:
                observe(phase, r, arrays, chosen, replies)
            arrays = aggregate(replies, P.ARRAYS)
        return P.from_record(arrays)

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
        each node's model and its number of examples, by partition id (FedEraser's calibration)."""
        by_pid = {n.partition_id: n for n in self.nodes}
        chosen = [by_pid[n.partition_id] for n in nodes]
        arrays = P.to_record(params)
        msgs = [
            self.message(
                n,
                P.TRAIN,
                phase,
                round_,
                {P.ARRAYS: arrays, P.CONFIG: self.config(target, round_, local=local, use="retain")},
            )
            for n in chosen
        ]
        replies = self.exchange(phase, round_, total, msgs)
        return {
            n.partition_id: (P.from_record(P.arrays_of(r)), P.metrics_of(r)["num-examples"])
            for n, r in zip(chosen, replies, strict=True)
        }

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
        """Federated diagonal Fisher of the ``which`` ("retain" | "forget") data, averaged by examples and
        normalised to mean 1. None when no node holds such data."""
        inc = set(include_examples)
        if which == "forget":
            chosen = [n for n in self.nodes if n.n_forget or n.node_id in inc]
        else:
            chosen = [n for n in self.nodes if n.n_retain]
        if not chosen:
            return None
        arrays = P.to_record(params)
        msgs = [
            self.message(
                n,
                P.FISHER,
                phase,
                1,
                {
                    P.ARRAYS: arrays,
                    P.CONFIG: self.config(
                        target,
                        1,
                        **{
                            "fisher-data": which,
                            "fisher-examples": examples,
                            "include-examples": n.node_id in inc,
                        },
                    ),
                },
            )
            for n in chosen
        ]
        replies = [r for r in self.exchange(phase, 1, 1, msgs) if P.metrics_of(r)["num-examples"] > 0]
        if not replies:
            return None
        from unlearning.local import normalise_fisher

        return normalise_fisher(P.from_record(aggregate(replies, P.FISHER_ARRAYS)))

    def holders(self, target: Target) -> tuple[list[NodeInfo], set[int]]:
        """Nodes that run the ascent, and those of them that add the proposal's behaviour examples."""
        holders = [n for n in self.nodes if n.n_forget]
        include: set[int] = set()
        if target.kind == "behaviour":
            if not holders and self.nodes:
                holders = [self.nodes[0]]
            include = {holders[0].node_id}
        if not holders:
            # every node answered (the job waits for all of them): another attempt cannot change this
            raise JobSpecError(
                f"no node holds data of the target {target.kind} {target.value!r}: check the proposal's "
                "target against the dataset manifest"
            )
        return holders, include

    def halimi_reference(self, params: Params, target: Target, local: dict[str, Any]) -> Params:
        """w_ref = (n * w_global - n_t * w_t) / (n - n_t): the global model with the holders' contribution
        removed, where w_t is the holders' local model after one local round (Halimi et al. 2022). Falls
        back to the global model when every node holds forget data."""
        holders, _ = self.holders(target)
        n_all = sum(n.n_train for n in self.nodes)
        n_t = sum(n.n_train for n in holders)
        if n_all - n_t <= 0:
            return params
        w_t = self.fedavg(params, 1, "reference", local, target=target, use="all", nodes=holders)
        return {k: (n_all * g - n_t * w_t[k]) / (n_all - n_t) for k, g in params.items()}

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
        """Federated bounded gradient ascent. Holders ascend locally until their stop rule holds (checked
        every step); with several holders the results are averaged (weighted by forget examples) and the
        loop repeats until every holder is already satisfied on the received model, or ``max_rounds``."""
        holders, include = self.holders(target)
        thresholds: dict[int, float] = {}
        summary: dict[str, float] = {}
        steps_total = 0.0
        rounds = 1 if len(holders) == 1 else max_rounds
        arrays = P.to_record(params)
        ball = ball_center if math.isfinite(ball_radius) else None
        extras = _ewc_records(anchor, fisher)  # sent with every instruction, with the ball's centre
        if ball is not None:
            extras = {P.BALL_CENTER: P.to_record(ball), **extras}
        for r in range(1, rounds + 1):
            msgs = []
            for n in holders:
                extra: dict[str, Any] = {"local": local, "include-examples": n.node_id in include, **stop}
                if n.node_id in thresholds:
                    extra["stop-loss-value"] = thresholds[n.node_id]
                if ball is not None:
                    extra["ball-radius"] = float(ball_radius)
                if anchor is not None and fisher is not None:
                    extra["ewc-lambda"] = float(lam)
                records: dict[str, Any] = {
                    P.ARRAYS: arrays,
                    P.CONFIG: self.config(target, r, **extra),
                    **extras,
                }
                msgs.append(self.message(n, P.UNLEARN, "ascent", r, records))
            replies = self.exchange("ascent", r, rounds, msgs)
            for n, rep in zip(holders, replies, strict=True):
                t = P.metrics_of(rep)["threshold"]
                if math.isfinite(t):
                    thresholds.setdefault(n.node_id, t)
            summary = weighted_summary(replies)
            steps_total += summary.get("steps", 0.0)
            arrays = P.arrays_of(replies[0]) if len(replies) == 1 else aggregate(replies, P.ARRAYS)
            all_done = all(P.metrics_of(rep)["stopped"] > 0 for rep in replies)
            no_steps = all(P.metrics_of(rep)["steps"] == 0 for rep in replies)
            if all_done and (no_steps or len(replies) == 1):
                break
        summary["ascent-steps"] = steps_total
        summary["ascent-rounds"] = float(r)
        summary["holders"] = float(len(holders))
        return P.from_record(arrays), summary

    def evaluate(self, params: Params, target: Target | None, phase: str = "evaluate") -> dict[str, Any]:
        """Every node evaluates on its local validation data: per node, the weighted mean, the worst node."""
        arrays = P.to_record(params)
        msgs = [
            self.message(n, P.EVALUATE, phase, 1, {P.ARRAYS: arrays, P.CONFIG: self.config(target, 0)})
            for n in self.nodes
        ]
        replies = self.exchange(phase, 1, 1, msgs)
        per_node = {str(n.partition_id): P.metrics_of(r) for n, r in zip(self.nodes, replies, strict=True)}
        vals = list(per_node.values())
        worst = {
            "val-loss": max(v["val-loss"] for v in vals),
            "val-accuracy": min(v["val-accuracy"] for v in vals),
            "node-by-loss": float(max(per_node, key=lambda k: per_node[k]["val-loss"])),
        }
        return {"nodes": per_node, "mean": weighted_summary(replies), "worst": worst}

    def utility(
        self, models: Mapping[str, Params], round_: int = 1, total: int = 1, phase: str = "contribution"
    ) -> tuple[dict[str, dict[str, float]], float]:
        """Every node evaluates each of ``models`` on its own validation data (one ``query.utility`` message per
        node carrying them all); per model the validation loss and accuracy averaged over the nodes by their
        examples, and the CPU seconds the nodes reported."""
        arrays = {P.MODEL_PREFIX + k: P.to_record(v) for k, v in models.items()}
        msgs = [
            self.message(n, P.UTILITY, phase, round_, {P.CONFIG: self.config(None, round_), **arrays})
            for n in self.nodes
        ]
        metrics = [P.metrics_of(r) for r in self.exchange(phase, round_, total, msgs)]
        out: dict[str, dict[str, float]] = {}
        for name in models:
            sums, weight = {"loss": 0.0, "accuracy": 0.0}, 0.0
            for m in metrics:
                w = m.get("num-examples", 0.0)
                if w > 0 and all(math.isfinite(m.get(f"{k}:{name}", math.nan)) for k in sums):
                    weight += w
                    for k in sums:
                        sums[k] += w * m[f"{k}:{name}"]
            if weight <= 0:
                raise NodeFailure("no node has validation data to measure contributions on")
            out[name] = {k: v / weight for k, v in sums.items()}
        return out, sum(m.get("cpu-s", 0.0) for m in metrics)

    def node_query(
        self,
        mtype: str,
        phase: str,
        target: Target | None,
        per_node: Mapping[int, Mapping[str, Any]],
        models: Mapping[str, Params] | None = None,
    ) -> dict[int, Message]:
        """Verification's exchanges: one message of type ``mtype`` to each node whose partition id is a key of
        ``per_node`` (its extra settings), carrying ``models`` as ``model:<name>`` ArrayRecords (one record
        per model, shared by the messages); the replies by partition id."""
        by_pid = {n.partition_id: n for n in self.nodes}
        missing = sorted(set(per_node) - set(by_pid))
        if missing:
            raise NodeFailure(
                f"node(s) {', '.join(f'node-{p}' for p in missing)} did not join the verification"
            )
        arrays = {P.MODEL_PREFIX + k: P.to_record(v) for k, v in (models or {}).items()}
        msgs = [
            self.message(
                by_pid[pid], mtype, phase, 1, {P.CONFIG: self.config(target, 0, **dict(extra)), **arrays}
            )
            for pid, extra in per_node.items()
        ]
        replies = self.exchange(phase, 1, 1, msgs)
        return {pid: r for pid, r in zip(per_node, replies, strict=True)}


def _ewc_records(anchor: Params | None, fisher: Params | None) -> dict[str, ArrayRecord]:
    """The EWC records of a message (``anchor`` and ``fisher``), or none unless both are given."""
    if anchor is None or fisher is None:
        return {}
    return {P.ANCHOR: P.to_record(anchor), P.FISHER_ARRAYS: P.to_record(fisher)}


def aggregate(replies: Sequence[Message], key: str) -> ArrayRecord:
    """FedAvg of the ArrayRecord ``key`` of the replies, weighted by num-examples (protocol.weighted_mean,
    computed as Flower's ``aggregate_arrayrecords``), packed for the next message."""
    states = [
        (P.from_record(P.arrays_of(r, key)), P.metrics_of(r)["num-examples"])
        for r in replies
        if P.metrics_of(r)["num-examples"] > 0
    ]
    if not states:
        raise NodeFailure("no reply carried any examples to aggregate")
    return P.to_record(P.weighted_mean(states))


def manifest_sources(dataset_dir: str) -> dict[int, list[dict[str, Any]]] | None:
    """The dataset's data sources by partition id (federation name, sha256, records), when this machine has
    its manifest."""
    from unlearning.data import read_manifest

    if not dataset_dir:
        return None
    try:
        nodes = read_manifest(Path(dataset_dir))["nodes"]
        return {
            pid: [
                {
                    "name": str(src["name"]),
                    "sha256": str(src.get("sha256", "")),
                    "records": src.get("records"),
                }
                for src in n.get("sources", [])
            ]
            for pid, n in enumerate(nodes)
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None


def dataset_sources(spec: JobSpec) -> dict[int, list[dict[str, Any]]] | None:
    """The job's dataset's data sources by partition id: the spec's (run_job fills them in from the manifest,
    so a ServerApp on a machine without it has them), else the manifest's when this machine has it."""
    if spec.dataset_sources is not None:
        return {pid: [dict(src) for src in srcs] for pid, srcs in enumerate(spec.dataset_sources)}
    return manifest_sources(spec.dataset_dir)


def trained_sources(
    spec: JobSpec, nodes: Sequence[NodeInfo], excluded: Sequence[Target]
) -> list[dict[str, Any]] | None:
    """The data sources a training job trained on: those of the nodes that took part, less any the lineage
    unlearned as a whole (a data-source target); each with its partition. None without the manifest."""
    by_pid = dataset_sources(spec)
    if by_pid is None:
        return None
    gone = {t.value for t in excluded if t.kind == "data_source"}
    return [
        {**src, "partition": n.partition_id}
        for n in nodes
        for src in by_pid.get(n.partition_id, [])
        if src["name"] not in gone
    ]


def track_contribution(fed: Federation, spec: JobSpec, task: Task) -> Any:
    """A :class:`unlearning.contribution.ContributionTracker` watching ``fed``'s ``train`` rounds (None when
    the spec's contribution method is ``none``)."""
    from unlearning.contribution import ContributionTracker

    if not any(n.n_validation for n in fed.nodes):  # nothing to measure a utility on: train without it
        log.warning("%s: no node has validation data; contributions are not measured", spec.job_id)
        return None
    current = {"round": 0}
    by_pid = dataset_sources(spec) or {}
    tracker = ContributionTracker.create(
        spec.contribution,
        is_classifier=bool(task.is_classifier),
        evaluate=lambda models: fed.utility(models, current["round"], spec.rounds),
        names=fed.names,
        sources={pid: [str(s["name"]) for s in srcs] for pid, srcs in by_pid.items()},
    )
    if tracker is None:
        return None

    def observe(
        phase: str, round_: int, before: ArrayRecord, nodes: Sequence[NodeInfo], replies: Sequence[Message]
    ) -> None:
        if phase != "train":
            return
        current["round"] = round_
        updates = {
            n.partition_id: (P.from_record(P.arrays_of(r)), P.metrics_of(r)["num-examples"])
            for n, r in zip(nodes, replies, strict=True)
        }
        after = P.from_record(aggregate(replies, P.ARRAYS))
        tracker.observe(round_, P.from_record(before), updates, after)

    fed.round_observers.append(observe)
    return tracker


def _contribution_bytes(fed: Federation) -> dict[str, int]:
    rounds = [c for c in fed.cost.rounds if c.phase == "contribution"]
    return {
        "messages": sum(c.messages for c in rounds),
        "bytes_to_nodes": sum(c.bytes_to_nodes for c in rounds),
        "bytes_from_nodes": sum(c.bytes_from_nodes for c in rounds),
    }


def execute_job(
    grid: Grid,
    spec: JobSpec,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> JobResult:
    """Run ``spec`` on ``grid``; never raises for job failures (see JobResult.status)."""
    from unlearning.artifacts import ArtifactStore
    from unlearning.federation.protocol import load_record
    from unlearning.footprint import EnergyMeter
    from unlearning.local import parameters_dict
    from unlearning.methods import MethodContext, get_method
    from unlearning.methods.base import with_defaults
    from unlearning.tasks import make_task

    t0, c0 = time.perf_counter(), time.process_time()
    meter = EnergyMeter()
    recorder = None
    result = JobResult(
        job_id=spec.job_id,
        kind=spec.kind,
        status="failed",
        parent_version=spec.base_version,
        method=spec.method if spec.kind == "unlearn" else None,
        target=json.loads(spec.target.to_json()) if spec.target is not None else None,
    )
    fed: Federation | None = None
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(spec.num_threads)
        store = ArtifactStore(spec.artifact_root)
        base = store.get(spec.base_version)
        task = make_task(base.task, base.model_config)
        model = base.load_into(task.build_model(spec.seed))
        lineage: dict[str, Any] = dict(base.manifest.get("training", {}))
        excluded = [Target.from_dict(t) for t in lineage.get("excluded", [])]
        fed = Federation(grid, spec, task, base.model_config, excluded, progress, cancel)
        params = parameters_dict(model)
        method = None
        if spec.kind == "unlearn":
            assert spec.target is not None  # validated by JobSpec.validate
            defaults = task.method_defaults.get(spec.target.kind, {})
            method = get_method(spec.method, with_defaults(spec.method, defaults, spec.method_config))
        fed.leave_out(departed_nodes(spec, method))
        if spec.kind == "train":
            fed.discover(None)
            tracker = track_contribution(fed, spec, task)
            if spec.keep_updates_every:
                from unlearning.federation.history import UpdateRecorder

                recorder = UpdateRecorder(
                    spec.artifact_root, spec.job_id, spec.keep_updates_every, int(lineage.get("rounds", 0))
                )
                fed.round_observers.append(recorder)
            params = fed.fedavg(params, spec.rounds, "train", spec.local)
            if tracker is not None:
                result.contribution = tracker.finish()
                result.contribution["cost"].update(_contribution_bytes(fed))
            training = {
                **lineage,
                "kind": "train",
                "rounds": int(lineage.get("rounds", 0)) + spec.rounds,
                "local": spec.local,
                "init": lineage.get("init") or base.version,
                "excluded": lineage.get("excluded", []),
                "sources": trained_sources(spec, fed.nodes, excluded),
                # the update history covers the lineage's rounds only while every training job keeps one
                "history": [*lineage.get("history", []), recorder.finish()] if recorder else [],
            }
            if recorder is not None:
                result.metrics["history"] = training["history"][-1]
            if spec.evaluate:
                result.metrics["after"] = fed.evaluate(params, None)
        else:
            assert spec.target is not None and method is not None
            fed.discover(spec.target)
            if spec.evaluate:
                result.metrics["before"] = fed.evaluate(params, spec.target, "evaluate-before")

            def load_init() -> Params:
                init = lineage.get("init")
                if not init:
                    raise ValueError("the base version's lineage has no init version to retrain from")
                return parameters_dict(store.get(str(init)).load_into(task.build_model(spec.seed)))

            ctx = MethodContext(
                fed=fed,
                target=spec.target,
                original=params,
                lineage=lineage,
                load_init=load_init,
                departed=dict(fed.departed),
                artifact_root=spec.artifact_root,
            )
            params, details = method.run(ctx)
            if fed.departed:  # said in the result (and so in the audit log and on the job's page)
                details["departed"] = [fed.label(p) for p in sorted(fed.departed)]
                details["departed-nodes"] = sorted(fed.departed.values())  # for the retrained reference
                details["departed-excluded-by-design"] = True
            result.metrics["method"] = details
            training = {
                **lineage,
                "excluded": [*lineage.get("excluded", []), json.loads(spec.target.to_json())],
                "unlearning": {"method": spec.method, "config": spec.method_config, "target": result.target},
            }
            if fed.departed:
                training["departed"] = sorted({*lineage.get("departed", []), *fed.departed.values()})
            if spec.evaluate:
                result.metrics["after"] = fed.evaluate(params, spec.target)
        load_record(model, params)
        tokenizer = getattr(task, "tokenizer", None)
        version = store.put(
            model=model,
            task=task.name,
            model_config=base.stored_model_config,
            seed=spec.seed,
            parent=base.version,
            job_id=spec.job_id,
            tokenizer=tokenizer,
            training=training,
            metrics={
                "after": result.metrics.get("after", {}).get("mean", {}),
                **({"contribution": result.contribution} if result.contribution else {}),
            },
        )
        result.model_version, result.content_hash = version.version, version.content_hash
        result.status = "succeeded"
    except JobCancelled as exc:
        result.status, result.error = "cancelled", str(exc)
    except Exception as exc:
        log.exception("job %s failed", spec.job_id)
        result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        result.retriable = not isinstance(exc, (JobSpecError, ContractError, ArtifactNotFound))
    finally:
        torch.set_num_threads(threads)
    if recorder is not None and result.status != "succeeded":
        recorder.discard()
    if fed is not None:
        result.cost = fed.cost
    result.cost.wall_s = time.perf_counter() - t0
    result.cost.cpu_s = time.process_time() - c0
    # in process the nodes' work is in this process's CPU seconds; elsewhere the nodes report theirs
    busy = result.cost.cpu_s + (result.cost.node_cpu_s if spec.runtime != "in-process" else 0.0)
    energy, how, basis = meter.stop(busy)
    result.cost.energy_j, result.cost.energy_method, result.cost.energy_basis = energy, how, basis
    return result


def departed_nodes(spec: JobSpec, method: Any | None) -> list[str]:
    """The nodes (manifest names) a job leaves out: ``spec.departed``, and for a method that works without the
    target's owner (``without_owner``, FedEraser) the node that holds the data source (from the manifest
    when this machine has it, else the source name's ``<node>/`` prefix)."""
    names = set(spec.departed or [])
    if method is not None and getattr(method, "without_owner", False):
        target = spec.target
        if target is None or target.kind != "data_source":
            if not names:
                raise ValueError(
                    f"method {spec.method} removes a departed node's data: it needs a data_source target "
                    "(its node is left out) or departed nodes"
                )
        else:
            owner = source_owner(spec.dataset_dir, target.value)
            if owner is None:
                raise ValueError(f"no node of the dataset holds the data source {target.value!r}")
            names.add(owner)
    return sorted(names)


def source_owner(dataset_dir: str, source: str) -> str | None:
    """The node (manifest name) that holds ``source``."""
    from unlearning.data import read_manifest

    try:
        nodes = read_manifest(Path(dataset_dir))["nodes"]
    except (OSError, ValueError, KeyError):
        return source.split("/", 1)[0] if "/" in source else None
    for n in nodes:
        if any(s.get("name") == source for s in n.get("sources", [])):
            return str(n.get("node", n["path"]))
    return None
