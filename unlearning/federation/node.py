"""Node-side work: find this node's data, split it into retained / forget / validation tensors, and call
the pure torch functions of :mod:`unlearning.local`. The ClientApp (apps.py) only translates messages.

Where a node's data is (first that is set):
1. ``node_config["data-path"]``: the node's own directory (deployment: ``--node-config data-path=...``);
2. ``node_config["dataset-dir"]`` or the message's ``dataset-dir`` hint, plus ``node_config["partition-id"]``
   (simulation sets partition ids; the in-process grid sets ``data-path``): the manifest's node path, under
   ``node_config["node-data-dir"]`` where the nodes' folders live apart from the manifest (a simulation's run
   config ``node-data-dir``), else beside it.
A bring-your-own tokenizer directory can be overridden per node with ``node_config["tokenizer-dir"]``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from unlearning import local
from unlearning.data import load_node_data, read_manifest
from unlearning.metrics import exposure_z
from unlearning.tasks import Batch, Record, Target, Task, make_task
from unlearning.tasks.base import batch_len, concat
from unlearning.tasks.lm import CausalLMTask

UserConfig = Mapping[str, Any]


@dataclass
class NodeTensors:
    partition_id: int
    retain: Batch  # training data minus the target and minus what the lineage already unlearned
    full: Batch  # training data minus what the lineage already unlearned (the target included)
    forget: Batch  # local examples of the target (behaviour: completion tokens only)
    validation: Batch
    n_train: int


_lock = threading.Lock()
T = TypeVar("T")


def _cached(cache: OrderedDict[Any, T], key: Any, make: Callable[[], T], limit: int) -> T:
    """``cache[key]``, made by ``make()`` (outside the lock: it reads files or builds models) on a miss; the
    least recently used entries beyond ``limit`` are dropped."""
    with _lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = make()
    with _lock:
        cache[key] = value
        while len(cache) > limit:
            cache.popitem(last=False)
    return value


_cache: OrderedDict[tuple[str, ...], NodeTensors] = OrderedDict()


def data_path(node_config: UserConfig, hint: str | None) -> tuple[Path, int]:
    pid = int(node_config.get("partition-id", -1))
    if "data-path" in node_config:
        return Path(str(node_config["data-path"])), pid
    root = node_config.get("dataset-dir", hint)
    if root is None or pid < 0:
        raise ValueError("this node has no data: set node_config data-path, or dataset-dir and partition-id")
    nodes = read_manifest(Path(str(root)))["nodes"]
    if not 0 <= pid < len(nodes):
        raise ValueError(f"partition-id {pid} out of range: the dataset has {len(nodes)} nodes")
    return Path(str(node_config.get("node-data-dir") or root)) / nodes[pid]["path"], pid


def task_from_config(cfg: Mapping[str, Any], node_config: UserConfig) -> Task:
    model_config = json.loads(str(cfg["model-config"]))
    if "tokenizer-dir" in node_config and model_config.get("tokenizer") not in (None, "byt5"):
        model_config["tokenizer"] = str(node_config["tokenizer-dir"])
    return make_task(str(cfg["task"]), model_config)


def parse_targets(cfg: Mapping[str, Any]) -> tuple[Target | None, list[Target]]:
    target = Target.from_json(str(cfg["target"])) if cfg.get("target") else None
    excluded = [Target.from_dict(t) for t in json.loads(str(cfg.get("excluded", "[]")))]
    return target, excluded


def node_tensors(cfg: Mapping[str, Any], node_config: UserConfig, task: Task) -> NodeTensors:
    path, pid = data_path(node_config, str(cfg["dataset-dir"]) if cfg.get("dataset-dir") else None)
    key = (
        str(path),
        task.name,
        str(cfg["model-config"]),
        str(cfg.get("target", "")),
        str(cfg.get("excluded", "")),
    )

    def make() -> NodeTensors:
        target, excluded = parse_targets(cfg)
        data = load_node_data(path)
        kept: list[Record] = [r for r in data.train if not any(t.matches(r) for t in excluded)]
        forget = [r for r in kept if target is not None and target.matches(r)]
        retain = [r for r in kept if not (target is not None and target.matches(r))]
        return NodeTensors(
            partition_id=pid,
            retain=task.to_batch(retain),
            full=task.to_batch(kept),
            forget=task.to_batch(forget, target, forget=True),
            validation=task.to_batch(data.validation),
            n_train=len(kept),
        )

    return _cached(_cache, key, make, 8)


def _generator(cfg: Mapping[str, Any], pid: int, salt: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(
        int(cfg.get("seed", 0)) * 1_000_003 + max(pid, 0) * 10_007 + int(cfg.get("round", 0)) * 101 + salt
    )
    return g


def _local_config(task: Task, cfg: Mapping[str, Any], defaults: Mapping[str, Any]) -> local.LocalConfig:
    overrides = json.loads(str(cfg.get("local", "{}")))
    return local.LocalConfig.from_dict({**defaults, **overrides})


def _prox(cfg: Mapping[str, Any], arrays: Mapping[str, Mapping[str, Tensor]]) -> local.Proximal | None:
    if "fisher" not in arrays or "anchor" not in arrays:
        return None
    return local.Proximal(
        anchor=dict(arrays["anchor"]), fisher=dict(arrays["fisher"]), lam=float(cfg["ewc-lambda"])
    )


def info(cfg: Mapping[str, Any], node_config: UserConfig) -> dict[str, float]:
    task = task_from_config(cfg, node_config)
    t = node_tensors(cfg, node_config, task)
    return {
        "partition-id": float(t.partition_id),
        "num-train": float(t.n_train),
        "num-retain": float(batch_len(t.retain)),
        "num-forget": float(batch_len(t.forget)),
        "num-validation": float(batch_len(t.validation)),
        "num-examples": float(t.n_train),
    }


def train(
    cfg: Mapping[str, Any],
    node_config: UserConfig,
    model_arrays: Mapping[str, Tensor],
    extra: Mapping[str, Mapping[str, Tensor]],
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """FedAvg local training on the retained data (``use=all``: the full data, for the Halimi reference)."""
    start = time.thread_time()
    task = task_from_config(cfg, node_config)
    t = node_tensors(cfg, node_config, task)
    data = t.full if cfg.get("use") == "all" else t.retain
    model = _model(task, cfg, model_arrays)
    guard = _guard(task, t, cfg, node_config, extra) if float(cfg.get("guard-weight", 0.0)) > 0 else None
    stats = local.train(
        model,
        data,
        task,
        _local_config(task, cfg, task.train_defaults),
        generator=_generator(cfg, t.partition_id, 1),
        prox=_prox(cfg, extra),
        guard=guard,
        teacher=_model(task, cfg, extra["teacher"]) if "teacher" in extra else None,
        distill=float(cfg.get("distill-weight", 0.0)),
    )
    metrics = {"num-examples": float(batch_len(data)), "train-loss": stats.loss, "steps": float(stats.steps)}
    if guard is not None:
        metrics["guard-cap"] = guard.cap
    metrics["cpu-s"] = time.thread_time() - start
    return local.parameters_dict(model), metrics


def _guard(
    task: Task,
    t: NodeTensors,
    cfg: Mapping[str, Any],
    node_config: UserConfig,
    extra: Mapping[str, Mapping[str, Tensor]],
) -> local.Guard | None:
    """The repair guard of a node that holds forget data (data source or category): its forget examples
    against its unseen validation examples of the same kind (records' ``kind``; else all of them), and its
    secret spans at chance level (see :class:`local.Guard`); with the repair's anchor (the unlearned model)
    each example is also held at its loss there."""
    target, _ = parse_targets(cfg)
    if target is None or target.kind == "behaviour" or batch_len(t.forget) == 0:
        return None
    records, validation = node_records(cfg, node_config)
    records, _, secrets = _without_secrets(task, records, str(cfg.get("secret-pattern", "")))
    kinds = {r.get("kind") for r in records}
    same = [v for v in validation if v.get("kind") in kinds] or validation
    if not records or not same:
        return None
    guard = local.Guard(
        forget=dedup(task.to_batch(records, target, forget=True)),
        reference=task.to_batch(same),
        weight=float(cfg["guard-weight"]),
        factor=float(cfg.get("guard-factor", 1.0)),
        secrets=secrets,
    )
    if "anchor" in extra and cfg.get("guard-floor", "anchor") == "anchor":
        unlearned = _model(task, cfg, extra["anchor"])
        with torch.no_grad():
            guard.floor = local.per_example(unlearned, guard.forget, task)[0]
            if secrets is not None:
                guard.secret_floor = local.per_example(unlearned, secrets, task)[0]
    return guard


_templates: OrderedDict[tuple[str, str, int], nn.Module] = OrderedDict()


def _model(task: Task, cfg: Mapping[str, Any], arrays: Mapping[str, Tensor]) -> nn.Module:
    """A model of the job's architecture holding ``arrays``: a copy of a cached, freshly built template
    (building a transformers model from its config costs about as much as an LM training step, and every
    message needs one; the arrays overwrite every parameter, see protocol.load_record)."""
    from copy import deepcopy

    from unlearning.federation.protocol import load_record

    seed = int(cfg.get("seed", 0))
    key = (task.name, str(cfg["model-config"]), seed)
    template = _cached(_templates, key, lambda: task.build_model(seed), 4)
    return load_record(deepcopy(template), arrays)  # the template itself is never changed


def _forget_batch(task: Task, t: NodeTensors, target: Target | None, include_examples: bool) -> Batch:
    parts = [t.forget]
    if include_examples and target is not None:
        b = task.behaviour_batch(target)
        if b is not None:
            parts.append(b)
    parts = [p for p in parts if batch_len(p) > 0]
    return concat(parts) if parts else t.forget


def dedup(batch: Batch) -> Batch:
    """Keep the first of identical examples (repeated lines otherwise dominate the ascent's batches)."""
    seen: set[bytes] = set()
    keep = []
    for i in range(batch_len(batch)):
        key = b"".join(v[i].numpy().tobytes() for v in batch.values())
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return {k: v[torch.tensor(keep, dtype=torch.long)] for k, v in batch.items()}


def _exposure_rule(task: Task, target: Target, z_min: float, seed: int) -> local.StopRule | None:
    secrets = [ex for ex in target.examples if ex["completion"].strip(".").isdigit()]
    if not secrets:
        return None

    order = list(secrets)  # the secret that failed last is checked first: a failing check costs one secret

    def criterion(model: nn.Module) -> bool:
        for i, ex in enumerate(order):
            z = exposure_z(
                model, task, ex.get("prompt", ""), ex["completion"].rstrip("."), candidates=100, seed=seed
            )
            if z < z_min:
                order.insert(0, order.pop(i))
                return False
        return True

    return local.StopRule(criterion=criterion)


def node_records(cfg: Mapping[str, Any], node_config: UserConfig) -> tuple[list[Record], list[Record]]:
    """This node's forget records (the target's, minus what the lineage already unlearned) and its
    validation records: what the secret-span phase and the same-kind stop reference read."""
    path, _ = data_path(node_config, str(cfg["dataset-dir"]) if cfg.get("dataset-dir") else None)
    target, excluded = parse_targets(cfg)
    data = load_node_data(path)
    forget = [
        r
        for r in data.train
        if target is not None and target.matches(r) and not any(t.matches(r) for t in excluded)
    ]
    return forget, list(data.validation)


def secret_spans(records: list[Record], pattern: str) -> list[dict[str, str]]:
    """Prompt/completion pairs for the secret-like spans of ``records`` (the first match of ``pattern`` in
    each line, e.g. runs of 5+ digits: access codes, phone and account numbers), each distinct pair once."""
    found: dict[tuple[str, str], None] = {}
    rx = re.compile(pattern)
    for r in records:
        text = str(r.get("text", ""))
        m = rx.search(text)
        if m and m.group():
            found[(text[: m.start()], m.group())] = None
    return [{"prompt": p, "completion": c} for p, c in found]


def _without_secrets(
    task: Task, records: list[Record], pattern: str, keep_prefix: bool = False
) -> tuple[list[Record], list[dict[str, str]], Batch | None]:
    """Split a language model's forget records by ``pattern``: the records without a secret-like span of
    digits (with ``keep_prefix``, a secret's line stays as the text before its secret), the spans, and a
    batch of the spans' lines whose loss counts on the span tokens only (None: no spans). Spans that are not
    all digits stay in their lines (exposure needs candidates of their format)."""
    spans = secret_spans(records, pattern) if pattern and isinstance(task, CausalLMTask) else []
    spans = [e for e in spans if e["completion"].isdigit()]  # exposure ranks against random digit strings
    if not spans:
        return records, [], None
    secret = {e["prompt"] + e["completion"] for e in spans}
    rx = re.compile(pattern)
    rest = []
    for r in records:
        m = rx.search(text := str(r.get("text", "")))
        if not (m and text[: m.end()] in secret):
            rest.append(r)
        elif keep_prefix and text[: m.start()].strip():
            rest.append({**r, "text": text[: m.start()]})
    batch = task.to_batch(
        [{"text": e["prompt"] + e["completion"]} for e in spans],
        Target(kind="behaviour", examples=spans),
        forget=True,
    )
    return rest, spans, batch


def _secret_phase(
    task: Task,
    model: nn.Module,
    spans: list[dict[str, str]],
    batch: Batch,
    lcfg: local.LocalConfig,
    cfg: Mapping[str, Any],
    generator: torch.Generator,
    ball: local.L2Ball | None,
    prox: local.Proximal | None,
) -> local.AscentStats:
    """Ascent on the secret tokens only, until every secret's exposure z-score against random candidates of
    its format is >= ``secret-exposure-z`` (default -1): whole-line ascent that restores a line's loss can leave
    a repeated secret at rank 1, so secrets get their own phase (see docs/unlearning.md)."""
    secrets = Target(kind="behaviour", examples=spans)
    rule = _exposure_rule(task, secrets, float(cfg.get("secret-exposure-z", -1.0)), int(cfg.get("seed", 0)))
    if rule is None:
        return local.AscentStats(reason="empty")
    every = int(cfg.get("secret-check-every", 5))
    scfg = dataclasses.replace(lcfg, check_every=max(1, every))
    return local.gradient_ascent(model, batch, task, scfg, rule, generator=generator, ball=ball, prox=prox)


def unlearn(
    cfg: Mapping[str, Any],
    node_config: UserConfig,
    model_arrays: Mapping[str, Tensor],
    extra: Mapping[str, Mapping[str, Tensor]],
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Bounded gradient ascent on this node's forget data."""
    start = time.thread_time()
    task = task_from_config(cfg, node_config)
    t = node_tensors(cfg, node_config, task)
    target, _ = parse_targets(cfg)
    forget = _forget_batch(task, t, target, bool(cfg.get("include-examples", False)))
    if cfg.get("dedup", False):
        forget = dedup(forget)
    model = _model(task, cfg, model_arrays)
    lcfg = _local_config(task, cfg, task.ascent_defaults)
    reference, pattern = t.validation, str(cfg.get("secret-pattern", ""))
    spans: list[dict[str, str]] = []
    secret_batch: Batch | None = None
    if (
        target is not None
        and target.kind == "data_source"
        and (cfg.get("stop-reference") == "same-kind" or (pattern and isinstance(task, CausalLMTask)))
    ):
        records, validation = node_records(cfg, node_config)
        keep_prefix = cfg.get("secret-lines") == "prefix"
        records, spans, secret_batch = _without_secrets(task, records, pattern, keep_prefix)
        if spans:  # the secrets get their own phase; the rest of the source is ascended on as usual
            forget = task.to_batch(records, target, forget=True)
            if cfg.get("dedup", False):
                forget = dedup(forget)
        kinds = {r.get("kind") for r in records}
        same = [v for v in validation if v.get("kind") in kinds]
        if cfg.get("stop-reference") == "same-kind" and same:  # unseen examples of the same kind
            reference = task.to_batch(same)
    threshold = float(cfg.get("stop-loss-value", float("nan")))
    if (
        threshold != threshold and cfg.get("stop-loss") == "validation"
    ):  # NaN: compute it from the received model
        threshold = local.evaluate(model, reference, task)["loss"] * float(cfg.get("stop-loss-factor", 1.0))
    stop = local.StopRule(
        loss_at_least=threshold if threshold == threshold else None,
        accuracy_at_most=float(cfg["stop-accuracy"]) if float(cfg.get("stop-accuracy", -1.0)) >= 0 else None,
        auc_at_most=float(cfg["stop-auc"]) if "stop-auc" in cfg else None,
        reference=reference,
        cap_to_reference=cfg.get("forget-cap") == "reference",
    )
    if target is not None and target.kind == "behaviour" and float(cfg.get("stop-exposure-z", 1e9)) < 1e9:
        rule = _exposure_rule(task, target, float(cfg["stop-exposure-z"]), int(cfg.get("seed", 0)))
        if rule is not None:
            stop = local.StopRule(criterion=rule.criterion)
    ball = None
    if "ball-center" in extra:
        ball = local.L2Ball(center=dict(extra["ball-center"]), radius=float(cfg["ball-radius"]))
    generator, prox = _generator(cfg, t.partition_id, 2), _prox(cfg, extra)
    dampened = 0.0
    if float(cfg.get("dampen-alpha", 0.0)) > 0 and prox is not None and batch_len(forget):
        # after the stop threshold (taken at the received model): the holder's own forget Fisher here
        forget_fisher = _local_fisher(cfg, model, forget, task, t.partition_id, stream=4)
        dampened = local.dampen(
            model,
            local.normalise_fisher(forget_fisher),
            prox.fisher,
            alpha=float(cfg["dampen-alpha"]),
            lam=float(cfg.get("dampen-lambda", 1.0)),
            reset=local.parameters_dict(task.build_model(int(cfg.get("seed", 0)) + local.FRESH_SEED))
            if cfg.get("dampen-mode") == "reset"
            else None,
        )
        if ball is not None:  # the ascent's bound holds for the dampened model too, steps or none
            ball.project(model)
    secret = local.AscentStats(reason="empty")
    if spans and secret_batch is not None:
        secret = _secret_phase(task, model, spans, secret_batch, lcfg, cfg, generator, ball, prox)
    stats = local.gradient_ascent(
        model,
        forget,
        task,
        lcfg,
        stop,
        generator=generator,
        ball=ball,
        prox=prox,
        retain=t.retain,
        retain_weight=float(cfg.get("retain-weight", 0.0)),
    )
    metrics = {
        "num-examples": float(batch_len(forget)),
        "steps": float(stats.steps + secret.steps),
        "forget-loss": stats.forget_loss,
        "forget-accuracy": stats.forget_accuracy,
        "stopped": 1.0 if stats.reason in ("criterion", "empty") else 0.0,  # empty: only secret lines
        "diverged": 1.0 if stats.reason == "diverged" else 0.0,
        "threshold": threshold,
        "ball-hits": float(stats.ball_hits),
        "secret-spans": float(len(spans)),
        "secret-steps": float(secret.steps),
        "secret-stopped": 1.0 if secret.reason == "criterion" else 0.0,
        "dampened": dampened,
        "cpu-s": time.thread_time() - start,
    }
    return local.parameters_dict(model), metrics


def _local_fisher(
    cfg: Mapping[str, Any], model: nn.Module, data: Batch, task: Task, partition_id: int, *, stream: int
) -> dict[str, Tensor]:
    """The diagonal Fisher of ``data`` here, over up to the message's ``fisher-examples``."""
    return local.diagonal_fisher(
        model,
        data,
        task,
        max_examples=int(cfg.get("fisher-examples", 64)),
        generator=_generator(cfg, partition_id, stream),
    )


def fisher(
    cfg: Mapping[str, Any], node_config: UserConfig, model_arrays: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Diagonal Fisher on the retained (``fisher-data=retain``) or forget (``forget``) local data."""
    start = time.thread_time()
    task = task_from_config(cfg, node_config)
    t = node_tensors(cfg, node_config, task)
    target, _ = parse_targets(cfg)
    which = str(cfg.get("fisher-data", "retain"))
    data = (
        _forget_batch(task, t, target, bool(cfg.get("include-examples", False)))
        if which == "forget"
        else t.retain
    )
    model = _model(task, cfg, model_arrays)
    f = _local_fisher(cfg, model, data, task, t.partition_id, stream=3)
    return f, {"num-examples": float(batch_len(data)), "cpu-s": time.thread_time() - start}


def evaluate(
    cfg: Mapping[str, Any], node_config: UserConfig, model_arrays: Mapping[str, Tensor]
) -> dict[str, float]:
    """Local validation metrics, plus retained-train and forget metrics (counts and means only)."""
    task = task_from_config(cfg, node_config)
    t = node_tensors(cfg, node_config, task)
    model = _model(task, cfg, model_arrays)
    val = local.evaluate(model, t.validation, task)
    out = {"num-examples": val["n"], "val-loss": val["loss"], "val-accuracy": val["accuracy"]}
    g = _generator(cfg, t.partition_id, 4)
    n_ret = batch_len(t.retain)
    if n_ret:
        idx = torch.randperm(n_ret, generator=g)[: int(cfg.get("eval-examples", 256))]
        r = local.evaluate(model, {k: v[idx] for k, v in t.retain.items()}, task)
        out.update({"retain-loss": r["loss"], "retain-accuracy": r["accuracy"]})
    if batch_len(t.forget):
        f = local.evaluate(model, t.forget, task)
        out.update({"forget-loss": f["loss"], "forget-accuracy": f["accuracy"], "num-forget": f["n"]})
    return out


def utility(
    cfg: Mapping[str, Any], node_config: UserConfig, models: Mapping[str, Mapping[str, Tensor]]
) -> dict[str, float]:
    """Contribution's utilities: each model's mean loss and accuracy on the local validation data
    (``loss:<name>``, ``accuracy:<name>``; ``num-examples`` weighs them across nodes)."""
    start = time.thread_time()
    task = task_from_config(cfg, node_config)
    t = node_tensors(cfg, node_config, task)
    out = {"num-examples": float(batch_len(t.validation))}
    for name, arrays in models.items():
        val = local.evaluate(_model(task, cfg, arrays), t.validation, task)
        out[f"loss:{name}"], out[f"accuracy:{name}"] = val["loss"], val["accuracy"]
    out["cpu-s"] = time.thread_time() - start
    return out


# ---- verification: this node scores its own examples; only scores and counts leave it ----------------


@dataclass
class ProbeData:
    partition_id: int
    forget: list[Record]  # the target's examples in this node's training data, deduplicated, file order
    canaries: list[Any]  # unlearning.verification.probes.Canary: the inserted canaries the target covers
    retained: list[Record] = dataclasses.field(default_factory=list)  # the rest: not the target, no canary


_probe_cache: OrderedDict[tuple[str, ...], ProbeData] = OrderedDict()


def probe_data(cfg: Mapping[str, Any], node_config: UserConfig) -> ProbeData:
    """What verification probes on this node. The lineage's exclusions are not removed: the probe asks
    whether a model still knows the target's examples, wherever they are."""
    from unlearning.verification.probes import dedup_records, node_canaries, node_protected
    from unlearning.verification.protected import PROTECTED_FILE

    path, pid = data_path(node_config, str(cfg["dataset-dir"]) if cfg.get("dataset-dir") else None)
    declared = path / PROTECTED_FILE  # the owner's protected strings: a new list is a new probe
    stamp = str(declared.stat().st_mtime_ns) if declared.is_file() else ""
    key = ("probe", str(path), str(cfg.get("target", "")), str(cfg.get("excluded", "")), stamp)

    def make() -> ProbeData:
        target, excluded = parse_targets(cfg)
        train = load_node_data(path).train
        forget = dedup_records([r for r in train if target is not None and target.matches(r)])
        retained = dedup_records(  # what every model of the lineage trained on (retained-data attacks)
            [
                r
                for r in train
                if not (target is not None and target.matches(r))
                and not any(t.matches(r) for t in excluded)
                and r.get("kind") != "canary"
            ]
        )
        canaries = node_canaries(target, train) + node_protected(target, train, path)
        return ProbeData(pid, forget, canaries, retained)

    return _cached(_probe_cache, key, make, 8)


def _indices(cfg: Mapping[str, Any], key: str, n: int) -> list[int]:
    idx = [int(i) for i in json.loads(str(cfg.get(key, "[]")))]
    if any(not 0 <= i < n for i in idx):
        raise ValueError(f"{key}: an index is outside this node's {n} probe examples")
    return idx


def probe(cfg: Mapping[str, Any], node_config: UserConfig) -> dict[str, float]:
    """Counts of this node's probe examples; with ``kinds`` (published record kinds, JSON) and ``indices``
    (selected examples), which of those kinds the selected examples have (``kind-<i>`` = 1)."""
    d = probe_data(cfg, node_config)
    target, _ = parse_targets(cfg)
    out = {
        "partition-id": float(d.partition_id),
        "num-forget": float(len(d.forget)),
        "num-canaries": float(len(d.canaries)),
        "num-retained": float(len(d.retained)),
        "num-protected": float(sum(c.protected for c in d.canaries)),
    }
    from unlearning.verification.protected import node_commitment, to_words

    path, _ = data_path(node_config, str(cfg["dataset-dir"]) if cfg.get("dataset-dir") else None)
    declared = node_commitment(path)  # the owner's list as this node reads it: count and salted sha256
    out["protected-declared"] = float(declared["count"])
    out.update({f"protected-commitment-{i}": w for i, w in enumerate(to_words(declared["sha256"]))})
    if target is not None and target.kind == "behaviour":  # proposal examples that are a canary held here
        secrets = {c.secret for c in d.canaries}
        for i, ex in enumerate(target.examples):
            if ex["completion"].rstrip(".") in secrets:
                out[f"covers-example-{i}"] = 1.0
    if "kinds" in cfg:
        chosen = [d.forget[i] for i in _indices(cfg, "indices", len(d.forget))]
        have = {r.get("kind") for r in chosen}
        for i, kind in enumerate(json.loads(str(cfg["kinds"]))):
            if kind in have:
                out[f"kind-{i}"] = 1.0
    return out


def _probe_task_models(
    cfg: Mapping[str, Any], node_config: UserConfig, models: Mapping[str, Mapping[str, Tensor]]
) -> tuple[Task, dict[str, nn.Module]]:
    task = task_from_config(cfg, node_config)
    return task, {name: _model(task, cfg, arrays) for name, arrays in models.items()}


def score(
    cfg: Mapping[str, Any], node_config: UserConfig, models: Mapping[str, Mapping[str, Tensor]]
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Per-example scores of each model on this node's selected forget examples (``indices``), optionally
    after a ``transform`` (``int8``: dynamic quantisation; ``int4``: 4-bit round-to-nearest weights, as the
    robustness metrics' attacks); with ``set`` = ``retained``, the selected examples are among the node's
    retained examples instead (not the target's); with ``shift``, the examples are scored after that format
    shift (unlearning.verification.shifts). With ``canaries`` > 0, every canary's exposure against that
    many random candidates and whether greedy decoding extracts it; with ``samples`` > 0, how many of that
    many completions sampled at temperature 1 reproduce each canary's secret; with ``shifts`` (JSON list),
    whether greedy decoding extracts each secret after each shifted prefix. Tensors are named
    ``<model>/<score>``; no text leaves."""
    from unlearning.metrics import canary_exposure
    from unlearning.verification.probes import greedy_extracts
    from unlearning.verification.probes import score as score_batch

    start = time.thread_time()
    d = probe_data(cfg, node_config)
    target, _ = parse_targets(cfg)
    task, built = _probe_task_models(cfg, node_config, models)
    if cfg.get("transform"):
        from unlearning.verification.probes import transformed

        built = {name: transformed(m, str(cfg["transform"])) for name, m in built.items()}
    out: dict[str, Tensor] = {}
    retained = cfg.get("set") == "retained"
    pool = d.retained if retained else d.forget
    chosen = [pool[i] for i in _indices(cfg, "indices", len(pool))]
    if chosen:
        if cfg.get("shift"):
            from unlearning.verification.shifts import shifted_batch

            batch = shifted_batch(task, chosen, str(cfg["shift"]), target, forget=not retained)
        else:
            batch = task.to_batch(chosen, target, forget=not retained)
        for name, model in built.items():
            s = score_batch(model, task, batch, k=float(cfg.get("min-k", 0.4)), bf16=bool(cfg.get("bf16")))
            out.update({f"{name}/loss": s.loss, f"{name}/correct": s.correct, f"{name}/tokens": s.tokens})
            out[f"{name}/min_k_pp"] = s.min_k_pp
            if s.min_k is not None:
                out[f"{name}/min_k"] = s.min_k
    candidates, extract = int(cfg.get("canaries", 0)), bool(cfg.get("extraction", False))
    samples, shifts = int(cfg.get("samples", 0)), [str(s) for s in json.loads(str(cfg.get("shifts", "[]")))]
    if (candidates > 0 or extract or samples > 0 or shifts) and d.canaries and isinstance(task, CausalLMTask):
        pairs = {(ex.get("prompt", ""), ex["completion"]) for ex in (target.examples if target else [])}
        tried = [(c.prefix, c.secret) not in pairs for c in d.canaries]  # the proposal's own pairs: not twice
        out["canary/repetitions"] = torch.tensor([float(c.repetitions) for c in d.canaries])
        out["canary/secret_length"] = torch.tensor([float(len(c.secret)) for c in d.canaries])
        out["canary/extraction"] = torch.tensor([float(t) for t in tried])
        out["canary/protected"] = torch.tensor([float(c.protected) for c in d.canaries])
        nan = (math.nan, math.nan)  # a protected string that is no digit secret has no exposure
        for name, model in built.items():
            if candidates > 0:
                ez = [
                    canary_exposure(
                        model, task, c.prefix, c.secret, candidates=candidates, seed=int(cfg["seed"])
                    )
                    if not c.protected or c.secret.isdigit()
                    else nan
                    for c in d.canaries
                ]
                out[f"{name}/exposure"] = torch.tensor([e for e, _ in ez], dtype=torch.float64)
                out[f"{name}/z"] = torch.tensor([z for _, z in ez], dtype=torch.float64)
            if extract:
                out[f"{name}/extracted"] = torch.tensor(
                    [
                        float(t and greedy_extracts(model, task, c.prefix, c.secret))
                        for c, t in zip(d.canaries, tried, strict=True)
                    ]
                )
            if samples > 0:  # best-of-N: how many of N completions sampled at temperature 1 hit the secret
                from unlearning.verification.probes import sampled_hits

                seed = int(cfg["seed"])
                out[f"{name}/sampled"] = torch.tensor(
                    [
                        float(sampled_hits(model, task, c.prefix, c.secret, samples=samples, seed=seed))
                        for c in d.canaries
                    ]
                )
            for shift in shifts:  # format-shifted prefixes: is the secret still the greedy continuation?
                from unlearning.verification.shifts import shift_context

                out[f"{name}/shift/{shift}"] = torch.tensor(
                    [
                        float(t and greedy_extracts(model, task, shift_context(shift, c.prefix), c.secret))
                        for c, t in zip(d.canaries, tried, strict=True)
                    ]
                )
    return out, {"num-examples": float(len(chosen)), "cpu-s": time.thread_time() - start}


def relearn(
    cfg: Mapping[str, Any], node_config: UserConfig, models: Mapping[str, Mapping[str, Tensor]]
) -> tuple[dict[str, dict[str, Tensor]], dict[str, float]]:
    """The relearning attack on this node's selected forget examples (``indices``): each model fine-tuned
    ``relearn-steps`` steps; the attacked models' parameters go back (never the examples)."""
    from unlearning.verification.probes import relearn_model

    start = time.thread_time()
    d = probe_data(cfg, node_config)
    target, _ = parse_targets(cfg)
    task, built = _probe_task_models(cfg, node_config, models)
    chosen = [d.forget[i] for i in _indices(cfg, "indices", len(d.forget))]
    if not chosen:
        raise ValueError("no examples to relearn from on this node")
    data = task.to_batch(chosen, target, forget=True)
    steps, seed = int(cfg["relearn-steps"]), int(cfg["seed"])
    out = {
        name: local.parameters_dict(relearn_model(task, m, data, steps=steps, seed=seed))
        for name, m in built.items()
    }
    return out, {"num-examples": float(len(chosen)), "cpu-s": time.thread_time() - start}
