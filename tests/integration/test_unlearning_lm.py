"""The community LM end to end (tiny sizes): train, data-source unlearning, secret (behaviour) unlearning."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from pathlib import Path
from typing import Any

import pytest
import torch

from unlearning import ArtifactStore, JobResult, JobSpec, Target, init_dataset, init_model, run_job
from unlearning.data import read_manifest
from unlearning.local import FRESH_SEED
from unlearning.metrics import canary_exposure
from unlearning.tasks import make_task

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, JobResult]:
    base = tmp_path_factory.mktemp("lm")
    init_dataset(
        "community-lm",
        base / "data",
        nodes=3,
        seed=1,
        authors_per_node=4,
        passages_per_node=8,
        notebook_authors=2,
        canary_repetitions=(8, 8),
    )
    v0 = init_model(base / "art", "community-lm", size="tiny")
    spec = JobSpec(
        kind="train",
        job_id="lm-train",
        artifact_root=str(base / "art"),
        dataset_dir=str(base / "data"),
        base_version=v0.version,
        rounds=3,
        local={"steps": 6},
    )
    r = run_job(spec)
    assert r.status == "succeeded", r.error
    return base / "art", base / "data", r


#: method settings whose ascent stops before its first step (no secret phase; the validation-loss stop is
#: met at once): only what the job does besides the ascent moves the model
NO_ASCENT: dict[str, Any] = {"secrets": "", "stop": "validation-loss", "stop_loss_factor": 0.01}


def _unlearn(lm: tuple[Path, Path, JobResult], job_id: str, target: Target, **kw: Any) -> JobResult:
    """Run an unlearning job on the trained tiny LM; it must succeed."""
    art, data, trained = lm
    spec = JobSpec(
        kind="unlearn",
        job_id=job_id,
        artifact_root=str(art),
        dataset_dir=str(data),
        base_version=str(trained.model_version),
        target=target,
        **kw,
    )
    r = run_job(spec)
    assert r.status == "succeeded", r.error
    return r


def _before_after(
    art: Path, trained: JobResult, r: JobResult
) -> tuple[Any, torch.nn.Module, torch.nn.Module]:
    """The task and the models before and after the job ``r``."""
    store = ArtifactStore(art)
    before_v, after_v = store.get(str(trained.model_version)), store.get(str(r.model_version))
    task = make_task(before_v.task, before_v.model_config)
    return task, before_v.load_into(task.build_model(0)), after_v.load_into(task.build_model(0))


def test_data_source_unlearning(lm: tuple[Path, Path, JobResult]) -> None:
    art, _, _ = lm
    r = _unlearn(
        lm,
        "lm-ds",
        Target("data_source", "node-0/notebook"),
        method_config={"repair_rounds": 1, "ascent": {"max_steps": 20}},
    )
    assert r.metrics["before"]["nodes"]["0"]["num-forget"] > 0
    assert "forget-loss" not in r.metrics["after"]["nodes"]["1"]  # only node 0 holds the source
    v = ArtifactStore(art).get(str(r.model_version))
    assert (v.path / "tokenizer_config.json").is_file()


def test_secret_unlearning_raises_the_secrets_loss(lm: tuple[Path, Path, JobResult]) -> None:
    art, data, trained = lm
    canary = next(c for c in read_manifest(data)["canaries"] if c["inserted"])
    target = Target("behaviour", examples=[{"prompt": canary["prefix"], "completion": canary["secret"]}])
    r = _unlearn(
        lm,
        "lm-secret",
        target,
        method="gradient_ascent",
        method_config={"ascent": {"max_steps": 15, "lr": 3e-3}, "exposure_z": 5.0},
    )
    assert r.metrics["method"]["holders"] == 1.0  # node 0 holds the canary lines
    task, m0, m1 = _before_after(art, trained, r)
    _, z0 = canary_exposure(m0, task, canary["prefix"], canary["secret"], candidates=50)
    _, z1 = canary_exposure(m1, task, canary["prefix"], canary["secret"], candidates=50)
    assert r.metrics["method"]["ascent-steps"] > 0
    assert z1 > z0  # the secret became less likely relative to random candidates


def test_data_source_unlearning_gives_secret_like_spans_their_own_phase(
    lm: tuple[Path, Path, JobResult],
) -> None:
    """With ``secrets`` set, the source's digit codes are ascended on their tokens only (stopped on exposure)
    and the source's other lines as usual: both canaries become less likely than before."""
    art, data, trained = lm
    canaries = [c for c in read_manifest(data)["canaries"] if c["inserted"]]
    r = _unlearn(
        lm,
        "lm-ds-secrets",
        Target("data_source", "node-0/notebook"),
        method="gradient_ascent",
        method_config={
            "secrets": r"\d{5,}",
            "exposure_z": 5.0,  # out of reach: the phase runs to its step cap
            "stop_reference": "same-kind",
            "ascent": {"max_steps": 12, "lr": 3e-3},
        },
    )
    method = r.metrics["method"]
    assert method["secret-spans"] == len(canaries) == 2
    assert method["secret-steps"] == 12  # the secret phase ran to its cap (exposure_z 5 is never met)
    assert method["num-examples"] > 0  # the notebook's other lines were ascended on too
    task, m0, m1 = _before_after(art, trained, r)
    for c in canaries:
        _, z0 = canary_exposure(m0, task, c["prefix"], c["secret"], candidates=50)
        _, z1 = canary_exposure(m1, task, c["prefix"], c["secret"], candidates=50)
        assert z1 > z0


def test_dampening_scales_the_weights_that_serve_only_the_forgotten_source(
    lm: tuple[Path, Path, JobResult],
) -> None:
    """``dampen_alpha``: the holder scales down, before its ascent, the weights far more important to its
    forget data than to the retained data; with no ascent step to speak of and no repair, the job's model
    is the original with exactly those weights shrunk towards zero."""
    art, _, trained = lm
    r = _unlearn(
        lm,
        "lm-ds-dampen",
        Target("data_source", "node-0/notebook"),
        method_config={
            "dampen_alpha": 10,
            "dampen_mode": "scale",
            "repair_rounds": 0,
            "ascent": {"max_steps": 1, "lr": 1e-12},
        },
    )
    share = r.metrics["method"]["dampened"]
    assert 0 < share < 0.2
    _, m0, m1 = _before_after(art, trained, r)
    before, after = dict(m0.named_parameters()), dict(m1.named_parameters())
    shrunk = sum(int((after[n].abs() < before[n].abs() - 1e-9).sum()) for n in before)
    total = sum(p.numel() for p in before.values())
    assert shrunk > 0 and abs(shrunk / total - share) < 0.01
    for n, b in before.items():  # every other weight is where it was; none grew, none changed sign
        a = after[n]
        kept = a.abs() >= b.abs() - 1e-9
        assert torch.allclose(a[kept], b[kept], atol=1e-6), n
        assert bool((a * b >= 0).all()), n
    # without an ascent Fisher (EWC off) the retained Fisher is computed for the dampening alone
    plain = _unlearn(
        lm,
        "lm-ds-dampen-no-ewc",
        Target("data_source", "node-0/notebook"),
        method_config={
            "dampen_alpha": 10,
            "dampen_mode": "scale",
            "ascent_fisher": "none",
            "repair_rounds": 0,
            "ascent": {"max_steps": 1, "lr": 1e-12},
        },
    )
    assert plain.metrics["method"]["dampened"] == share
    # reset instead of scaled, inside a small L2 ball: the reset weights move the model far, the ball holds
    bounded = _unlearn(
        lm,
        "lm-ds-reset-ball",
        Target("data_source", "node-0/notebook"),
        method_config={
            "dampen_alpha": 10,
            "dampen_mode": "reset",
            "ball_radius": 0.01,
            "repair_rounds": 0,
            **NO_ASCENT,  # only the dampening moves the model
        },
    )
    assert bounded.metrics["method"]["ascent-steps"] == 0
    assert bounded.metrics["method"]["dampened"] > 0
    assert 0.0099 <= bounded.metrics["method"]["moved"] <= 0.01 + 1e-5


def test_secret_and_reference_settings_are_checked() -> None:
    from unlearning.methods import get_method

    with pytest.raises(ValueError, match="regular expression"):
        get_method("gradient_ascent", {"secrets": "(unclosed"})
    with pytest.raises(ValueError, match="stop_reference"):
        get_method("gradient_ascent_ewc", {"stop_reference": "everything"})


def test_repair_noise_starts_the_repair_from_the_model_mixed_with_a_fresh_initialisation(
    lm: tuple[Path, Path, JobResult],
) -> None:
    """``repair_noise``: the repair rounds start from (1 - share) x the unlearned model + share x a fresh
    initialisation (not the lineage's own); with no ascent step and a repair that cannot move, the job's
    model is exactly that mixture of the original."""
    art, _, trained = lm
    r = _unlearn(
        lm,
        "lm-ds-noise",
        Target("data_source", "node-0/notebook"),
        method_config={
            "repair_noise": 0.5,
            "repair_rounds": 1,
            "repair_fisher": "none",
            "repair_local": {"optimizer": "sgd", "lr": 1e-12, "steps": 1},
            **NO_ASCENT,
        },
    )
    assert r.metrics["method"]["ascent-steps"] == 0 and r.metrics["method"]["repair-noise"] == 0.5
    task, m0, m1 = _before_after(art, trained, r)
    fresh = dict(task.build_model(FRESH_SEED).named_parameters())  # the job's seed is 0
    after = dict(m1.named_parameters())
    with torch.no_grad():
        for name, before in m0.named_parameters():
            assert torch.allclose(after[name], (before + fresh[name]) / 2, atol=1e-5), name
        assert sum(float((after[n] - p).abs().sum()) for n, p in m0.named_parameters()) > 1.0


def test_repair_distill_learns_the_unlearned_models_outputs_instead_of_the_labels(
    lm: tuple[Path, Path, JobResult],
) -> None:
    """``repair_distill`` 1: the repair's loss is the KL to the unlearned model's outputs alone. With no
    ascent step the unlearned model is the original, so the repair has nothing to learn and leaves the
    model where it was; the same repair on the labels moves it. (Plain SGD: Adam would turn the rounding
    noise of a zero gradient into full-size steps.)"""
    art, _, trained = lm
    common = {
        "repair_rounds": 1,
        "repair_local": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "steps": 3},
        "repair_fisher": "none",
        "repair_guard": 0,
        **NO_ASCENT,
    }
    target = Target("data_source", "node-0/notebook")
    distilled = _unlearn(lm, "lm-ds-distill", target, method_config={**common, "repair_distill": 1.0})
    labels = _unlearn(lm, "lm-ds-labels", target, method_config=common)
    assert distilled.metrics["method"]["repair-distill"] == 1.0
    _, m0, m_distilled = _before_after(art, trained, distilled)
    _, _, m_labels = _before_after(art, trained, labels)
    with torch.no_grad():
        before = dict(m0.named_parameters())
        assert all(torch.allclose(p, before[n], atol=1e-5) for n, p in m_distilled.named_parameters())
        assert not all(torch.allclose(p, before[n], atol=1e-4) for n, p in m_labels.named_parameters())
