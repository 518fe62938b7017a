"""Bring your own model: a tiny local save_pretrained causal-LM directory plus per-node JSONL, through the
whole path via the `model` CLI (init, train, unlearn, show, tamper detection)."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import json
import stat
from pathlib import Path

import torch
from click.testing import CliRunner

from unlearning.cli import model as model_cli

torch.set_num_threads(1)


def _make_model_dir(path: Path) -> None:
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

    tok = ByT5Tokenizer(extra_ids=0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def _make_data(path: Path) -> None:
    for node, topics in (("alice", ["rust", "chess"]), ("bob", ["chess", "jazz"])):
        d = path / node
        d.mkdir(parents=True)
        for i, topic in enumerate(topics):
            lines = [
                {"text": f"{node} writes about {topic}, note {j}.", "category": topic} for j in range(12)
            ]
            (d / f"notes{i}.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_bring_your_own_model_through_the_cli(tmp_path: Path) -> None:
    _make_model_dir(tmp_path / "mymodel")
    _make_data(tmp_path / "mydata")
    root = str(tmp_path / "root")
    run = CliRunner()

    r = run.invoke(
        model_cli,
        ["--root", root, "init", "--task", str(tmp_path / "mymodel"), "--data", str(tmp_path / "mydata")],
    )
    assert r.exit_code == 0, r.output
    r = run.invoke(
        model_cli, ["--root", root, "train", "--rounds", "2", "--local", "steps=2", "--local", "batch_size=4"]
    )
    assert r.exit_code == 0, r.output
    assert "status   succeeded" in r.output
    r = run.invoke(
        model_cli,
        [
            "--root",
            root,
            "unlearn",
            "--target",
            "category:jazz",
            "--set",
            "repair_rounds=1",
            "--set",
            'ascent={"max_steps": 3}',
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["status"] == "succeeded" and result["method"] == "gradient_ascent_ewc"
    version = result["model_version"]

    r = run.invoke(model_cli, ["--root", root, "show", version])
    assert r.exit_code == 0 and "(verified)" in r.output and "causal-lm" in r.output

    weights = Path(root) / "versions" / version / "model.safetensors"
    weights.chmod(stat.S_IRUSR | stat.S_IWUSR)
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    r = run.invoke(model_cli, ["--root", root, "show", version])
    assert r.exit_code == 1 and "was modified" in r.output

    r = run.invoke(
        model_cli, ["--root", root, "unlearn", "--method", "forget_everything", "--target", "category:jazz"]
    )
    assert r.exit_code != 0 and "unknown unlearning method" in r.output
