"""The local work of a node, as pure torch functions: train, bounded gradient ascent, diagonal Fisher, evaluate.

Nothing here knows about Flower or files: a function takes a model, a batch of tensors (see
:mod:`unlearning.tasks.base`), the task (for per-example losses) and a :class:`LocalConfig`, and changes the
model in place or returns numbers. Client apps are thin adapters over these.

EWC is applied as a *proximal step* after every optimizer step (:class:`Proximal`): the update
``p <- (p + c * a) / (1 + c)`` with ``c = lr * lambda * F`` is the exact minimiser of the penalty's
quadratic around the current point, so it is stable for any ``lambda * F`` (the explicit gradient of the
penalty diverges once ``2 * lr * lambda * F`` exceeds about 2; see notes/unlearning-probe.md).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from unlearning.tasks.base import Batch, Task, batch_len, take


@dataclass
class LocalConfig:
    """Settings of one node's local optimisation (training or ascent)."""

    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 0.05
    momentum: float = 0.0  # SGD only
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW only
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: float | None = None  # training length in passes over the data ...
    steps: int | None = None  # ... or in optimizer steps (steps wins when both are set)
    max_steps: int = 200  # ascent: hard cap on steps whatever the stop rule says
    check_every: int = 1  # ascent: evaluate the stop rule every this many steps
    clip: float | None = None  # gradient-norm clip
    bf16: bool = False  # bfloat16 autocast on CPU (master weights stay fp32)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LocalConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown local setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kw = dict(d)
        if "betas" in kw:
            b = kw["betas"]
            kw["betas"] = (float(b[0]), float(b[1]))
        cfg = cls(**kw)
        if cfg.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected 'sgd' or 'adamw'")
        if cfg.lr <= 0 or cfg.batch_size < 1:
            raise ValueError("lr must be > 0 and batch_size >= 1")
        return cfg


def make_optimizer(model: nn.Module, cfg: LocalConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def autocast(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless shuffled mini-batch indices (a new permutation every pass)."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            yield perm[i : i + batch_size]


def parameters_dict(model: nn.Module) -> dict[str, Tensor]:
    """Detached copies of the trainable parameters (tied weights appear once)."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@dataclass
class Proximal:
    """EWC as a proximal step towards ``anchor`` with per-parameter weights ``lam * fisher``."""

    anchor: dict[str, Tensor]
    fisher: dict[str, Tensor]
    lam: float

    @torch.no_grad()
    def step(self, model: nn.Module, lr: float) -> None:
        for name, p in model.named_parameters():
            f = self.fisher.get(name)
            a = self.anchor.get(name)
            if f is None or a is None:
                continue
            c = lr * self.lam * f
            p.copy_((p + c * a) / (1.0 + c))

    def penalty(self, model: nn.Module) -> float:
        """lam/2 * sum F (theta - anchor)^2, for reporting."""
        total = 0.0
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in self.fisher and name in self.anchor:
                    total += float((self.fisher[name] * (p - self.anchor[name]) ** 2).sum())
        return 0.5 * self.lam * total


@dataclass
class L2Ball:
    """Projection onto ``{theta : ||theta - center|| <= radius}`` (Halimi et al. 2022)."""

    center: dict[str, Tensor]
    radius: float
    hits: int = 0

    @torch.no_grad()
    def project(self, model: nn.Module) -> None:
        named = [(p, self.center[n]) for n, p in model.named_parameters() if n in self.center]
        dist = math.sqrt(sum(float(((p - c) ** 2).sum()) for p, c in named))
        if dist > self.radius:
            self.hits += 1
            scale = self.radius / dist
            for p, c in named:
                p.copy_(c + (p - c) * scale)


def distance(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    return math.sqrt(sum(float(((a[k] - b[k]) ** 2).sum()) for k in a if k in b))


@torch.no_grad()
def per_example(model: nn.Module, batch: Batch, task: Task, chunk: int = 128) -> tuple[Tensor, Tensor]:
    """Per-example loss and correctness in eval mode: two tensors of shape [B]."""
    was = model.training
    model.eval()
    losses, correct = [], []
    n = batch_len(batch)
    for i in range(0, n, chunk):
        part = take(batch, slice(i, i + chunk))
        loss, hit = task.per_example_stats(model, part)
        losses.append(loss.float())
        correct.append(hit.float())
    model.train(was)
    if not losses:
        return torch.zeros(0), torch.zeros(0)
    return torch.cat(losses), torch.cat(correct)


def evaluate(model: nn.Module, batch: Batch, task: Task) -> dict[str, float]:
    """Mean loss, mean accuracy and the example count of ``batch``."""
    n = batch_len(batch)
    if n == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "n": 0.0}
    loss, correct = per_example(model, batch, task)
    return {"loss": float(loss.mean()), "accuracy": float(correct.mean()), "n": float(n)}


@dataclass
class TrainStats:
    steps: int = 0
    loss: float = float("nan")  # mean training loss over the steps


@dataclass
class Guard:
    """Keeps forgotten examples forgotten while a node trains on its retained data (repair rounds): a hinge
    that pushes up every sampled ``forget`` example whose loss is below ``cap`` = ``factor`` x the mean loss
    of ``reference`` (unseen examples of the same kind) at the current model, and every secret span (tokens of
    the span only) whose loss is below ``secret_cap`` (chance for a digit: ln 10). Examples already as
    unfamiliar as unseen ones cost nothing, so the guard only stops re-learning; it never ascends further.
    (No library offers this: it is the joint "gradient difference" objective with a per-example cap.)"""

    forget: Batch
    reference: Batch
    weight: float = 1.0
    factor: float = 1.0
    secrets: Batch | None = None
    secret_cap: float = math.log(10)
    refresh_every: int = 5
    cap: float = float("nan")
    # per-example floors (e.g. the losses right after the ascent): no example may become more familiar than
    # its floor either, so repair keeps each example as forgotten as the ascent left it
    floor: Tensor | None = None
    secret_floor: Tensor | None = None

    def loss(self, model: nn.Module, task: Task, step: int, size: int, generator: torch.Generator) -> Tensor:
        if step % self.refresh_every == 0 or self.cap != self.cap:
            with torch.no_grad():
                self.cap = self.factor * float(per_example(model, self.reference, task)[0].mean())
        idx = torch.randint(0, batch_len(self.forget), (size,), generator=generator)
        cap: float | Tensor = self.cap if self.floor is None else self.floor[idx].clamp(min=self.cap)
        term = torch.relu(cap - task.per_example_loss(model, take(self.forget, idx))).mean()
        if self.secrets is not None and batch_len(self.secrets):
            secret_cap: float | Tensor = self.secret_cap
            if self.secret_floor is not None:
                secret_cap = self.secret_floor.clamp(min=self.secret_cap)
            term = term + torch.relu(secret_cap - task.per_example_loss(model, self.secrets)).mean()
        return self.weight * term


def train(
    model: nn.Module,
    data: Batch,
    task: Task,
    cfg: LocalConfig,
    *,
    generator: torch.Generator,
    prox: Proximal | None = None,
    guard: Guard | None = None,
    teacher: nn.Module | None = None,
    distill: float = 0.0,
) -> TrainStats:
    """Local training (descent) for ``cfg.steps`` steps or ``cfg.epochs`` passes, with optional EWC prox and
    an optional :class:`Guard` term that keeps forgotten examples forgotten. With ``teacher`` the loss is
    ``(1 - distill)`` x the labels' loss + ``distill`` x KL(teacher || model) on the same batch."""
    n = batch_len(data)
    if n == 0:
        return TrainStats()
    if teacher is not None:
        teacher.eval()
    if cfg.steps is not None:
        total = cfg.steps
    else:
        total = max(1, math.ceil((cfg.epochs if cfg.epochs is not None else 1.0) * n / cfg.batch_size))
    opt = make_optimizer(model, cfg)
    model.train()
    losses = []
    for step, idx in enumerate(batches(n, cfg.batch_size, generator)):
        if step >= total:
            break
        with autocast(cfg.bf16):
            batch = take(data, idx)
            if teacher is not None and distill > 0:
                nll, kl = task.per_example_distill(model, teacher, batch)
                loss = (1 - distill) * nll.mean() + distill * kl.mean()
            else:
                loss = task.per_example_loss(model, batch).mean()
            if guard is not None:
                loss = loss + guard.loss(model, task, step, len(idx), generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if cfg.clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        if prox is not None:
            prox.step(model, cfg.lr)
        losses.append(float(loss.detach()))
    return TrainStats(steps=len(losses), loss=sum(losses) / len(losses))


@dataclass
class StopRule:
    """When ascent has forgotten enough. Any satisfied criterion stops (checked before every step too).

    ``loss_at_least``: mean forget loss >= this (e.g. the node's validation loss of the original model: the
    forget data now looks like data the model never saw). ``accuracy_at_most``: forget accuracy <= this
    (class unlearning). ``auc_at_most`` with ``reference``: the loss-threshold membership-inference AUC of
    the forget examples against the reference (local validation) examples <= this (0.5: indistinguishable).
    ``criterion``: any callable on the model (e.g. a canary-exposure check). ``cap_to_reference`` with
    ``reference``: the median loss of the reference examples is the forget examples' cap (``m["cap"]``: the
    ascent raises each forget loss only up to it), and every forget example at the cap stops.
    """

    loss_at_least: float | None = None
    accuracy_at_most: float | None = None
    auc_at_most: float | None = None
    reference: Batch | None = None
    criterion: Callable[[nn.Module], bool] | None = None
    cap_to_reference: bool = False

    def satisfied(self, model: nn.Module, forget: Batch, task: Task) -> tuple[bool, dict[str, float]]:
        loss, correct = per_example(model, forget, task)
        m = {"loss": float(loss.mean()), "accuracy": float(correct.mean()), "n": float(batch_len(forget))}
        hit = (self.loss_at_least is not None and m["loss"] >= self.loss_at_least) or (
            self.accuracy_at_most is not None and m["accuracy"] <= self.accuracy_at_most
        )
        if (
            not hit
            and (self.auc_at_most is not None or self.cap_to_reference)
            and self.reference is not None
            and batch_len(self.reference)
        ):
            ref, _ = per_example(model, self.reference, task)
            if self.auc_at_most is not None:
                from unlearning.metrics import loss_auc

                m["auc"] = loss_auc(loss, ref)
                hit = m["auc"] <= self.auc_at_most
            if self.cap_to_reference:
                m["cap"] = float(ref.median())
                hit = hit or bool((loss >= m["cap"]).all())
        if not hit and self.criterion is not None:
            hit = self.criterion(model)
        return hit, m


@dataclass
class AscentStats:
    steps: int = 0
    reason: str = "max_steps"  # "criterion" | "max_steps" | "diverged" | "empty"
    forget_loss: float = float("nan")
    forget_accuracy: float = float("nan")
    ball_hits: int = 0
    history: list[float] = field(default_factory=list)  # forget loss at every check


def gradient_ascent(
    model: nn.Module,
    forget: Batch,
    task: Task,
    cfg: LocalConfig,
    stop: StopRule,
    *,
    generator: torch.Generator,
    ball: L2Ball | None = None,
    prox: Proximal | None = None,
    retain: Batch | None = None,
    retain_weight: float = 0.0,
) -> AscentStats:
    """Bounded gradient ascent on ``forget``: minimise ``-loss(forget)`` (plus ``retain_weight`` x the loss on a
    batch of ``retain``, "gradient difference", when given) (+ the EWC prox step), project onto
    the L2 ball, stop as soon as ``stop`` is satisfied or ``cfg.max_steps`` is reached. A non-finite loss
    restores the last finite weights and stops (reason ``diverged``). With ``stop.cap_to_reference`` each
    forget example's loss counts only up to the cap the stop rule reports (the reference examples' median
    loss under the current model, renewed at every check): an example already that unfamiliar gets no more
    ascent."""
    n = batch_len(forget)
    if n == 0:
        return AscentStats(reason="empty")
    opt = make_optimizer(model, cfg)
    stats = AscentStats()
    done, m = stop.satisfied(model, forget, task)
    stats.history.append(m["loss"])
    cap = m.get("cap")
    last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if not done:
        for idx in batches(n, cfg.batch_size, generator):
            if stats.steps >= cfg.max_steps:
                break
            model.train()
            with autocast(cfg.bf16):
                per = task.per_example_loss(model, take(forget, idx))
                loss = -(per if cap is None else torch.clamp(per, max=cap)).mean()
                if retain is not None and retain_weight > 0 and batch_len(retain) > 0:
                    ridx = torch.randint(0, batch_len(retain), (len(idx),), generator=generator)
                    loss = loss + retain_weight * task.per_example_loss(model, take(retain, ridx)).mean()
            if not torch.isfinite(loss):
                model.load_state_dict(last_good)
                stats.reason = "diverged"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if cfg.clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            if prox is not None:
                prox.step(model, cfg.lr)
            if ball is not None:
                ball.project(model)
            stats.steps += 1
            if stats.steps % cfg.check_every == 0:
                done, m = stop.satisfied(model, forget, task)
                stats.history.append(m["loss"])
                if not math.isfinite(m["loss"]):
                    model.load_state_dict(last_good)
                    stats.reason = "diverged"
                    break
                last_good = {k: v.detach().clone() for k, v in model.state_dict().items()}
                cap = m.get("cap")
                if done:
                    break
    else:
        stats.reason = "criterion"
    if done:
        stats.reason = "criterion"
    m = evaluate(model, forget, task)
    stats.forget_loss, stats.forget_accuracy = m["loss"], m["accuracy"]
    stats.ball_hits = ball.hits if ball is not None else 0
    return stats


def diagonal_fisher(
    model: nn.Module, data: Batch, task: Task, *, max_examples: int = 64, generator: torch.Generator
) -> dict[str, Tensor]:
    """Empirical diagonal Fisher: the mean over up to ``max_examples`` examples of the squared per-example
    gradient of the loss (true labels), per parameter. Empty data gives zeros."""
    fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    n = batch_len(data)
    if n == 0:
        return fisher
    idx = torch.randperm(n, generator=generator)[:max_examples]
    was = model.training
    model.eval()
    for i in idx.tolist():
        model.zero_grad(set_to_none=True)
        loss = task.per_example_loss(model, take(data, slice(i, i + 1))).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        for name, p in model.named_parameters():
            if p.grad is not None:
                fisher[name] += p.grad.detach() ** 2
    model.zero_grad(set_to_none=True)
    model.train(was)
    return {k: v / len(idx) for k, v in fisher.items()}


@torch.no_grad()
def dampen(
    model: nn.Module,
    forget: Mapping[str, Tensor],
    retain: Mapping[str, Tensor],
    *,
    alpha: float,
    lam: float,
    reset: Mapping[str, Tensor] | None = None,
) -> float:
    """Selective synaptic dampening (Foster et al. 2024), in place: every parameter whose forget importance
    exceeds ``alpha`` x its retained importance (both diagonal Fishers, normalised to mean 1) is scaled by
    ``min(1, lam * retain / forget)``, or, with ``reset``, replaced by its value there (e.g. a fresh
    initialisation: a scaled weight keeps its sign and proportions, a reset one keeps nothing). Returns the
    share of parameters changed. Written here: a few tensor operations on Fishers this module already
    computes (no library implements it on them)."""
    scaled = total = 0
    for name, p in model.named_parameters():
        f, r = forget.get(name), retain.get(name)
        if f is None or r is None:
            continue
        hit = f > alpha * r
        if reset is not None and name in reset:
            p.copy_(torch.where(hit, reset[name].to(p.dtype), p))
        else:
            factor = torch.where(hit, (lam * r / f.clamp(min=1e-30)).clamp(max=1.0), torch.ones_like(f))
            p.mul_(factor.to(p.dtype))
        scaled += int(hit.sum())
        total += p.numel()
    return scaled / max(total, 1)


#: a fresh initialisation's seed is the job's plus this (never the lineage's own initialisation)
FRESH_SEED = 104729


@torch.no_grad()
def shrink_perturb(
    params: Mapping[str, Tensor], fresh: Mapping[str, Tensor], share: float
) -> dict[str, Tensor]:
    """``(1 - share) x params + share x fresh`` for every floating tensor ``fresh`` has (Ash & Adams 2020's
    "shrink and perturb" with a fresh initialisation as the perturbation); the rest is copied. Written here:
    one interpolation per tensor."""
    out: dict[str, Tensor] = {}
    for name, p in params.items():
        f = fresh.get(name)
        if f is None or not p.is_floating_point() or f.shape != p.shape:
            out[name] = p.clone()
        else:
            out[name] = torch.lerp(p, f.to(p.dtype), share)
    return out


def normalise_fisher(fisher: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Scale so that the mean over all parameters is 1 (makes lambda portable across models)."""
    total = sum(float(v.sum()) for v in fisher.values())
    count = sum(v.numel() for v in fisher.values())
    mean = total / max(count, 1)
    if mean <= 0 or not math.isfinite(mean):
        return {k: torch.zeros_like(v) for k, v in fisher.items()}
    return {k: v / mean for k, v in fisher.items()}
