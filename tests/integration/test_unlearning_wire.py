"""Raw data never crosses the boundary: every message of a train job and of an unlearning job (digits and
the community LM) is inspected, serialised exactly as Flower puts it on the wire."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Context, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.serde import message_to_proto

from unlearning import JobResult, JobSpec, Target, init_dataset, init_model
from unlearning.data import load_node_data, read_manifest
from unlearning.federation import protocol as P
from unlearning.federation.apps import build_client_app, build_server_app
from unlearning.federation.local_grid import LOCAL_RUN_ID, LocalGrid

torch.set_num_threads(1)


def _run(spec: JobSpec, seen: list[tuple[str, Message]]) -> JobResult:
    grid = LocalGrid.for_dataset(
        build_client_app(), Path(spec.dataset_dir), observer=lambda d, m: seen.append((d, m))
    )
    sink: list[JobResult] = []
    build_server_app(spec, sink=sink)(
        grid,
        Context(
            run_id=LOCAL_RUN_ID, node_id=SUPERLINK_NODE_ID, node_config={}, state=RecordDict(), run_config={}
        ),
    )
    assert sink[0].status == "succeeded", sink[0].error
    return sink[0]


def _check(seen: list[tuple[str, Message]], needles: list[bytes], param_names: set[str]) -> None:
    assert seen
    allowed_arrays = {P.ARRAYS, P.ANCHOR, P.FISHER_ARRAYS, P.BALL_CENTER}
    for direction, msg in seen:
        wire = message_to_proto(msg).SerializeToString()
        for needle in needles:
            assert needle not in wire, (
                f"data set content in a {direction} {msg.metadata.message_type} message"
            )
        if msg.has_content():
            if direction == "to-node":  # an instruction's models, when several, travel bundled in one record
                assert len(msg.content.array_records) <= 1, sorted(msg.content.array_records)
            content = RecordDict(dict(msg.content.items()))
            P.unbundle(content)
            for key, rec in content.array_records.items():
                assert key in allowed_arrays or key.startswith(P.MODEL_PREFIX)  # contribution's subset models
                assert list(rec) == [P.PACKED], "a model travels as one packed array"
                got = set(P.from_record(rec))
                assert got == param_names, "an ArrayRecord carries something other than the parameters"
            for rec in msg.content.metric_records.values():
                assert all(isinstance(v, (int, float)) for v in rec.values())


def _records(data: Path) -> list[dict[str, object]]:
    out = []
    for n in read_manifest(data)["nodes"]:
        d = load_node_data(data / n["path"])
        out += d.train + d.validation
    return out


def test_digits_jobs_carry_no_examples(tmp_path: Path) -> None:
    init_dataset("digits", tmp_path / "data", nodes=2, seed=0)
    v0 = init_model(tmp_path / "art", "digits", size="tiny")
    seen: list[tuple[str, Message]] = []
    common = {"artifact_root": str(tmp_path / "art"), "dataset_dir": str(tmp_path / "data")}
    t = _run(
        JobSpec(kind="train", job_id="t", base_version=v0.version, rounds=2, local={"epochs": 1.0}, **common),
        seen,
    )
    _run(
        JobSpec(
            kind="unlearn",
            job_id="u",
            base_version=str(t.model_version),
            target=Target("category", "4"),
            method_config={"repair_rounds": 1},
            **common,
        ),
        seen,
    )
    # every example's pixel vector, as the float32 and float64 bytes any array encoding would contain
    needles = []
    for r in _records(tmp_path / "data")[:300]:
        x = np.asarray(r["x"])
        needles += [x.astype(np.float32).tobytes()[:64], x.astype(np.float64).tobytes()[:128]]
    names = {n for n, _ in v0.load_into(_model(v0)).named_parameters()}
    _check(seen, needles, names)
    types = {m.metadata.message_type for _, m in seen}
    assert {"query.info", "train", "train.unlearn", "query.fisher", "evaluate"} <= types


def _model(v: object) -> torch.nn.Module:
    from unlearning.tasks import make_task

    return make_task(v.task, v.model_config).build_model(0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["gradient_ascent_ewc"])
def test_community_lm_jobs_carry_no_text(tmp_path: Path, method: str) -> None:
    init_dataset(
        "community-lm",
        tmp_path / "data",
        nodes=2,
        seed=0,
        authors_per_node=3,
        passages_per_node=4,
        notebook_authors=2,
        canary_repetitions=(1, 2),
    )
    v0 = init_model(tmp_path / "art", "community-lm", size="tiny")
    seen: list[tuple[str, Message]] = []
    common = {"artifact_root": str(tmp_path / "art"), "dataset_dir": str(tmp_path / "data")}
    t = _run(
        JobSpec(kind="train", job_id="t", base_version=v0.version, rounds=1, local={"steps": 2}, **common),
        seen,
    )
    _run(
        JobSpec(
            kind="unlearn",
            job_id="u",
            base_version=str(t.model_version),
            method=method,
            target=Target("data_source", "node-0/notebook"),
            method_config={"repair_rounds": 1, "ascent": {"max_steps": 3}},
            **common,
        ),
        seen,
    )
    texts = [str(r["text"]) for r in _records(tmp_path / "data")]
    needles = [t.encode() for t in texts] + [t[:24].encode() for t in texts if len(t) >= 24]
    secrets = [c["secret"].encode() for c in read_manifest(tmp_path / "data")["canaries"]]
    names = {n for n, _ in v0.load_into(_model(v0)).named_parameters()}
    _check(seen, needles + secrets, names)
