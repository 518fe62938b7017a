"""verify() end to end on small federated jobs: digits (class unlearning with a retrained reference, a
randomised "broken" model, the regression suite) and the community LM (data-source unlearning, canaries);
and the same verifications with the verifying process seeing only the published dataset (manifest and
held-out split) while the nodes read their own directories, with every message inspected."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pytest
import torch
from flwr.app import Message
from flwr.common.serde import message_to_proto

from unlearning import ArtifactStore, JobResult, JobSpec, Target, init_dataset, init_model, run_job
from unlearning.contract import TARGET_KINDS, default_acceptance_tests
from unlearning.data import load_node_data, node_dirs, read_manifest
from unlearning.federation import protocol as P
from unlearning.federation.apps import build_client_app
from unlearning.federation.local_grid import LocalGrid
from unlearning.tasks import make_task
from unlearning.verification import RegressionCheck, VerificationReport, VerifyProgress, VerifySpec, verify
from unlearning.verification.catalog import CATALOG
from unlearning.verification.shifts import SHIFTS
from unlearning.verification.spec import evaluate_tests, policy_passes

torch.set_num_threads(1)

CATEGORY_TESTS = [
    {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.05},
    {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.05},
    {"metric": "worst_node_utility_drop", "comparator": "<=", "threshold": 0.1},
]
#: a test that cannot be measured on digits (a classifier has no canaries): voted, it blocks
UNMEASURABLE_ON_DIGITS = {"metric": "canary_exposure", "comparator": "<=", "threshold": 3.0}


@dataclass
class Digits:
    root: Path
    data: Path
    trained: str
    unlearned: JobResult
    reference: JobResult
    target: Target


def _job(root: Path, data: Path, base: str, job_id: str, **kw: object) -> JobResult:
    r = run_job(
        JobSpec(artifact_root=str(root), dataset_dir=str(data), base_version=base, job_id=job_id, **kw)
    )  # type: ignore[arg-type]
    assert r.status == "succeeded", r.error
    return r


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    base = tmp_path_factory.mktemp("vdigits")
    init_dataset("digits", base / "data", nodes=3, seed=0)
    v0 = init_model(base / "art", "digits", size="tiny", seed=0)
    trained = _job(
        base / "art", base / "data", v0.version, "train", kind="train", rounds=4, local={"epochs": 1.0}
    )
    assert trained.model_version is not None
    target = Target("category", "7")
    unl = _job(base / "art", base / "data", trained.model_version, "unlearn-7", kind="unlearn", target=target)
    ref = _job(
        base / "art",
        base / "data",
        trained.model_version,
        "retrain-7",
        kind="unlearn",
        target=target,
        method="retrain",
    )
    return Digits(base / "art", base / "data", trained.model_version, unl, ref, target)


def _spec(d: Digits, candidate: str, **kw: object) -> VerifySpec:
    return VerifySpec(
        artifact_root=str(d.root),
        dataset_dir=str(d.data),
        candidate_version=candidate,
        tests=CATEGORY_TESTS,
        target=json.loads(d.target.to_json()),
        reference_version=d.reference.model_version,
        job_cost=d.unlearned.to_dict()["cost"],
        reference_cost=d.reference.to_dict()["cost"],
        **kw,  # type: ignore[arg-type]
    )


def published_only(data: Path, out: Path) -> Path:
    """What the operator publishes of a dataset: the manifest (without the canaries inserted in members'
    data: only the never-inserted controls) and the held-out split; no node directory."""
    out.mkdir(parents=True)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["canaries"] = [c for c in manifest.get("canaries", []) if not c.get("inserted")]
    (out / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(data / "heldout", out / "heldout")
    return out


def node_grid(data: Path, seen: list[tuple[str, Message]] | None = None) -> LocalGrid:
    """The nodes, each reading its own directory (``data-path``), as SuperNodes on members' machines do."""
    dirs = node_dirs(data)
    configs = [
        {"partition-id": i, "num-partitions": len(dirs), "data-path": str(d)} for i, d in enumerate(dirs)
    ]
    observer = None if seen is None else (lambda d, m: seen.append((d, m)))
    return LocalGrid(build_client_app(), configs, observer=observer)


def _same_figures(central: VerificationReport, nodes: VerificationReport) -> None:
    assert central.passed == nodes.passed and central.summary == nodes.summary
    assert [(t.metric, t.status) for t in central.tests] == [(t.metric, t.status) for t in nodes.tests]
    for name, m in central.metrics.items():
        got = nodes.metrics[name].values
        assert set(got) == set(m.values), name
        for key, value in m.values.items():  # numbers within float noise; absent figures (None) alike
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, key)
            else:
                assert got[key] == value, (name, key)


def test_class_unlearning_passes_against_the_retrained_reference(digits: Digits) -> None:
    events: list[VerifyProgress] = []
    assert digits.unlearned.model_version is not None
    rep = verify(_spec(digits, digits.unlearned.model_version, proposal_id=7), events.append)
    d = rep.to_dict()
    json.dumps(d, allow_nan=False)
    store = ArtifactStore(digits.root)
    assert rep.candidate_hash == store.get(digits.unlearned.model_version).content_hash
    assert rep.models["original"] is not None and rep.models["original"]["version"] == digits.trained
    assert set(rep.libraries) >= {"torch", "flwr", "scikit-learn", "python"}
    by = {t.metric: t for t in rep.tests}
    assert by["forget_accuracy_gap"].status == "pass", by["forget_accuracy_gap"].reason
    assert rep.passed, rep.summary
    # had the members also voted a test that cannot be measured on digits, it would block the same candidate
    voted = evaluate_tests(
        [*CATEGORY_TESTS, UNMEASURABLE_ON_DIGITS], {k: asdict(m) for k, m in rep.metrics.items()}
    )
    na = next(t for t in voted if t.metric == "canary_exposure")
    assert na.status == "not_applicable" and na.blocks and not policy_passes(voted)
    assert na.reason.startswith("the members voted this test, but it cannot be measured here: ")
    m = rep.metrics
    assert m["forget_accuracy_gap"].values["original"] > 0.8  # the original knew the class
    assert m["forget_accuracy_gap"].values["reference"] == 0.0  # the retrained model never saw it
    util = m["retained_utility_drop"].details
    assert len(util["per_node"]) == 3  # measured on every node
    assert m["cost_ratio"].value is not None and m["cost_ratio"].value > 0
    assert not m["forget_perplexity_ratio"].applies
    assert events[-1].stage == "done" and any(e.stage == "metric" for e in events)
    assert rep.timing["wall_s"] < 60


def test_a_randomised_model_forgets_everything_and_fails_on_utility(digits: Digits) -> None:
    store = ArtifactStore(digits.root)
    trained = store.get(digits.trained)
    task = make_task(trained.task, trained.model_config)
    broken = store.put(
        model=task.build_model(12345),
        task=trained.task,
        model_config=trained.stored_model_config,
        seed=0,
        parent=digits.trained,
        job_id="broken",
        training=dict(trained.manifest["training"]),
    )
    rep = verify(_spec(digits, broken.version, metrics=["forget_accuracy_gap", "retained_utility_drop"]))
    by = {t.metric: t for t in rep.tests}
    assert by["retained_utility_drop"].status == "fail"
    assert not rep.passed and "retained_utility_drop" in rep.summary
    assert (
        rep.candidate_hash
        == broken.content_hash
        != store.get(digits.unlearned.model_version or "").content_hash
    )


def test_regression_suite_names_the_earlier_unlearning_that_came_back(digits: Digits) -> None:
    # a later version trained from the *original* (which still knows class 7) breaks the earlier unlearning
    later = _job(
        digits.root, digits.data, digits.trained, "later", kind="train", rounds=1, local={"epochs": 0.5}
    )
    assert later.model_version is not None and digits.unlearned.model_version is not None
    check = RegressionCheck(
        label="proposal 7",
        proposal_id=7,
        target=json.loads(digits.target.to_json()),
        tests=[{"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.05}],
        original_version=digits.trained,
        reference_version=digits.reference.model_version,
    )
    spec = VerifySpec(
        artifact_root=str(digits.root),
        dataset_dir=str(digits.data),
        candidate_version=later.model_version,
        tests=[],
        regressions=[check],
    )
    rep = verify(spec)
    assert not rep.passed and rep.regressions[0].label == "proposal 7" and not rep.regressions[0].passed
    assert "regression proposal 7" in rep.summary
    ok = verify(replace(spec, candidate_version=digits.unlearned.model_version))
    assert ok.passed, ok.summary
    assert VerificationReport.from_json(ok.to_json()).regressions[0].passed


@dataclass
class Trained:
    root: Path
    data: Path
    original: str


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The tiny community LM, trained once for this module (2 canaries inserted 8 times on node 0)."""
    base = tmp_path_factory.mktemp("vlm")
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
    trained = _job(base / "art", base / "data", v0.version, "t", kind="train", rounds=6, local={"steps": 10})
    assert trained.model_version is not None
    return Trained(base / "art", base / "data", trained.model_version)


@pytest.fixture(scope="module")
def noisy_digits(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Noisy, non-IID digits (as bench/verification.py's digits-client): the original memorises a client, so
    membership inference tells it from a model retrained without that client."""
    base = tmp_path_factory.mktemp("vnoisy")
    init_dataset("digits", base / "data", nodes=3, seed=0, partition="dirichlet", noise=0.4)
    v0 = init_model(base / "art", "digits", seed=0)
    trained = _job(
        base / "art", base / "data", v0.version, "t", kind="train", rounds=10, local={"epochs": 2.0}
    )
    assert trained.model_version is not None
    return Trained(base / "art", base / "data", trained.model_version)


_RETRAINED: dict[tuple[Path, str, int], str] = {}


def _retrained(setup: Trained, target: Target, seed: int) -> str:
    """The model retrained without ``target`` with ``seed`` (trained once per module's setup and target)."""
    key = (setup.root, target.to_json(), seed)
    if key not in _RETRAINED:
        _RETRAINED[key] = str(
            _job(
                setup.root,
                setup.data,
                setup.original,
                f"retrain-{target.kind}-{seed}",
                kind="unlearn",
                target=target,
                method="retrain",
                seed=seed,
            ).model_version
        )
    return _RETRAINED[key]


def _default_policy_verdicts(setup: Trained, target: Target, **kw: object) -> tuple[VerificationReport, ...]:
    """The target kind's default tests on a model retrained without the target (seed 1) and on the original,
    both against the retrained reference (seed 0)."""
    # the defaults a proposal on this model starts from: those its task can measure
    task = ArtifactStore(setup.root).get(setup.original).task
    tests = [t.to_dict() for t in default_acceptance_tests(target.kind, task)]
    retrained = [_retrained(setup, target, seed) for seed in (0, 1)]
    return tuple(
        verify(
            VerifySpec(
                artifact_root=str(setup.root),
                dataset_dir=str(setup.data),
                candidate_version=str(candidate),
                original_version=setup.original,
                reference_version=retrained[0],
                target=json.loads(target.to_json()),
                tests=tests,
                metrics=[],  # only what the tests name
                **kw,  # type: ignore[arg-type]
            )
        )
        for candidate in (retrained[1], setup.original)
    )


FORGETTING_FAMILIES = {"forgetting", "privacy", "extraction"}


def _check_calibrated(retrained: VerificationReport, original: VerificationReport) -> None:
    """A default policy passes a retrained model and fails the original on a measured forgetting test; every
    test of the task's defaults can be measured on it."""
    assert retrained.passed, retrained.summary
    assert all(t.status != "not_applicable" for t in [*retrained.tests, *original.tests]), retrained.summary
    forgetting = [t for t in retrained.tests if CATALOG[t.metric].family in FORGETTING_FAMILIES]
    assert any(t.status == "pass" for t in forgetting), [(t.metric, t.status, t.reason) for t in forgetting]
    assert not original.passed, original.summary
    assert any(
        t.status == "fail" and CATALOG[t.metric].family in FORGETTING_FAMILIES for t in original.tests
    ), original.summary


def test_default_policies_pass_the_retrained_lm_and_fail_the_original(lm: Trained) -> None:
    """Issue 16 item 5 on the LM: every target kind's default policy (bench/RESULTS.md, "Default policies")."""
    canary = next(c for c in read_manifest(lm.data)["canaries"] if c["inserted"])
    targets = {
        "data_source": Target("data_source", "node-0/notebook"),
        "category": Target("category", "baking"),  # 9 passages on the nodes
        "behaviour": Target(
            "behaviour", examples=[{"prompt": canary["prefix"], "completion": canary["secret"]}]
        ),
    }
    assert set(targets) == set(TARGET_KINDS)
    for kind, target in targets.items():
        retrained, original = _default_policy_verdicts(lm, target, exposure_candidates=100, probe_examples=32)
        _check_calibrated(retrained, original)
        if kind == "category":  # the original knows the topic: its forget perplexity is below retraining's
            by = {t.metric: t for t in original.tests}
            assert by["forget_perplexity_ratio"].status == "fail"


def test_default_policies_pass_the_retrained_digits_model_and_fail_the_original(
    noisy_digits: Trained,
) -> None:
    """Issue 16 item 5 on digits (behaviour targets are for language models)."""
    for target in (Target("data_source", "node-0/digits"), Target("category", "7")):
        retrained, original = _default_policy_verdicts(noisy_digits, target)  # 128 probe examples
        _check_calibrated(retrained, original)


ATTACKS = ["mia_tpr_at_1pct_fpr", "mia_tpr_at_01pct_fpr", "quantization4_recovery"]


def _attacked(
    setup: Trained, target: Target, metrics: list[str], **kw: object
) -> tuple[VerificationReport, VerificationReport]:
    """The issue 16 attacks on a model retrained without the target (seed 1) and on the original, both
    against the retrained reference (seed 0), reusing the calibration tests' retrained models."""
    reference, retrained = (_retrained(setup, target, seed) for seed in (0, 1))
    reports = [
        verify(
            VerifySpec(
                artifact_root=str(setup.root),
                dataset_dir=str(setup.data),
                candidate_version=candidate,
                original_version=setup.original,
                reference_version=reference,
                target=json.loads(target.to_json()),
                tests=[],
                metrics=metrics,
                **kw,  # type: ignore[arg-type]
            )
        )
        for candidate in (retrained, setup.original)
    ]
    return reports[0], reports[1]


def test_per_example_attack_and_recovery_attacks_tell_the_original_from_a_retrained_lm(lm: Trained) -> None:
    """Issue 16 items 1-2 on the LM's data source (facts and 2 canaries inserted 8 times): the per-example
    attack (RMIA anchored by the reference) finds the original's members at 1 % FPR and not a retrained
    model's; best-of-N sampling runs on the node that holds the canaries (the tiny LM does not reproduce
    them; bench/RESULTS.md has the small LM), and extracts nothing from a retrained model."""
    target = Target("data_source", "node-0/notebook")
    metrics = ["mia_tpr_at_1pct_fpr", "mia_tpr_at_01pct_fpr", "sampled_extraction_rate"]
    retrained, original = _attacked(lm, target, metrics, probe_examples=32, extraction_samples=16)
    tpr_r, tpr_o = retrained.metrics["mia_tpr_at_1pct_fpr"], original.metrics["mia_tpr_at_1pct_fpr"]
    assert tpr_o.value is not None and tpr_r.value is not None
    null = tpr_r.details["by_model"]["candidate"]
    assert tpr_o.value > tpr_r.value and tpr_r.value <= null["tpr_95"], (tpr_o.details, tpr_r.details)
    assert tpr_o.details["by_model"]["candidate"]["pvalue"] < 0.01, tpr_o.details
    assert tpr_r.values["original"] == tpr_o.value  # the original's figure is beside every candidate's
    assert tpr_r.details["computed_at"] == ["nodes: node-0", "service: published held-out split"]
    low = original.metrics["mia_tpr_at_01pct_fpr"]
    assert low.value is not None and low.value <= tpr_o.value and low.details["measurable_fpr"] > 0.001
    sampled = original.metrics["sampled_extraction_rate"]  # the node holding the 2 canaries samples them
    assert sampled.applies and sampled.details["attempts"] == 2 and sampled.details["samples"] == 16
    assert sampled.values["reference"] == 0.0 and retrained.metrics["sampled_extraction_rate"].value == 0.0
    assert (sampled.value or 0.0) >= (sampled.values["reference"] or 0.0)
    assert sampled.details["computed_at"] == ["nodes: node-0"]


def test_the_retained_attack_finds_a_model_fitted_closer_to_the_retained_data(lm: Trained) -> None:
    """Issue 16 item 1 on the retained data: a model retrained without the target and then fine-tuned further
    on what the nodes retain ranks their retained examples above held-out ones (against the retrained
    reference), where the original and a model retrained with another seed do not; the nodes score their own
    retained examples. And the format-shifted probes (item 2) run on the node that holds the canaries."""
    target = Target("data_source", "node-0/notebook")
    retrained = _retrained(lm, target, 1)
    fitted = _job(lm.root, lm.data, retrained, "fit-retained", kind="train", rounds=4, local={"steps": 20})
    assert fitted.model_version is not None
    metrics = ["retained_mia_tpr_at_1pct_fpr", "format_shift_extraction_rate", "format_shift_recovery"]

    def verified(candidate: str, metrics: list[str]) -> VerificationReport:
        return verify(
            VerifySpec(
                artifact_root=str(lm.root),
                dataset_dir=str(lm.data),
                candidate_version=candidate,
                original_version=lm.original,
                reference_version=_retrained(lm, target, 0),
                target=json.loads(target.to_json()),
                tests=[],
                metrics=metrics,
                probe_examples=32,
            )
        )

    plain, over = verified(retrained, metrics), verified(fitted.model_version, metrics[:1])
    fit_r, ret_r = over.metrics["retained_mia_tpr_at_1pct_fpr"], plain.metrics["retained_mia_tpr_at_1pct_fpr"]
    assert fit_r.value is not None and ret_r.value is not None and fit_r.values["original"] is not None
    assert fit_r.value > max(fit_r.values["original"], ret_r.value) + 0.05, (fit_r.details, ret_r.details)
    assert fit_r.details["by_model"]["candidate"]["pvalue"] < 0.01, fit_r.details["by_model"]
    # the other seed's model is not flagged at the level the fitted one is (on an AVX-512 machine it drew 3 hits
    # of 32, p = 0.022: beyond the null's 95th percentile, as one honest model in 20 is)
    assert ret_r.details["by_model"]["candidate"]["pvalue"] >= 0.01, ret_r.details["by_model"]
    assert fit_r.values["reference"] is None and fit_r.details["members"] == 32
    assert fit_r.details["computed_at"] == [
        "nodes: node-0, node-1, node-2",
        "service: published held-out split",
    ]
    shifted = plain.metrics["format_shift_extraction_rate"]  # the node holding the 2 canaries shifts them
    assert (
        shifted.applies
        and shifted.details["attempts"] == 2
        and shifted.details["computed_at"] == ["nodes: node-0"]
    )
    assert shifted.values["reference"] == 0.0 and set(shifted.details["by_shift"]["candidate"]) == set(SHIFTS)
    recovery = plain.metrics["format_shift_recovery"]
    assert recovery.applies and set(recovery.details["loss"]) == {"unshifted", *SHIFTS}
    assert recovery.details["computed_at"] == ["nodes: node-0"]


def test_per_example_attack_on_digits(noisy_digits: Trained) -> None:
    """On noisy digits the original memorises node 0's examples: the per-example attack at 1 % FPR finds more
    of them than of a retrained model's, which scores like chance; the 4-bit attack runs on the nodes; the
    relearning attack is measured on examples it did not relearn."""
    metrics = [*ATTACKS, "relearn_recovery", "sampled_extraction_rate"]
    target = Target("data_source", "node-0/digits")
    retrained, original = _attacked(noisy_digits, target, metrics, probe_examples=64)
    tpr_r, tpr_o = retrained.metrics["mia_tpr_at_1pct_fpr"], original.metrics["mia_tpr_at_1pct_fpr"]
    assert tpr_o.value is not None and tpr_r.value is not None
    assert tpr_o.value > tpr_r.value and tpr_r.value <= tpr_r.details["by_model"]["candidate"]["tpr_95"]
    assert not retrained.metrics["sampled_extraction_rate"].applies  # not a language model
    q4 = original.metrics["quantization4_recovery"]
    assert q4.applies and q4.details["computed_at"] == ["nodes: node-0"]
    relearn = retrained.metrics["relearn_recovery"]  # relearns the probe's even half, measures the rest
    assert relearn.applies and "held-back" in relearn.details["measured_on"], relearn


def test_community_lm_data_source_with_canaries(tmp_path: Path) -> None:
    init_dataset(
        "community-lm",
        tmp_path / "data",
        nodes=3,
        seed=1,
        authors_per_node=4,
        passages_per_node=8,
        notebook_authors=2,
        canary_repetitions=(8, 8),
    )
    v0 = init_model(tmp_path / "art", "community-lm", size="tiny")
    trained = _job(
        tmp_path / "art", tmp_path / "data", v0.version, "t", kind="train", rounds=3, local={"steps": 6}
    )
    target = Target("data_source", "node-0/notebook")
    assert trained.model_version is not None
    unl = _job(
        tmp_path / "art",
        tmp_path / "data",
        trained.model_version,
        "u",
        kind="unlearn",
        target=target,
        method_config={"repair_rounds": 1, "ascent": {"max_steps": 20}},
    )
    assert unl.model_version is not None
    tests = [
        {"metric": "mia_auc_gap", "comparator": "<=", "threshold": 0.05},
        {"metric": "canary_exposure", "comparator": "<=", "threshold": 3.0},
        {"metric": "retained_utility_drop", "comparator": "<=", "threshold": 0.05},
        {"metric": "forget_accuracy_gap", "comparator": "<=", "threshold": 0.05},
    ]
    rep = verify(
        VerifySpec(
            artifact_root=str(tmp_path / "art"),
            dataset_dir=str(tmp_path / "data"),
            candidate_version=unl.model_version,
            tests=tests,
            target=json.loads(target.to_json()),
            exposure_candidates=100,
            probe_examples=32,
        )
    )
    m = rep.metrics
    exp = m["canary_exposure"]
    assert exp.applies and len(exp.details["canaries"]) == 2 and exp.details["controls"]
    assert 0 <= (exp.value or 0) <= 100**0.5  # log2(100) ~ 6.64 bits at most
    assert m["extraction_rate"].applies and m["extraction_rate"].details["attempts"] == 2
    assert m["mia_auc"].applies and set(m["mia_auc"].details["attacks"]) == {"loss", "min_k", "min_k_pp"}
    assert (
        m["forget_perplexity_ratio"].applies
        and "proxy" in m["forget_perplexity_ratio"].details["reference_source"]
    )
    assert not m["forget_accuracy_gap"].applies and not m["heldout_accuracy_gap"].applies
    by = {t.metric: t for t in rep.tests}
    assert by["forget_accuracy_gap"].status == "not_applicable" and by["forget_accuracy_gap"].blocks
    assert by["retained_utility_drop"].status in ("pass", "fail")
    assert m["quantization_recovery"].applies
    assert rep.timing["wall_s"] < 60
    assert exp.details["computed_at"] == [
        "nodes: node-0",
        "service: the proposal's examples and the published control canaries",
    ]
    assert all("prefix" not in c and c["node"] == "node-0" for c in exp.details["canaries"])

    # the same verification with only the published dataset here, every message inspected
    seen: list[tuple[str, Message]] = []
    published = published_only(tmp_path / "data", tmp_path / "published")
    spec = VerifySpec(
        artifact_root=str(tmp_path / "art"),
        dataset_dir=str(published),
        candidate_version=unl.model_version,
        tests=tests,
        target=json.loads(target.to_json()),
        exposure_candidates=100,
        probe_examples=32,
    )
    on_nodes = verify(spec, grid=node_grid(tmp_path / "data", seen))
    _same_figures(rep, on_nodes)
    types = {m.metadata.message_type for _, m in seen}
    assert {P.PROBE, P.SCORE, P.RELEARN, P.EVALUATE} <= types
    records = [r for d in node_dirs(tmp_path / "data") for r in load_node_data(d).train]
    forget = [r for r in records if target.matches(r)]
    needles = {str(r["text"]).encode() for r in forget} | {
        str(r["secret"]).encode() for r in forget if r.get("secret")
    }
    needles |= {str(r["text"]).encode() for r in records}  # nor any other member's record
    assert len(forget) > 8 and any(r.get("kind") == "canary" for r in forget)
    for direction, msg in seen:
        wire = message_to_proto(msg).SerializeToString()
        leaked = [n for n in needles if n in wire]
        assert not leaked, f"record text in a {direction} {msg.metadata.message_type} message: {leaked[0]!r}"
        if direction == "from-node" and msg.has_content():
            assert not msg.content.config_records  # nothing but numbers comes back
            assert set(msg.content.array_records) <= {P.SCORES} | {
                P.MODEL_PREFIX + r for r in ("candidate", "reference")
            }
            for rec in msg.content.metric_records.values():
                assert all(isinstance(v, (int, float)) for v in rec.values())


def test_verification_needs_no_member_data_at_the_verifier(digits: Digits, tmp_path: Path) -> None:
    """The verifying process sees only the manifest and the published held-out split; the nodes score their
    own examples: the same figures and the same verdict as with the whole dataset directory at hand."""
    assert digits.unlearned.model_version is not None
    spec = _spec(digits, digits.unlearned.model_version)
    central = verify(spec)
    published = published_only(digits.data, tmp_path / "published")
    with pytest.raises(FileNotFoundError):  # nothing of the members' data is here
        load_node_data(published / "node-0")
    on_nodes = verify(replace(spec, dataset_dir=str(published)), grid=node_grid(digits.data))
    assert on_nodes.passed, on_nodes.summary
    _same_figures(central, on_nodes)
    where = {name: m.details.get("computed_at") for name, m in on_nodes.metrics.items() if m.applies}
    assert where["forget_accuracy_gap"] == ["nodes: node-0, node-1, node-2"]
    assert where["mia_auc"] == ["nodes: node-0, node-1, node-2", "service: published held-out split"]
    assert where["retained_utility_drop"] == ["nodes: node-0, node-1, node-2"]
    assert where["heldout_accuracy_gap"] == ["service: published held-out split"]
