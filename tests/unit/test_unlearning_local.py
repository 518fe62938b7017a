"""Pure torch functions of unlearning.local: proximal EWC, L2 ball, bounded ascent, Fisher."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unlearning import local
from unlearning.tasks.digits import DigitsTask

torch.set_num_threads(1)


def _task_and_data(n: int = 64) -> tuple[DigitsTask, dict[str, torch.Tensor]]:
    task = DigitsTask(DigitsTask.default_model_config("tiny"))
    g = torch.Generator().manual_seed(0)
    return task, {"x": torch.rand(n, 64, generator=g), "y": torch.randint(0, 10, (n,), generator=g)}


def test_proximal_step_is_stable_for_any_lambda() -> None:
    model = nn.Linear(3, 1)
    anchor = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    fisher = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    for lam in (1e-3, 1.0, 1e6, 1e12):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(5.0)
        local.Proximal(anchor, fisher, lam).step(model, lr=0.1)
        for p in model.parameters():
            assert torch.isfinite(p).all()
            assert (p.abs() <= 5.0).all()  # always moves towards the anchor, never past it
    assert all(float(p.detach().abs().max()) < 1e-6 for p in model.parameters())  # huge lambda: at the anchor


def test_l2_ball_projects_onto_the_sphere() -> None:
    model = nn.Linear(4, 2)
    center = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(10.0)
    ball = local.L2Ball(center, radius=1.0)
    ball.project(model)
    assert ball.hits == 1
    assert math.isclose(local.distance(local.parameters_dict(model), center), 1.0, rel_tol=1e-5)


def test_train_reduces_loss() -> None:
    task, data = _task_and_data()
    model = task.build_model(0)
    before = local.evaluate(model, data, task)["loss"]
    cfg = local.LocalConfig(lr=0.1, momentum=0.9, steps=60, batch_size=16)
    local.train(model, data, task, cfg, generator=torch.Generator().manual_seed(0))
    assert local.evaluate(model, data, task)["loss"] < before


def test_gradient_ascent_stops_on_the_criterion() -> None:
    task, data = _task_and_data()
    model = task.build_model(0)
    start = local.evaluate(model, data, task)["loss"]
    stop = local.StopRule(loss_at_least=start + 0.2)
    cfg = local.LocalConfig(lr=0.05, max_steps=500, batch_size=16)
    stats = local.gradient_ascent(model, data, task, cfg, stop, generator=torch.Generator().manual_seed(0))
    assert stats.reason == "criterion"
    assert 0 < stats.steps < 500
    assert stats.forget_loss >= start + 0.2


def test_gradient_ascent_already_satisfied_takes_no_step() -> None:
    task, data = _task_and_data()
    model = task.build_model(0)
    stats = local.gradient_ascent(
        model, data, task, local.LocalConfig(), local.StopRule(loss_at_least=0.0), generator=torch.Generator()
    )
    assert stats.steps == 0 and stats.reason == "criterion"


def test_gradient_ascent_respects_max_steps_and_the_ball() -> None:
    task, data = _task_and_data()
    model = task.build_model(0)
    center = local.parameters_dict(model)
    ball = local.L2Ball(center, radius=0.05)
    cfg = local.LocalConfig(lr=0.5, max_steps=30, batch_size=16)
    stats = local.gradient_ascent(
        model, data, task, cfg, local.StopRule(), generator=torch.Generator(), ball=ball
    )
    assert stats.steps == 30 and stats.reason == "max_steps"
    assert local.distance(local.parameters_dict(model), center) <= 0.05 + 1e-5
    assert stats.ball_hits > 0


def test_a_capped_ascent_raises_each_forget_loss_only_to_the_references_median_and_then_stops() -> None:
    task, data = _task_and_data(96)
    forget = {k: v[:32] for k, v in data.items()}
    reference = {k: v[32:] for k, v in data.items()}  # unseen examples of the same kind
    model = task.build_model(0)
    cfg = local.LocalConfig(lr=0.05, max_steps=2000, batch_size=16, check_every=1)
    stop = local.StopRule(reference=reference, cap_to_reference=True)
    stats = local.gradient_ascent(model, forget, task, cfg, stop, generator=torch.Generator())
    assert stats.reason == "criterion" and 0 < stats.steps < 2000  # no other stop rule: the cap ended it
    loss, _ = local.per_example(model, forget, task)
    ref, _ = local.per_example(model, reference, task)
    assert bool((loss >= ref.median()).all())
    # uncapped, the same ascent under a loss target reached only by pushing far past the references
    plain = task.build_model(0)
    target = float(ref.median()) + 3.0
    local.gradient_ascent(
        plain, forget, task, cfg, local.StopRule(loss_at_least=target), generator=torch.Generator()
    )
    assert float(local.per_example(plain, forget, task)[0].mean()) >= target > float(loss.mean())


def test_an_example_above_the_cap_gets_no_gradient() -> None:
    task, data = _task_and_data(8)
    model = task.build_model(0).eval()
    per = task.per_example_loss(model, data)
    cap = float(per.detach().median())
    torch.clamp(per, max=cap).mean().backward()  # the capped objective, as gradient_ascent builds it
    capped = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    below = per.detach() <= cap  # at the cap itself the clamp still passes the gradient
    task.per_example_loss(model, {k: v[below] for k, v in data.items()}).sum().div(len(per)).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.allclose(capped[n], p.grad, atol=1e-6)


def test_fisher_is_nonnegative_and_normalises_to_mean_one() -> None:
    task, data = _task_and_data(16)
    model = task.build_model(0)
    f = local.diagonal_fisher(model, data, task, max_examples=8, generator=torch.Generator())
    assert set(f) == {n for n, _ in model.named_parameters()}
    assert all((v >= 0).all() for v in f.values())
    norm = local.normalise_fisher(f)
    total = sum(float(v.sum()) for v in norm.values()) / sum(v.numel() for v in norm.values())
    assert math.isclose(total, 1.0, rel_tol=1e-4)
    empty = local.diagonal_fisher(
        model, {k: v[:0] for k, v in data.items()}, task, generator=torch.Generator()
    )
    assert all(float(v.abs().sum()) == 0 for v in empty.values())


def test_local_config_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="unknown local setting"):
        local.LocalConfig.from_dict({"lr": 0.1, "learning_rate": 0.1})
    with pytest.raises(ValueError, match="optimizer"):
        local.LocalConfig.from_dict({"optimizer": "lbfgs"})


def test_auc_stop_rule_and_joint_descent() -> None:
    task, data = _task_and_data()
    model = task.build_model(0)
    cfg = local.LocalConfig(lr=0.1, momentum=0.9, steps=80, batch_size=16)
    local.train(model, data, task, cfg, generator=torch.Generator().manual_seed(0))  # memorise the data
    g = torch.Generator().manual_seed(1)  # non-members: fresh examples
    ref = {"x": torch.rand(32, 64, generator=g), "y": torch.randint(0, 10, (32,), generator=g)}
    rule = local.StopRule(auc_at_most=0.55, reference=ref)
    done, m = rule.satisfied(model, data, task)
    assert not done and m["auc"] > 0.55  # members are separable from the reference
    stats = local.gradient_ascent(
        model,
        data,
        task,
        local.LocalConfig(lr=0.05, max_steps=300, batch_size=16),
        rule,
        generator=torch.Generator().manual_seed(1),
        retain=ref,
        retain_weight=1.0,
    )
    assert stats.reason == "criterion" and stats.steps > 0


def test_dedup_keeps_distinct_examples() -> None:
    from unlearning.federation.node import dedup

    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]])
    out = dedup({"x": x, "y": torch.tensor([0, 0, 1])})
    assert out["x"].tolist() == [[1.0, 2.0], [3.0, 4.0]] and out["y"].tolist() == [0, 1]


def test_guard_costs_nothing_for_forgotten_examples_and_stops_relearning() -> None:
    """The repair guard is zero while every forget example is at least as unfamiliar as the reference, and
    training on data that includes the forget examples re-learns them less with it than without it."""
    task, forget = _task_and_data(32)
    _, reference = _task_and_data(48)
    model = task.build_model(0)
    g = torch.Generator().manual_seed(0)
    high = local.Guard(forget=forget, reference=reference, factor=1e-6)  # cap ~0: nothing is below it
    assert float(high.loss(model, task, 0, 16, g).detach()) == 0.0
    low = local.Guard(forget=forget, reference=reference, factor=100.0)  # cap far above every loss
    assert float(low.loss(model, task, 0, 16, g).detach()) > 0.0

    cfg = local.LocalConfig(lr=0.1, momentum=0.9, steps=80, batch_size=16)
    after = {}
    for weight in (0.0, 3.0):
        model = task.build_model(0)
        guard = local.Guard(forget=forget, reference=reference, weight=weight) if weight else None
        local.train(model, forget, task, cfg, generator=torch.Generator().manual_seed(1), guard=guard)
        after[weight] = local.evaluate(model, forget, task)["loss"]
    assert after[3.0] > after[0.0] + 0.1


def _dampening_case() -> tuple[nn.Linear, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A 2x2 layer of 2.0s, its forget and retained importances (half the weights 5x more forget-important)."""
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    forget = {"weight": torch.tensor([[10.0, 1.0], [40.0, 0.0]])}
    retain = {"weight": torch.tensor([[1.0, 1.0], [2.0, 1.0]])}
    return model, forget, retain


def test_dampening_scales_only_the_weights_far_more_important_to_the_forget_data() -> None:
    model, forget, retain = _dampening_case()
    share = local.dampen(model, forget, retain, alpha=5.0, lam=1.0)
    # 10 > 5 x 1: scaled by 1/10; 40 > 5 x 2: by 2/40; 1 and 0 are not above 5 x their retained importance
    assert torch.allclose(model.weight, torch.tensor([[0.2, 2.0], [0.1, 2.0]]))
    assert share == 0.5
    with torch.no_grad():
        model.weight.fill_(2.0)
    assert local.dampen(model, forget, retain, alpha=5.0, lam=100.0) == 0.5  # lam caps the factor at 1
    assert torch.allclose(model.weight, torch.full((2, 2), 2.0))


def test_dampening_can_reset_the_selected_weights_instead() -> None:
    model, forget, retain = _dampening_case()
    fresh = {"weight": torch.tensor([[-0.3, 9.0], [0.7, 9.0]])}
    assert local.dampen(model, forget, retain, alpha=5.0, lam=1.0, reset=fresh) == 0.5
    assert torch.allclose(model.weight, torch.tensor([[-0.3, 2.0], [0.7, 2.0]]))


def test_shrink_perturb_mixes_in_the_fresh_weights_and_copies_the_rest() -> None:
    params = {"w": torch.tensor([2.0, -4.0]), "steps": torch.tensor([7]), "extra": torch.tensor([1.0])}
    fresh = {"w": torch.tensor([0.0, 4.0]), "steps": torch.tensor([0])}
    out = local.shrink_perturb(params, fresh, 0.25)
    assert torch.allclose(out["w"], torch.tensor([1.5, -2.0]))  # 0.75 x params + 0.25 x fresh
    assert out["steps"].item() == 7 and out["extra"].item() == 1.0  # integers and unmatched: copied
    assert out["w"] is not params["w"] and params["w"][0].item() == 2.0  # the input stays as it was


def test_distillation_moves_the_student_towards_the_teachers_outputs() -> None:
    """distill 1: only KL(teacher || student) counts; the labels are ignored (random here), so the student
    comes closer to the teacher and not to them."""
    task, data = _task_and_data()
    teacher, student = task.build_model(1), task.build_model(2)
    before = float(task.per_example_distill(student, teacher, data)[1].mean())
    cfg = local.LocalConfig(lr=0.1, momentum=0.9, steps=60, batch_size=16)
    local.train(
        student, data, task, cfg, generator=torch.Generator().manual_seed(0), teacher=teacher, distill=1.0
    )
    assert float(task.per_example_distill(student, teacher, data)[1].mean()) < before / 2
    assert not teacher.training  # the teacher is evaluated, never trained
