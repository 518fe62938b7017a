"""Reference tasks and datasets: offline, seeded, deterministic; targets; byte-level tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from unlearning.data import load_node_data, read_manifest, sha256_file
from unlearning.tasks import Target, Task, make_task
from unlearning.tasks.community_lm import CommunityLMTask, generate_community_corpus
from unlearning.tasks.digits import generate_digits
from unlearning.tasks.lm import IGNORE


def test_community_corpus_is_deterministic_and_hashed(tmp_path: Path) -> None:
    a = generate_community_corpus(tmp_path / "a", nodes=3, seed=7, authors_per_node=4, passages_per_node=6)
    b = generate_community_corpus(tmp_path / "b", nodes=3, seed=7, authors_per_node=4, passages_per_node=6)
    c = generate_community_corpus(tmp_path / "c", nodes=3, seed=8, authors_per_node=4, passages_per_node=6)
    hashes = lambda m: [s["sha256"] for n in m["nodes"] for s in n["sources"]]  # noqa: E731
    assert hashes(a) == hashes(b) != hashes(c)
    for n in a["nodes"]:
        for s in n["sources"]:
            assert sha256_file(tmp_path / "a" / s["file"]) == s["sha256"]
    assert a["categories"] == ["astronomy", "baking", "chess", "cycling", "gardening"]
    names = [s["name"] for n in a["nodes"] for s in n["sources"]]
    assert "node-0/notebook" in names and "node-1/charter" in names
    inserted = [c for c in a["canaries"] if c["inserted"]]
    controls = [c for c in a["canaries"] if not c["inserted"]]
    assert len(inserted) == 8 and len(controls) == 4
    node0 = load_node_data(tmp_path / "a" / "node-0")
    texts = [r["text"] for r in node0.train]
    for can in inserted:
        assert texts.count(can["prefix"] + can["secret"] + ".") == can["repetitions"]
    for can in controls:
        assert not any(can["secret"] in t for t in texts)


def test_digits_partitions_cover_the_pool(tmp_path: Path) -> None:
    for part in ("iid", "dirichlet"):
        m = generate_digits(tmp_path / part, nodes=4, partition=part, seed=1)
        total = sum(s["records"] for n in m["nodes"] for s in n["sources"])
        val = sum(len(load_node_data(tmp_path / part / n["path"]).validation) for n in m["nodes"])
        held = sum(h["records"] for h in m["heldout"].values())
        assert total + val + held == 1797
        assert m["categories"] == [str(i) for i in range(10)]
    with pytest.raises(ValueError, match="partition"):
        generate_digits(tmp_path / "x", partition="zipf")
    assert read_manifest(tmp_path / "iid")["task"] == "digits"


def test_targets_match_records() -> None:
    rec = {"text": "Ann's access code is 123456.", "source": "node-0/notebook", "category": None}
    assert Target("data_source", "node-0/notebook").matches(rec)
    assert not Target("data_source", "node-1/notebook").matches(rec)
    assert Target("category", "7").matches({"category": "7"}) and not Target("category", "7").matches(rec)
    assert Target(
        "behaviour", examples=[{"prompt": "Ann's access code is ", "completion": "123456"}]
    ).matches(rec)
    with pytest.raises(ValueError, match="unknown target kind"):
        Target("person", "x")
    with pytest.raises(ValueError, match="needs a value"):
        Target("category", "")
    with pytest.raises(ValueError, match="completion"):
        Target("behaviour", examples=[{"prompt": "x"}])
    t = Target("behaviour", examples=[{"prompt": "a", "completion": "b"}])
    assert Target.from_json(t.to_json()) == t


def test_byte_tokenizer_and_secret_only_labels() -> None:
    task = CommunityLMTask(CommunityLMTask.default_model_config("tiny"))
    rec = {"text": "Ann's access code is 123456."}
    target = Target("behaviour", examples=[{"prompt": "Ann's access code is ", "completion": "123456"}])
    full = task.to_batch([rec])
    secret = task.to_batch([rec], target, forget=True)
    counted = secret["labels"][secret["labels"] != IGNORE]
    assert counted.tolist() == [b + 3 for b in b"123456"]  # ByT5 ids: byte + 3
    assert int((full["labels"] != IGNORE).sum()) == len(rec["text"]) + 1  # every byte + eos
    model = task.build_model(0)
    assert task.per_example_loss(model, secret).shape == (1,)
    assert sum(p.numel() for p in model.parameters()) < 100_000


def test_default_community_model_is_about_one_million_parameters() -> None:
    task = make_task("community-lm", CommunityLMTask.default_model_config())
    n = sum(p.numel() for p in task.build_model(0).parameters())
    assert 0.8e6 < n < 1.5e6
    with pytest.raises(ValueError, match="unknown task"):
        make_task("imagenet", {})


def test_build_model_is_seeded() -> None:
    task = make_task("digits", {"kind": "mlp", "inputs": 64, "hidden": [8], "classes": 10})
    a, b, c = task.build_model(1), task.build_model(1), task.build_model(2)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))


def _task_and_records(name: str, n: int) -> tuple[Task, list[dict[str, Any]]]:
    """A small model of the task ``name`` (digits or the community LM) and ``n`` records for it."""
    if name == "digits":
        task = make_task("digits", {"kind": "mlp", "inputs": 64, "hidden": [8], "classes": 10})
        return task, [{"x": [float(i % 7)] * 64, "label": i % 10} for i in range(n)]
    task = make_task("community-lm", CommunityLMTask.default_model_config("tiny"))
    return task, [{"text": f"line {i} of the notebook, code {i * 7919}"} for i in range(n)]


@pytest.mark.parametrize("name", ["community-lm", "digits"])
def test_per_example_stats_equal_the_separate_loss_and_accuracy(name: str) -> None:
    task, records = _task_and_records(name, 12)
    model = task.build_model(3).eval()
    batch = task.to_batch(records)
    loss, correct = task.per_example_stats(model, batch)
    with torch.no_grad():
        assert torch.allclose(loss, task.per_example_loss(model, batch))
        assert torch.equal(correct, task.per_example_correct(model, batch))
    assert loss.shape == correct.shape == (12,) and bool((correct >= 0).all() and (correct <= 1).all())


@pytest.mark.parametrize("name", ["community-lm", "digits"])
def test_distillation_kl_is_zero_against_itself_and_positive_against_another_model_with_the_loss(
    name: str,
) -> None:
    task, records = _task_and_records(name, 6)
    batch = task.to_batch(records)
    student, teacher = task.build_model(3).eval(), task.build_model(4).eval()
    loss, kl = task.per_example_distill(student, teacher, batch)
    assert kl.shape == (6,) and bool((kl > 0).all())
    assert torch.allclose(loss, task.per_example_loss(student, batch))  # the same forward pass's loss
    assert torch.allclose(task.per_example_distill(teacher, teacher, batch)[1], torch.zeros(6), atol=1e-5)
    kl.sum().backward()  # the student gets a gradient, the teacher none
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())
