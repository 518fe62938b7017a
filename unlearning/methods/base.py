"""The plug-in interface of unlearning methods: a class with a ``name`` and a ``Config`` dataclass, registered
with :func:`register`, looked up by :func:`get_method`. The method's name, description and settings' schema
(the ``Config`` dataclass: types, defaults, bounds) are declared in :mod:`unlearning.contract` first
(``register_method_spec``), so the service knows and validates them without importing torch; settings are
data and unknown keys, wrong types or values out of bounds raise ``ValueError``.

A method's ``run`` composes the federated building blocks declared in :mod:`unlearning.methods.blocks`
(``ctx.fed``) and returns the unlearned parameters plus details.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from unlearning.contract import AscentSettings, method_spec, parse_method_settings
from unlearning.methods.blocks import FederationBlocks, Params
from unlearning.tasks import Target

METHODS: dict[str, type[UnlearningMethod]] = {}

M = TypeVar("M", bound="type[UnlearningMethod]")


def register(cls: M) -> M:
    """Class decorator: make a method available by its ``name`` (declared in :mod:`unlearning.contract`, whose
    settings dataclass becomes the class's ``Config``)."""
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method name {cls.name!r} is empty or already registered")
    settings = method_spec(cls.name).settings
    if getattr(cls, "Config", settings) is not settings:
        raise ValueError(
            f"method {cls.name}: Config must be the settings class of its spec in unlearning.contract"
        )
    cls.Config = settings
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
    departed: dict[int, str] = field(default_factory=dict)  # nodes left out by design: partition -> name
    artifact_root: str = ""  # the artifact store (the lineage's update history, for federaser)


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


class UnlearningMethod(ABC):
    name: ClassVar[str] = ""
    Config: ClassVar[type[Any]]
    # True: the method runs without the node that holds a data-source target (it is left out of the job)
    without_owner: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = parse_method_settings(self.name, config)

    @abstractmethod
    def run(self, ctx: MethodContext) -> tuple[Params, dict[str, Any]]:
        """Unlearn ``ctx.target`` from ``ctx.original``; returns (parameters, details for the job result)."""


# ---- shared settings and steps -------------------------------------------------------------------------


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
    if rule == "heldout":  # the node's own held-out examples of the forget examples' kind, current model
        return {"stop-auc": s.heldout_auc, "stop-reference": "same-kind"}
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
    node_settings: Mapping[str, Any] | None = None,
) -> tuple[Params, dict[str, Any]]:
    """Reference + L2 ball, then federated ascent with the stop rule (and optional EWC prox);
    ``node_settings``: more message config keys for the holders (e.g. the dampening)."""
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
            "retain-weight": s.retain_weight,
            "dedup": s.dedup,
            "forget-cap": s.forget_cap,
            "secret-lines": s.secret_lines,
            "secret-pattern": s.secrets,
            "stop-reference": s.stop_reference,
            "secret-exposure-z": s.exposure_z,
            **stop_settings(s, ctx.target, bool(is_classifier)),  # after: the rule may set stop-reference
            **(node_settings or {}),
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
