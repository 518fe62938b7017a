"""The plug-in interface of unlearning methods: a class with a ``name``, a ``Config`` dataclass (settings
are data: unknown keys raise ``ValueError``), registered with :func:`register`, looked up by
:func:`get_method`. A method's ``run`` composes the federated building blocks declared in
:mod:`unlearning.methods.blocks` (``ctx.fed``) and returns the unlearned parameters plus details.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from unlearning.methods.blocks import FederationBlocks, Params
from unlearning.tasks import Target

METHODS: dict[str, type[UnlearningMethod]] = {}

M = TypeVar("M", bound="type[UnlearningMethod]")


def register(cls: M) -> M:
    """Class decorator: make a method available by its ``name``."""
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method name {cls.name!r} is empty or already registered")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, config: Mapping[str, Any] | None = None) -> UnlearningMethod:
    """The method ``name`` configured with ``config``; unknown names or settings raise ValueError."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown unlearning method {name!r}; registered methods: {', '.join(sorted(METHODS))}"
        ) from None
    return cls(config or {})


@dataclass
class MethodContext:
    fed: FederationBlocks
    target: Target
    original: Params  # the pre-unlearning global model
    lineage: dict[str, Any]  # the base version's training section (rounds, local settings, init version)
    load_init: Callable[[], Params]  # the initial (untrained) model of the lineage, for retraining


def with_defaults(name: str, defaults: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` over the ``defaults`` that method ``name`` knows (``ascent`` merged key by key)."""
    cls = METHODS.get(name)
    if cls is None:
        return dict(config)
    known = {f.name for f in dataclasses.fields(cls.Config)}
    merged = {k: v for k, v in defaults.items() if k in known}
    for key, value in config.items():
        if key == "ascent" and isinstance(value, Mapping) and isinstance(merged.get("ascent"), Mapping):
            merged["ascent"] = {**merged["ascent"], **value}
        else:
            merged[key] = value
    return merged


C = TypeVar("C")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a setting's annotation (int for float, never bool for a number)."""
    if hint is Any:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_fits(value, h) for h in typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    if hint is type(None):
        return value is None
    if origin is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin)


def parse_config(cls: type[C], data: Mapping[str, Any], method: str) -> C:
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown setting(s) for method {method}: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if not _fits(value, hints[key]):
            want = getattr(hints[key], "__name__", None) or str(hints[key])
            raise ValueError(f"setting {key!r} of method {method} must be {want} (got {value!r})")
    return cls(**data)


class UnlearningMethod(ABC):
    name: ClassVar[str] = ""
    Config: ClassVar[type[Any]]

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = parse_config(self.Config, config, self.name)
        check = getattr(self.config, "check", None)
        if check is not None:
            check()

    @abstractmethod
    def run(self, ctx: MethodContext) -> tuple[Params, dict[str, Any]]:
        """Unlearn ``ctx.target`` from ``ctx.original``; returns (parameters, details for the job result)."""


# ---- shared settings and steps -------------------------------------------------------------------------


@dataclass
class AscentSettings:
    """Bounded gradient ascent (shared by gradient_ascent, ewc and gradient_ascent_ewc)."""

    ascent: dict[str, Any] = field(
        default_factory=dict
    )  # LocalConfig overrides (lr, max_steps, batch_size, ...)
    # stop rule: "auto" picks by target kind: data_source -> forget loss >= the node's validation loss of the
    # original model; category -> forget accuracy <= category_accuracy (classifiers) or loss >= 1.5x
    # validation (LMs); behaviour -> every digit secret's exposure z-score >= exposure_z (else validation loss)
    stop: str = "auto"  # "auto" | "validation-loss" | "accuracy" | "auc" | "exposure" | "none"
    auc: float = 0.55  # "auc": stop when local MIA AUC (forget vs local validation losses) <= this
    retain_weight: float = 0.0  # > 0: joint descent on the node's retained data during ascent (GradDiff)
    dedup: bool = False  # ascend on each distinct forget example once (repeats otherwise dominate batches)
    stop_loss_factor: float = 1.0  # multiplies the validation loss threshold
    category_accuracy: float = 0.02
    exposure_z: float = -1.0
    reference: str = "halimi"  # L2-ball centre: "halimi" (others' average), "original", or "none"
    ball_radius: float | None = None  # absolute radius; default: ball_radius_ratio * ||ref - random init||
    ball_radius_ratio: float = 1.0 / 3.0
    max_rounds: int = 5  # ascent rounds when several nodes hold forget data
    # data_source targets on language models: secret-like spans (first match per line of this regex; "" turns
    # it off; all-digit matches) get their own ascent on their tokens only, stopped when every one's exposure
    # z-score against random candidates is >= exposure_z
    secrets: str = ""
    # what "validation" means for the validation-loss and AUC stop rules of data_source targets: the node's
    # whole validation set, or its examples of the same kind(s) as the forget examples (records' "kind")
    stop_reference: str = "validation"  # "validation" | "same-kind"

    def check(self) -> None:
        if self.stop not in ("auto", "validation-loss", "accuracy", "auc", "exposure", "none"):
            raise ValueError(f"unknown stop rule {self.stop!r}")
        if self.reference not in ("halimi", "original", "none"):
            raise ValueError(f"unknown reference {self.reference!r}; expected halimi, original or none")
        if self.max_rounds < 1:
            raise ValueError("max_rounds must be >= 1")
        if self.stop_reference not in ("validation", "same-kind"):
            raise ValueError(
                f"unknown stop_reference {self.stop_reference!r}; expected validation or same-kind"
            )
        if self.secrets:
            try:
                re.compile(self.secrets)
            except re.error as exc:
                raise ValueError(f"secrets is not a valid regular expression: {exc}") from None


def stop_settings(s: AscentSettings, target: Target, is_classifier: bool) -> dict[str, Any]:
    """The stop rule as message config keys (see unlearning.federation.node.unlearn)."""
    rule = s.stop
    if rule == "auto":
        rule = {
            "data_source": "validation-loss",
            "category": "accuracy" if is_classifier else "validation-loss",
            "behaviour": "exposure",
        }[target.kind]
    factor = s.stop_loss_factor
    if s.stop == "auto" and target.kind == "category" and not is_classifier:
        factor = 1.5 * s.stop_loss_factor
    if rule == "validation-loss":
        return {"stop-loss": "validation", "stop-loss-factor": factor}
    if rule == "accuracy":
        return {"stop-accuracy": s.category_accuracy}
    if rule == "auc":
        return {"stop-auc": s.auc}
    if rule == "exposure":
        return {"stop-exposure-z": s.exposure_z, "stop-loss": "validation", "stop-loss-factor": factor}
    return {}


def bounded_ascent(
    ctx: MethodContext,
    s: AscentSettings,
    *,
    anchor: Params | None = None,
    fisher: Params | None = None,
    lam: float = 0.0,
) -> tuple[Params, dict[str, Any]]:
    """Reference + L2 ball, then federated ascent with the stop rule (and optional EWC prox)."""
    from unlearning import local

    fed = ctx.fed
    center: Params | None = None
    radius = math.inf
    details: dict[str, Any] = {}
    if s.reference != "none":
        if s.reference == "halimi" and ctx.target.kind == "data_source":
            center = fed.halimi_reference(ctx.original, ctx.target, dict(ctx.lineage.get("local", {})))
        else:
            center = ctx.original
        if s.ball_radius is not None:
            radius = float(s.ball_radius)
        else:
            rand = local.parameters_dict(fed.task.build_model(fed.seed + 7919))
            radius = s.ball_radius_ratio * local.distance(center, rand)
        details["ball-radius"] = radius
    is_classifier = fed.task.is_classifier
    arrays, summary = fed.ascent(
        ctx.original,
        ctx.target,
        s.ascent,
        {
            **stop_settings(s, ctx.target, bool(is_classifier)),
            "retain-weight": s.retain_weight,
            "dedup": s.dedup,
            "secret-pattern": s.secrets,
            "stop-reference": s.stop_reference,
            "secret-exposure-z": s.exposure_z,
        },
        max_rounds=s.max_rounds,
        ball_center=center,
        ball_radius=radius,
        anchor=anchor,
        fisher=fisher,
        lam=lam,
    )
    details.update(summary)
    details["moved"] = local.distance(arrays, ctx.original)
    return arrays, details
