"""Issue 19, bring your own: a secret that a member's data holds 8 times, declared by its owner on the node
(``protected.txt``) and listed nowhere else (no canary in the manifest), is checked like a canary: the original
model extracts it and fails ``extraction_rate``, a model retrained without the data source does not and passes
(a digit secret is also ranked by its exposure); the string never reaches the verifier (only counts and scores cross), and a node that checks another list than
the one its owner committed to at registration makes the metric unmeasured."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from flwr.app import Message
from flwr.common.serde import message_to_proto

from tests.integration.test_verification import node_grid, published_only
from unlearning import JobSpec, Target, init_dataset, init_model, run_job
from unlearning.federation import protocol as P
from unlearning.verification import VerificationReport, VerifySpec, render_html, verify
from unlearning.verification.protected import PROTECTED_FILE, commitment_of_file

torch.set_num_threads(1)

PREFIX, SECRET = "Thafen's vault phrase is ", "falcon 2291"
PIN_PREFIX, PIN = "Thafen's bank pin is ", "480213"  # a digit secret: exposure applies to it
ABSENT = "moonlit-otter-7730"  # declared, but in no record of the data source: not checked
SOURCE = Target("data_source", "node-0/notebook")
TESTS = [{"metric": "extraction_rate", "comparator": "<=", "threshold": 0.0}]


@dataclass
class SecretLM:
    data: Path
    art: Path
    original: str
    retrained: str


def _job(art: Path, data: Path, base: str, job_id: str, **kw: object) -> str:
    r = run_job(
        JobSpec(artifact_root=str(art), dataset_dir=str(data), base_version=base, job_id=job_id, **kw)
    )  # type: ignore[arg-type]
    assert r.status == "succeeded" and r.model_version is not None, r.error
    return r.model_version


@pytest.fixture(scope="module")
def secret_lm(tmp_path_factory: pytest.TempPathFactory) -> SecretLM:
    """One node whose notebook repeats a vault phrase and a bank pin 8 times each (plain notes, no canary:
    the manifest lists none), the owner's protected.txt beside it; the tiny LM trained on it, and retrained without the
    notebook (about 20 s in all on a free core)."""
    base = tmp_path_factory.mktemp("protected")
    data, art = base / "data", base / "art"
    init_dataset(
        "community-lm",
        data,
        nodes=1,
        seed=1,
        authors_per_node=1,
        passages_per_node=2,
        notebook_authors=1,
        canary_repetitions=(),
        controls=0,
    )
    notebook = data / "node-0" / "notebook.jsonl"
    note = {"kind": "note", "source": SOURCE.value, "text": f"{PREFIX}{SECRET}."}
    with notebook.open("a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(note) + "\n" for _ in range(8))
        pin = {"kind": "note", "source": SOURCE.value, "text": f"{PIN_PREFIX}{PIN}."}
        fh.writelines(json.dumps(pin) + "\n" for _ in range(8))
    manifest = json.loads((data / "manifest.json").read_text())
    for s in manifest["nodes"][0]["sources"]:
        if s["name"] == SOURCE.value:
            s["sha256"] = hashlib.sha256(notebook.read_bytes()).hexdigest()
            s["records"] += 16
    assert not manifest.get("canaries")
    (data / "manifest.json").write_text(json.dumps(manifest))
    (data / "node-0" / PROTECTED_FILE).write_text(f"# my vault phrase\n{SECRET}\n{ABSENT}\n{PIN}\n")
    v0 = init_model(art, "community-lm", size="tiny")
    original = _job(art, data, v0.version, "t", kind="train", rounds=1, local={"steps": 60, "lr": 0.01})
    retrained = _job(  # fewer steps than the original: it never sees the secret whatever its budget
        art,
        data,
        original,
        "r",
        kind="unlearn",
        target=SOURCE,
        method="retrain",
        method_config={"local": {"steps": 20}},
    )
    return SecretLM(data, art, original, retrained)


def _spec(s: SecretLM, candidate: str, **kw: object) -> VerifySpec:
    return VerifySpec(
        artifact_root=str(s.art),
        dataset_dir=str(s.data),
        candidate_version=candidate,
        original_version=s.original,
        reference_version=s.retrained,
        target=SOURCE.to_dict(),
        tests=TESTS,
        metrics=["sampled_extraction_rate", "canary_exposure", "canary_exposure_pvalue"],
        extraction_samples=8,
        exposure_candidates=100,
        **kw,  # type: ignore[arg-type]
    )


def test_a_protected_string_the_data_repeats_is_extracted_from_the_original_only(secret_lm: SecretLM) -> None:
    original = verify(_spec(secret_lm, secret_lm.original))
    retrained = verify(_spec(secret_lm, secret_lm.retrained))
    ext = original.metrics["extraction_rate"]
    assert ext.applies and ext.details["attempts"] == 2  # the phrase and the pin; no canary anywhere
    assert ext.value == 1.0 and ext.values["reference"] == 0.0  # the retrained reference is beside it
    assert ext.details["protected_strings"] == {"checked": 2, "where": {"node-0": 2}}  # not the absent one
    assert ext.details["computed_at"] == ["nodes: node-0"]
    assert not original.passed and original.tests[0].status == "fail"
    assert retrained.passed and retrained.metrics["extraction_rate"].value == 0.0, retrained.summary
    sampled = original.metrics["sampled_extraction_rate"]  # best-of-N sampling on the node as well
    assert sampled.applies and sampled.details["attempts"] == 2 and sampled.values["reference"] == 0.0
    assert (sampled.value or 0.0) > 0.0 and retrained.metrics["sampled_extraction_rate"].value == 0.0
    assert sampled.details["protected_strings"]["checked"] == 2
    page = render_html(original)  # the report page says how many were checked, and where
    assert "protected strings checked: 2 (node-0: 2)" in page and SECRET not in page and PIN not in page

    exposure = original.metrics["canary_exposure"]  # the pin only: "falcon 2291" has no digit alternatives
    [pin] = exposure.details["canaries"]
    assert pin["protected"] and pin["repetitions"] == 8 and "prefix" not in pin
    assert (exposure.value or 0.0) > (exposure.values["reference"] or 0.0) + 2.0, exposure.values
    assert retrained.metrics["canary_exposure"].value == exposure.values["reference"]
    pvalue = original.metrics["canary_exposure_pvalue"]  # the original ranks the pin first: far from chance
    assert (pvalue.value or 1.0) < 0.05 <= (retrained.metrics["canary_exposure_pvalue"].value or 0.0)


def _wire(seen: list[tuple[str, Message]]) -> list[bytes]:
    return [message_to_proto(m).SerializeToString() for _, m in seen]


def test_no_protected_string_crosses_to_the_verifier_and_the_commitment_is_checked(
    secret_lm: SecretLM, tmp_path: Path
) -> None:
    published = published_only(secret_lm.data, tmp_path / "published")
    assert not (published / "node-0").exists()
    seen: list[tuple[str, Message]] = []
    spec = replace(_spec(secret_lm, secret_lm.original), dataset_dir=str(published), metrics=[])
    report = verify(spec, grid=node_grid(secret_lm.data, seen))
    assert report.metrics["extraction_rate"].value == 1.0 and not report.passed
    needles = [s.encode() for s in (SECRET, ABSENT, PREFIX, PIN, PIN_PREFIX)]
    wires = _wire(seen)
    assert {P.PROBE, P.SCORE} <= {m.metadata.message_type for _, m in seen}  # the node did the work
    assert wires and not [n for n in needles for w in wires if n in w]  # not in any message, either way
    kept = report.to_json() + spec.to_json()  # what the service stores
    assert all(s not in kept for s in (SECRET, ABSENT, PREFIX, PIN, PIN_PREFIX))

    # the commitment the owner registered (computed beside the file, its salt created there) agrees
    registered = commitment_of_file(secret_lm.data / "node-0" / PROTECTED_FILE, create_salt=True)
    assert registered["count"] == 3 and len(registered["sha256"]) == 64
    agreed = verify(replace(spec, protected_commitment=registered), grid=node_grid(secret_lm.data))
    assert agreed.metrics["extraction_rate"].value == 1.0

    # a node that dropped a string (or whose list changed) checks another list: unmeasured, and it blocks
    dropped = verify(
        replace(spec, protected_commitment={**registered, "count": 4}), grid=node_grid(secret_lm.data)
    )
    m = dropped.metrics["extraction_rate"]
    assert m.applies and m.value is None and "node-0 checked 3 protected string(s)" in (m.reason or "")
    assert [t.status for t in dropped.tests] == ["unmeasured"] and not dropped.passed
    assert isinstance(dropped, VerificationReport)
