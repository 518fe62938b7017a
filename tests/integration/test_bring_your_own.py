"""docs/bring-your-own.md, followed step by step (SQLite and PostgreSQL): a community's own tiny GPT-2 (built
from a config, no download) and one folder of JSONL per member -> `commons model init` into the service's
artifact store (node folders keep their names, a seeded held-out split) -> `commons model train` -> `commons
registry adopt` -> `commons data-source register` (the sha256 of the node's file, checked against the dataset
manifest) -> `commons proposal new` -> triage, vote, council -> the job -> the report -> `commons gate`."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient

from governance.cli import main
from governance.cli.common import ApiContext
from governance.client import CommonsClient
from governance.domain.clock import FixedClock
from governance.jobs.worker import Worker
from governance.services.context import Ctx
from governance.settings import Settings
from tests.conftest import PassTime, Person
from tests.integration.test_ui_pages import error_of, sign_in
from unlearning.data import sha256_file

MEMBERS = {"ann": ["chess", "jazz"], "bob": ["chess", "baking"], "cat": ["jazz", "baking"]}
DATASET = "artifacts/datasets/byo-tiny-gpt2"  # below COMMONS_DATA_DIR: where `commons model init` put it


def make_model_and_data(out: Path) -> None:
    """The doc's first two steps: a tiny GPT-2 from a config with a byte-level tokenizer (no files to
    download), and one folder of JSONL per member."""
    import torch
    from transformers import ByT5Tokenizer, GPT2Config, GPT2LMHeadModel

    tok = ByT5Tokenizer(extra_ids=0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(out / "tiny-gpt2")
    tok.save_pretrained(out / "tiny-gpt2")
    rng = random.Random(0)
    for member, topics in MEMBERS.items():
        (out / "members" / member).mkdir(parents=True)
        for topic in topics:
            lines = [
                json.dumps(
                    {"text": f"{member} on {topic}, note {i}: {rng.randint(1000, 9999)}.", "category": topic}
                )
                for i in range(30)
            ]
            (out / "members" / member / f"{topic}.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`commons model init` and `commons model train` with no --root, under COMMONS_DATA_DIR: they write to
    the service's artifact store (about 10 s)."""
    out = tmp_path_factory.mktemp("byo")
    make_model_and_data(out)
    data_dir = out / "data"
    runner = CliRunner()
    env = {"COMMONS_DATA_DIR": str(data_dir)}
    r = runner.invoke(
        main,
        [
            "model",
            "init",
            "--task",
            str(out / "tiny-gpt2"),
            "--data",
            str(out / "members"),
            "--heldout",
            "0.2",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert "nodes    ann (2), bob (2), cat (2)" in r.output and "held out 36 records" in r.output, r.output
    assert f"COMMONS_DATASET_DIR={data_dir / DATASET}" in r.output
    init_version = r.output.split("version  ")[1].split()[0]
    r = runner.invoke(
        main, ["model", "train", "--rounds", "3", "--local", "steps=5", "--local", "batch_size=8"], env=env
    )
    assert r.exit_code == 0 and "status   succeeded" in r.output, r.output
    version = r.output.split("version ")[1].split()[0]
    assert (data_dir / "artifacts" / "versions" / version / "manifest.json").is_file()
    return {"out": out, "data_dir": data_dir, "init": init_version, "version": version}


def test_the_dataset_keeps_the_members_names_and_holds_records_out(trained: dict[str, Any]) -> None:
    dataset = trained["data_dir"] / DATASET
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert [n["node"] for n in manifest["nodes"]] == sorted(MEMBERS)
    assert {s["name"] for n in manifest["nodes"] for s in n["sources"]} == {
        f"{m}/{t}" for m, topics in MEMBERS.items() for t in topics
    }
    held = [json.loads(line) for line in (dataset / "heldout" / "test.jsonl").read_text().splitlines()]
    assert len(held) == manifest["heldout"]["test"]["records"] == 6 * 6  # 20 % of 30 records, 6 sources
    trained_on = {
        json.loads(line)["text"]
        for f in dataset.glob("*/*.jsonl")
        if f.parent.name != "heldout"
        for line in f.read_text().splitlines()
    }
    assert not trained_on & {r["text"] for r in held}  # held out: no node trains on them
    # of the 24 left per source, every 10th is the node's local validation data (it stays on the node)
    assert all(s["records"] == 22 for n in manifest["nodes"] for s in n["sources"])
    assert all(len((dataset / n / "validation.jsonl").read_text().splitlines()) == 4 for n in MEMBERS)


def api(client: TestClient[Litestar], who: Person) -> ApiContext:
    return ApiContext(CommonsClient(client, who.token))


def test_bring_your_own_model_from_data_to_gate(
    trained: dict[str, Any],
    settings: Settings,
    ctx: Ctx,
    client: TestClient[Litestar],
    community: dict[str, Person],
    pass_time: PassTime,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the service's data directory is the one `commons model` wrote to (a copy per database under test)
    shutil.copytree(trained["data_dir"], settings.data_dir, dirs_exist_ok=True)
    settings.dataset_dir = settings.data_dir / DATASET  # COMMONS_DATASET_DIR
    dataset = settings.dataset_dir
    run, p = CliRunner(), community
    for key, value in {
        "COMMONS_DATA_DIR": str(settings.data_dir),
        "COMMONS_DATASET_DIR": str(dataset),
        "COMMONS_DATABASE_URL": settings.effective_database_url,
        "COMMONS_ENVIRONMENT": "test",
        "COMMONS_SECRET_KEY": settings.secret_key,
    }.items():
        monkeypatch.setenv(key, value)

    # the operator adopts the trained version as the community's base: verified and released
    r = run.invoke(main, ["registry", "adopt", trained["version"]])
    assert r.exit_code == 0 and f"{trained['version']} is released" in r.output, r.output
    clock.set(
        datetime.now(UTC)
    )  # the operator's command ran on the real clock: the service goes on from there

    # bob registers his chess notes: the file his node holds, its sha256 computed by the CLI
    bob = api(client, p["bob"])
    r = run.invoke(main, ["data-source", "register", "chess", str(trained["out"] / "members/bob/chess.jsonl"),
                          "--node", "bob"], obj=bob)  # fmt: skip
    assert r.exit_code == 1 and "matches no data source file" in r.output, (
        r.output
    )  # his original, not the node's
    r = run.invoke(main, ["data-source", "register", "chess", str(dataset / "bob"), "--node", "bob"], obj=bob)
    assert r.exit_code != 0 and "node folder of a dataset" in r.output, r.output
    r = run.invoke(main, ["data-source", "register", "notes", str(dataset / "bob/chess.jsonl"), "--node", "ann"],
                   obj=bob)  # fmt: skip
    assert r.exit_code == 1 and "register it as 'chess' on node 'bob'" in r.output, r.output
    r = run.invoke(main, ["data-source", "register", "chess", str(dataset / "bob/chess.jsonl"), "--node", "bob"],
                   obj=bob)  # fmt: skip
    assert r.exit_code == 0, r.output
    source_id = int(r.output.split("#")[1].split()[0])
    # the web form goes through the same check: cat's original file is refused, the node's file is not
    token = sign_in(client, ctx, p["cat"].id, "cat")
    form = {"name": "jazz", "node_id": "cat", "csrf_token": token}
    original = hashlib.sha256((trained["out"] / "members/cat/jazz.jsonl").read_bytes()).hexdigest()
    r = client.post("/data-sources", data={**form, "content_hash": original})
    assert r.status_code == 422 and "matches no data source file" in (error_of(r.text, "content_hash") or "")
    r = client.post("/data-sources", data={**form, "content_hash": sha256_file(dataset / "cat/jazz.jsonl")})
    assert r.status_code == 200 and "is registered" in r.text

    # bob tables the proposal with its acceptance tests; reviewers, members and the council decide
    r = run.invoke(main, ["proposal", "new", "--title", "Forget my chess notes", "--data-source", str(source_id),
                          "--test", "mia_auc_gap<=0.2", "--test", "retained_utility_drop<=0.2"], obj=bob)  # fmt: skip
    assert r.exit_code == 0 and "is submitted" in r.output, r.output
    pid = r.output.split("#")[1].split()[0]
    detail = client.get(f"/api/v1/proposals/{pid}", headers=p["bob"].auth).json()
    assert "mia_auc_gap" not in detail["unmeasurable_tests"], detail[
        "unmeasurable_tests"
    ]  # the held-out split
    for who in ("rev1", "rev2"):
        r = run.invoke(main, ["proposal", "triage", pid, "approve"], obj=api(client, p[who]))
        assert r.exit_code == 0, r.output
    for who in ("ann", "bob", "cat", "dan", "rev3", "admin"):
        r = run.invoke(main, ["vote", pid, "approve"], obj=api(client, p[who]))
        assert r.exit_code == 0, r.output
    pass_time(days=7, seconds=1)  # the vote closes (COMMONS_VOTING_DAYS)
    for who in ("coun1", "coun2"):
        r = run.invoke(main, ["proposal", "council", pid, "ratify"], obj=api(client, p[who]))
        assert r.exit_code == 0, r.output
    pass_time(days=3, seconds=1)  # the appeal window ends: the job is queued
    (job,) = client.get(f"/api/v1/jobs?proposal_id={pid}", headers=p["bob"].auth).json()
    assert job["spec"]["base_version"] == trained["version"]  # the adopted base
    assert job["spec"]["target"] == {"kind": "data_source", "value": "bob/chess"}

    # the worker (inside `commons serve`, or `commons worker`) runs the federated job and its verification
    assert Worker(client.app.state.ctx, "byo").run_once()
    r = run.invoke(main, ["proposal", "show", pid], obj=bob)
    assert r.exit_code == 0, r.output
    done = client.get(f"/api/v1/jobs/{job['id']}", headers=p["bob"].auth).json()
    assert done["state"] == "succeeded", done["error"]
    version, report = done["model_version"], done["report"]
    assert f"model {version}" in r.output
    mia = next(t for t in report["tests"] if t["metric"] == "mia_auc_gap")
    assert mia["status"] in ("pass", "fail") and mia["measured"] is not None, mia  # the held-out split
    measured = report["metrics"]["mia_auc_gap"]  # forgotten records against the held-out split's
    assert measured["applies"] and set(measured["values"]) == {"original", "candidate", "reference"}, measured

    # the report, and the gate that CI asks: allow (exit 0) exactly when every voted test passed
    r = run.invoke(main, ["registry", "show", version], obj=bob)
    assert r.exit_code == 0 and "verification:" in r.output, r.output
    r = run.invoke(main, ["gate", version, "--token", p["bob"].token], obj=client)
    assert r.exit_code == (0 if report["passed"] else 1), (report["summary"], r.output)
    assert report["passed"], report["summary"]

    # the council releases it; bob's ledger follows his named node's source from the base to the release
    def ledger_answer() -> str:
        r = run.invoke(main, ["data-source", "ledger", str(source_id), "--json"], obj=bob)
        assert r.exit_code == 0, r.output
        return str(json.loads(r.output)["answer"])

    assert ledger_answer() == "yes"  # the released base trained on bob/chess
    r = run.invoke(main, ["registry", "release", version], obj=api(client, p["coun1"]))
    assert r.exit_code == 0 and f"{version} is released" in r.output, r.output
    assert ledger_answer() == "no"  # the released version unlearned it
