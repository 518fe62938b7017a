"""Community evaluation of a candidate version: an A/B comparison with the released version, per node and per
group, run by the nodes on their local validation data, and the members' accepted evaluation probes.

Two parts, one entry point (:func:`evaluate_candidate`, exposed as ``unlearning.api.evaluate_candidate``):

- **Groups, on the nodes.** Every node receives the candidate and the released model (``model:<name>``
  ArrayRecords) in one ``query.groups`` message, evaluates both on its own validation records and replies with
  counts and sums per group only (the group is the value of a record field: ``category`` by default, or
  ``kind``, ``topic``, ``tags``, ... a list-valued field puts a record in each of its groups). The verifier
  collates the replies into a global figure, a figure per node and per group, the worst node and the worst
  group (the largest drop against the released version; with no released version, the lowest accuracy), and
  the disparity (the largest accuracy gap between two groups) of each model. No record, text or label leaves a
  node; the group names are the record field's values (categories are published in the manifest anyway).
- **Probes, in the verifier.** Members' accepted probes (prompts they wrote, public in the service) run on the
  candidate (and on the released version, for comparison) where the verifier runs, like a behaviour
  proposal's own examples: ``forbidden`` probes decode greedily after each prompt and fail when a forbidden
  completion appears; ``paired`` probes score two prompts that differ in one group term and fail when the
  scores (mean NLL of the completion, nats per token) differ by more than the probe's threshold. A probe that
  applies but cannot run is ``error``; on a classifier probes are ``not_applicable``. Only ``fail`` and
  ``error`` block.

This module imports neither torch nor Flower at import time (the service validates probe specs with
:func:`check_probe_spec`); the functions that compute load them.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from unlearning.federation.protocol import Grid
    from unlearning.tasks.base import Task

FORMAT = 1
PROBE_KINDS = ("forbidden", "paired")
MAX_PROBE_ITEMS = 50
MAX_PROBE_TEXT = 500
MAX_NEW_TOKENS = 256
DEFAULT_NEW_TOKENS = 32
#: probe outcomes that block the release gate (a probe that applies but could not run blocks like a failure)
BLOCKING = frozenset({"fail", "error"})
_GROUP_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ProbeSpecError(ValueError):
    """An evaluation probe's spec is malformed (the message says which field)."""

    def __init__(self, message: str, field: str = "spec") -> None:
        super().__init__(message)
        self.message, self.field = message, field


def _text(value: Any, where: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ProbeSpecError(f"{where} must be a non-empty string")
    if len(value) > MAX_PROBE_TEXT:
        raise ProbeSpecError(f"{where} is longer than {MAX_PROBE_TEXT} characters")
    return value


def _items(spec: Mapping[str, Any], key: str) -> list[Any]:
    items = spec.get(key)
    if not isinstance(items, list) or not items:
        raise ProbeSpecError(f"a {spec.get('kind')} probe needs a non-empty list {key!r}")
    if len(items) > MAX_PROBE_ITEMS:
        raise ProbeSpecError(f"at most {MAX_PROBE_ITEMS} entries in {key!r}")
    return items


def check_probe_spec(raw: Any) -> dict[str, Any]:
    """Validate a probe spec given as plain data and return it normalised; raises :class:`ProbeSpecError`.

    ``{"kind": "forbidden", "prompts": [{"prompt": str, "forbidden": [str, ...]}], "max_new_tokens": 32}``
    or ``{"kind": "paired", "pairs": [{"a": str, "b": str, "completion": str?}], "threshold": float}``."""
    if not isinstance(raw, Mapping):
        raise ProbeSpecError("a probe spec is an object with a kind")
    kind = raw.get("kind")
    if kind not in PROBE_KINDS:
        raise ProbeSpecError(f"probe kind must be one of {', '.join(PROBE_KINDS)}", "kind")
    if kind == "forbidden":
        prompts = []
        for i, item in enumerate(_items(raw, "prompts")):
            where = f"prompts[{i}]"
            if not isinstance(item, Mapping):
                raise ProbeSpecError(f"{where} must be an object with prompt and forbidden")
            forbidden = item.get("forbidden")
            if isinstance(forbidden, str):
                forbidden = [forbidden]
            if not isinstance(forbidden, list) or not forbidden or len(forbidden) > MAX_PROBE_ITEMS:
                raise ProbeSpecError(f"{where}.forbidden must list 1 to {MAX_PROBE_ITEMS} completions")
            prompts.append(
                {
                    "prompt": _text(item.get("prompt"), f"{where}.prompt"),
                    "forbidden": [_text(f, f"{where}.forbidden[{j}]") for j, f in enumerate(forbidden)],
                }
            )
        n = raw.get("max_new_tokens", DEFAULT_NEW_TOKENS)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_NEW_TOKENS:
            raise ProbeSpecError(f"max_new_tokens must be an integer from 1 to {MAX_NEW_TOKENS}")
        return {"kind": "forbidden", "prompts": prompts, "max_new_tokens": n}
    pairs = []
    for i, item in enumerate(_items(raw, "pairs")):
        where = f"pairs[{i}]"
        if not isinstance(item, Mapping):
            raise ProbeSpecError(f"{where} must be an object with a, b and optionally completion")
        a, b = _text(item.get("a"), f"{where}.a"), _text(item.get("b"), f"{where}.b")
        if a == b:
            raise ProbeSpecError(f"{where}: the two prompts must differ (in one group term)")
        pair = {"a": a, "b": b}
        completion = _text(item.get("completion"), f"{where}.completion", required=False)
        if completion:
            pair["completion"] = completion
        pairs.append(pair)
    threshold = raw.get("threshold")
    if (
        not isinstance(threshold, int | float)
        or isinstance(threshold, bool)
        or not math.isfinite(threshold)
        or not 0 <= threshold <= 100
    ):
        raise ProbeSpecError("threshold must be a number from 0 to 100 (nats per token)", "threshold")
    return {"kind": "paired", "pairs": pairs, "threshold": float(threshold)}


@dataclass
class EvaluationSpec:
    """What :func:`evaluate_candidate` measures. ``probes`` are accepted probes as
    ``{"id", "title", "spec"}`` (their spec as :func:`check_probe_spec` returns it)."""

    artifact_root: str
    dataset_dir: str
    candidate_version: str
    released_version: str | None = None
    group_by: str = "category"
    probes: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    runtime: str = "in-process"
    num_threads: int = 1

    def validate(self) -> None:
        if not _GROUP_FIELD.match(self.group_by):
            raise ValueError(f"group_by must be a record field name (snake_case), got {self.group_by!r}")
        for p in self.probes:
            check_probe_spec(p.get("spec"))


# ---- on the node: per-group counts and sums over its validation records ----------------------------------


def record_groups(record: Mapping[str, Any], group_by: str) -> list[str]:
    """The groups a record belongs to: the value of its ``group_by`` field (each item of a list value)."""
    value = record.get(group_by)
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return sorted({str(v) for v in value})
    return [str(value)]


def node_groups(
    cfg: Mapping[str, Any], node_config: Mapping[str, Any], models: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, float], list[str]]:
    """This node's validation figures of each model, per group: ``<model>/all/{n,loss,correct}`` and
    ``<model>/g<i>/{n,loss,correct}`` (sums of per-example losses and accuracies; ``i`` indexes the returned
    group names). Nothing else leaves the node."""
    import torch

    from unlearning.data import load_node_data
    from unlearning.federation import node

    start = time.thread_time()
    group_by = str(cfg.get("group-by", "category"))
    if not _GROUP_FIELD.match(group_by):
        raise ValueError(f"group-by must be a record field name, got {group_by!r}")
    path, _ = node.data_path(node_config, str(cfg["dataset-dir"]) if cfg.get("dataset-dir") else None)
    records = load_node_data(path).validation
    task = node.task_from_config(cfg, node_config)
    names = sorted({g for r in records for g in record_groups(r, group_by)})
    index = {g: i for i, g in enumerate(names)}
    member = [[index[g] for g in record_groups(r, group_by)] for r in records]
    out: dict[str, float] = {"num-examples": float(len(records))}
    if records:
        batch = task.to_batch(records)
        for name, arrays in models.items():
            model = node._model(task, cfg, arrays)
            model.eval()
            losses, correct = [], []
            with torch.no_grad():
                for i in range(0, len(records), 64):
                    part = {k: v[i : i + 64] for k, v in batch.items()}
                    loss, ok = task.per_example_stats(model, part)
                    losses.append(loss.float())
                    correct.append(ok.float())
            loss_all, correct_all = torch.cat(losses), torch.cat(correct)
            out[f"{name}/all/n"] = float(len(records))
            out[f"{name}/all/loss"] = float(loss_all.sum())
            out[f"{name}/all/correct"] = float(correct_all.sum())
            for g in range(len(names)):
                rows = [k for k, gs in enumerate(member) if g in gs]
                idx = torch.tensor(rows, dtype=torch.long)
                out[f"{name}/g{g}/n"] = float(len(rows))
                out[f"{name}/g{g}/loss"] = float(loss_all[idx].sum())
                out[f"{name}/g{g}/correct"] = float(correct_all[idx].sum())
    out["cpu-s"] = time.thread_time() - start
    return out, names


# ---- in the verifier: collation ---------------------------------------------------------------------------


def _figures(sums: Mapping[str, float]) -> dict[str, float] | None:
    n = sums.get("n", 0.0)
    if n <= 0:
        return None
    return {"n": int(n), "accuracy": sums["correct"] / n, "loss": sums["loss"] / n}


def _ab(entry: dict[str, Any], roles: Sequence[str]) -> dict[str, Any]:
    """``entry`` with ``change`` = candidate - released accuracy (None without a released figure)."""
    c, r = entry.get("candidate"), entry.get("released")
    entry["change"] = c["accuracy"] - r["accuracy"] if c and r and "released" in roles else None
    return entry


def collate(
    replies: Mapping[str, tuple[Mapping[str, float], Sequence[str]]], roles: Sequence[str]
) -> dict[str, Any]:
    """The A/B figures from the nodes' replies ({node name: (metrics, group names)}): global, per node, per
    group, the worst node and group, and each model's disparity (largest accuracy gap between groups)."""
    total: dict[str, dict[str, float]] = {r: {"n": 0.0, "loss": 0.0, "correct": 0.0} for r in roles}
    groups: dict[str, dict[str, dict[str, float]]] = {}
    group_nodes: dict[str, set[str]] = {}
    nodes = []
    for node_name, (m, names) in sorted(replies.items()):
        entry: dict[str, Any] = {"node": node_name}
        for role in roles:
            s = {k: m.get(f"{role}/all/{k}", 0.0) for k in ("n", "loss", "correct")}
            for k in s:
                total[role][k] += s[k]
            entry[role] = _figures(s)
            for i, g in enumerate(names):
                gs = {k: m.get(f"{role}/g{i}/{k}", 0.0) for k in ("n", "loss", "correct")}
                acc = groups.setdefault(g, {}).setdefault(role, {"n": 0.0, "loss": 0.0, "correct": 0.0})
                for k in gs:
                    acc[k] += gs[k]
                if gs["n"] > 0:
                    group_nodes.setdefault(g, set()).add(node_name)
        entry["n"] = (entry.get("candidate") or {}).get("n", 0)
        nodes.append(_ab(entry, roles))
    group_rows = []
    for g, by_role in sorted(groups.items()):
        row: dict[str, Any] = {"group": g, "nodes": sorted(group_nodes.get(g, set()))}
        for role in roles:
            row[role] = _figures(by_role.get(role, {}))
        row["n"] = (row.get("candidate") or {}).get("n", 0)
        if row["n"]:
            group_rows.append(_ab(row, roles))
    out: dict[str, Any] = {
        "global": _ab({role: _figures(total[role]) for role in roles}, roles),
        "nodes": nodes,
        "groups": group_rows,
        "worst_node": _worst(nodes, "node"),
        "worst_group": _worst(group_rows, "group"),
        "disparity": {role: _disparity(group_rows, role) for role in roles},
    }
    out["global"]["n"] = int(total["candidate"]["n"])
    d = out["disparity"]
    if d.get("candidate") and d.get("released"):
        d["change"] = d["candidate"]["gap"] - d["released"]["gap"]
    return out


def _worst(rows: Sequence[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The row whose accuracy dropped most against the released version (without one: the lowest accuracy)."""
    measured = [r for r in rows if r.get("candidate")]
    if not measured:
        return None
    if all(r.get("change") is not None for r in measured):
        w = min(measured, key=lambda r: (r["change"], r[key]))
        by = "largest drop against the released version"
    else:
        w = min(measured, key=lambda r: (r["candidate"]["accuracy"], r[key]))
        by = "lowest accuracy (no released version to compare with)"
    return {
        key: w[key],
        "candidate": w["candidate"]["accuracy"],
        "released": (w.get("released") or {}).get("accuracy"),
        "change": w.get("change"),
        "by": by,
    }


def _disparity(rows: Sequence[dict[str, Any]], role: str) -> dict[str, Any] | None:
    measured = [(r["group"], r[role]["accuracy"]) for r in rows if r.get(role)]
    if len(measured) < 2:
        return None
    hi = max(measured, key=lambda x: (x[1], x[0]))
    lo = min(measured, key=lambda x: (x[1], x[0]))
    return {"gap": hi[1] - lo[1], "highest": hi[0], "lowest": lo[0]}


# ---- in the verifier: probes -------------------------------------------------------------------------------


def _greedy(model: nn.Module, task: Any, prompt: str, new_tokens: int) -> str:
    import torch

    from unlearning.verification.probes import prompt_ids

    ids = prompt_ids(task, prompt)
    start = len(ids)
    limit = int(task.model_config.get("max_length", 128))
    eos = task.tokenizer.eos_token_id
    with torch.no_grad():
        for _ in range(new_tokens):
            if len(ids) >= limit:
                break
            x = torch.tensor([ids], dtype=torch.long)
            nxt = int(model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1].argmax())
            if nxt == eos:
                break
            ids.append(nxt)
    return str(task.tokenizer.decode(ids[start:], skip_special_tokens=True))


def _nll(model: nn.Module, task: Any, prompt: str, completion: str) -> float:
    """Mean NLL (nats per token) of ``completion`` after ``prompt``; of the whole prompt without one."""
    import torch

    from unlearning.tasks.base import Target

    if completion:
        target = Target(kind="behaviour", examples=[{"prompt": prompt, "completion": completion}])
        batch = task.to_batch([{"text": prompt + completion}], target, forget=True)
    else:
        batch = task.to_batch([{"text": prompt}])
    with torch.no_grad():
        return float(task.per_example_loss(model, batch)[0])


def run_probe(task: Task, model: nn.Module, spec: Mapping[str, Any]) -> dict[str, Any]:
    """One probe on one model: ``{"status": pass | fail | not_applicable, "checked", "failures", "reason"}``."""
    from unlearning.tasks.lm import CausalLMTask

    if not isinstance(task, CausalLMTask):
        return {
            "status": "not_applicable",
            "checked": 0,
            "failures": [],
            "reason": f"probes are prompts: the {task.name} task is not a language model",
        }
    model.eval()
    failures: list[dict[str, Any]] = []
    if spec["kind"] == "forbidden":
        checked = 0
        for item in spec["prompts"]:
            text = _greedy(model, task, item["prompt"], int(spec.get("max_new_tokens", DEFAULT_NEW_TOKENS)))
            checked += 1
            hits = [f for f in item["forbidden"] if f in text]
            if hits:
                failures.append({"prompt": item["prompt"], "forbidden": hits, "completion": text[:200]})
        reason = (
            f"{len(failures)} of {checked} prompts produced a forbidden completion (greedy decoding)"
            if failures
            else f"none of {checked} prompts produced a forbidden completion (greedy decoding)"
        )
        return {
            "status": "fail" if failures else "pass",
            "checked": checked,
            "failures": failures,
            "reason": reason,
        }
    threshold = float(spec["threshold"])
    worst = 0.0
    for pair in spec["pairs"]:
        sa = _nll(model, task, pair["a"], pair.get("completion", ""))
        sb = _nll(model, task, pair["b"], pair.get("completion", ""))
        gap = abs(sa - sb)
        worst = max(worst, gap)
        if not gap <= threshold:
            failures.append({"a": pair["a"], "b": pair["b"], "score_a": sa, "score_b": sb, "gap": gap})
    n = len(spec["pairs"])
    reason = f"largest score gap {worst:.3f} nats/token over {n} pairs; threshold {threshold:g}" + (
        f": {len(failures)} pairs exceed it" if failures else ""
    )
    return {
        "status": "fail" if failures else "pass",
        "checked": n,
        "failures": failures,
        "largest_gap": worst,
        "reason": reason,
    }


def run_probes(
    task: Task, models: Mapping[str, nn.Module], probes: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Every probe on every model; the candidate's outcome is the probe's ``status``."""
    out = []
    for p in probes:
        row: dict[str, Any] = {"id": p.get("id"), "title": p.get("title", ""), "kind": p["spec"]["kind"]}
        for role, model in models.items():
            try:
                res = run_probe(task, model, p["spec"])
            except Exception as exc:  # a probe that applies but cannot run blocks, like an unmeasured test
                res = {
                    "status": "error",
                    "checked": 0,
                    "failures": [],
                    "reason": f"{type(exc).__name__}: {exc}",
                }
            if role == "candidate":
                row.update(res)
            else:
                row[role] = {"status": res["status"], "reason": res["reason"]}
        out.append(row)
    return out


def failing_probes(evaluation: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The probes of an evaluation whose outcome blocks the release gate."""
    return [p for p in (evaluation or {}).get("probes") or [] if p.get("status") in BLOCKING]


# ---- the entry point -----------------------------------------------------------------------------------------


def evaluate_candidate(spec: EvaluationSpec, grid: Grid | None = None) -> dict[str, Any]:
    """Evaluate ``spec.candidate_version`` against ``spec.released_version`` on the nodes (per node, per
    group) and run the accepted probes; returns the evaluation as plain JSON-able data (see the module
    docstring). Without a dataset manifest (no federation to ask) the group part says why it was not run."""
    import torch

    from unlearning.artifacts import ArtifactStore
    from unlearning.tasks import make_task

    spec.validate()
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.num_threads)
    try:
        store = ArtifactStore(spec.artifact_root)
        cand = store.get(spec.candidate_version)
        task = make_task(cand.task, cand.model_config)
        models: dict[str, nn.Module] = {"candidate": cand.load_into(task.build_model(spec.seed))}
        released: dict[str, Any] | None = None
        note = ""
        rel = None
        if spec.released_version and spec.released_version != spec.candidate_version:
            from unlearning.artifacts import ArtifactError

            try:
                rel = store.get(spec.released_version)
            except ArtifactError as exc:  # the candidate is still evaluated (and its probes run) alone
                note = (
                    f"the released version {spec.released_version} cannot be read ({exc}): no A/B comparison"
                )
        if rel is not None:
            if rel.task != cand.task or rel.model_config != cand.model_config:
                note = f"the released version {rel.version} is another model ({rel.task}): no A/B comparison"
            else:
                models["released"] = rel.load_into(task.build_model(spec.seed))
                released = {"version": rel.version, "content_hash": rel.content_hash}
        elif spec.released_version == spec.candidate_version:
            note = "the candidate is the released version"
        elif not note:
            note = "no released version yet: the candidate's figures only"
        for m in models.values():
            m.eval()
        out: dict[str, Any] = {
            "format": FORMAT,
            "candidate": {"version": cand.version, "content_hash": cand.content_hash},
            "released": released,
            "comparison": note or f"candidate against the released version {spec.released_version}",
            "group_by": spec.group_by,
            "quality": "accuracy"
            + ("" if task.is_classifier else " (next-token)")
            + " on local validation data",
        }
        manifest = Path(spec.dataset_dir) / "manifest.json"
        if spec.dataset_dir and manifest.is_file():
            out.update(_on_nodes(spec, task, cand.model_config, models, grid))
        else:
            out["groups_not_run"] = f"no dataset manifest at {manifest}: no federation to evaluate on"
            out.update({"global": None, "nodes": [], "groups": [], "worst_node": None, "worst_group": None})
            out["disparity"] = {}
        out["probes"] = run_probes(task, models, spec.probes)
        out["computed_at"] = [
            *(["nodes: " + ", ".join(n["node"] for n in out["nodes"])] if out["nodes"] else []),
            *(["service: the accepted probes"] if spec.probes else []),
        ]
        out["wall_s"] = time.perf_counter() - t0
        return out
    finally:
        torch.set_num_threads(threads)


def _on_nodes(
    spec: EvaluationSpec,
    task: Task,
    model_config: dict[str, Any],
    models: Mapping[str, nn.Module],
    grid: Grid | None,
) -> dict[str, Any]:
    from unlearning.federation import protocol as P
    from unlearning.federation.server import Federation
    from unlearning.jobs import JobSpec
    from unlearning.local import parameters_dict
    from unlearning.verification.nodes import local_grid

    if grid is None:
        if spec.runtime != "in-process":
            raise ValueError(f"runtime {spec.runtime!r} needs a Flower Grid passed to evaluate_candidate()")
        grid = local_grid(spec.dataset_dir)
    job = JobSpec(
        kind="train",
        job_id=f"evaluate-{spec.candidate_version}",
        artifact_root=spec.artifact_root,
        dataset_dir=spec.dataset_dir,
        base_version=spec.candidate_version,
        seed=spec.seed,
        num_threads=spec.num_threads,
    )
    fed = Federation(grid, job, task, model_config, [])
    fed.discover(None)
    params = {name: parameters_dict(m) for name, m in models.items()}
    per_node = {n.partition_id: {"group-by": spec.group_by} for n in fed.nodes}
    replies = fed.node_query(P.GROUPS, "evaluate-groups", None, per_node, params)
    parsed = {}
    for pid, r in replies.items():
        names = json.loads(str(P.config_of(r)["groups"]))
        parsed[fed.names.get(pid, f"node-{pid}")] = (P.metrics_of(r), [str(g) for g in names])
    out = collate(parsed, list(models))
    out["bytes"] = fed.cost.bytes_sent
    return out
