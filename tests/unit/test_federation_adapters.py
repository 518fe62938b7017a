"""The Flower adapters' pure parts: node-config files, the Control API client (on a mock transport), run-config
validation and the environment every Flower process gets. No process is started here."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from flwr.common.config import parse_config_args
from flwr.common.serde import user_config_from_proto, user_config_to_proto
from flwr.proto.control_pb2 import (
    ListRunsRequest,
    ListRunsResponse,
    StartRunRequest,
    StartRunResponse,
)
from flwr.proto.run_pb2 import Run, RunStatus

from unlearning.federation.deployment import (
    APP_DIR,
    ControlClient,
    FederationError,
    flower_environment,
    free_port,
    node_config_toml,
)
from unlearning.federation.flower_runtimes import FlowerSettings, ProgressTail, remote_spec, run_on_superlink
from unlearning.federation.simulation import app_components, fused_run_config
from unlearning.jobs import JobSpec, ProgressEvent

APP_PYPROJECT = """
[project]
name = "probe"
version = "0.1.0"
dependencies = []

[tool.flwr.app]
publisher = "commons"

[tool.flwr.app.components]
serverapp = "pkg.apps:server_app"
clientapp = "pkg.apps:client_app"

[tool.flwr.app.config]
job-id = ""
rounds = 2
"""


def test_node_config_file_survives_spaces_quotes_and_types(tmp_path: Path) -> None:
    config = {
        "partition-id": 2,
        "num-partitions": 3,
        "data-path": '/srv/my data/"node" 2',
        "weight": 0.5,
        "trusted": True,
    }
    path = tmp_path / "node.toml"
    path.write_text(node_config_toml(config))
    assert parse_config_args([str(path)]) == config  # what flower-supernode --node-config FILE reads


def test_flower_environment_turns_telemetry_off_and_isolates_home(tmp_path: Path) -> None:
    env = flower_environment(tmp_path / "home", base={"PATH": "/usr/bin", "FLWR_TELEMETRY_ENABLED": "1"})
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["FLWR_HOME"] == str(tmp_path / "home")
    assert env["PATH"].endswith("/usr/bin")


def test_run_config_is_fused_and_unknown_keys_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(APP_PYPROJECT)
    assert fused_run_config({"job-id": "J1"}, tmp_path) == {"job-id": "J1", "rounds": 2}
    assert app_components(tmp_path) == ("pkg.apps:server_app", "pkg.apps:client_app")
    with pytest.raises(ValueError, match="nope"):
        fused_run_config({"nope": 1}, tmp_path)


def test_packaged_app_project_points_at_the_unlearning_apps() -> None:
    server, client = app_components(APP_DIR)
    assert server == "unlearning.federation.apps:server_app"
    assert client == "unlearning.federation.apps:client_app"


def test_control_client_speaks_protobuf_over_http() -> None:
    seen: list[tuple[str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers["content-type"], request.content))
        if request.url.path == "/v1/control/start-run":
            return httpx.Response(200, content=StartRunResponse(run_id=42).SerializeToString())
        if request.url.path == "/v1/control/list-runs":
            run = Run(
                run_id=42,
                status=RunStatus(status="finished", sub_status="completed", details=""),
                override_config=user_config_to_proto({"job-id": "J1"}),
                bytes_sent=100,
                bytes_recv=50,
            )
            reply = ListRunsResponse()
            reply.run_dict[42].CopyFrom(run)
            return httpx.Response(200, content=reply.SerializeToString())
        return httpx.Response(404, text="no such endpoint")

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        control = ControlClient("127.0.0.1:1", http=http)
        assert control.start_run(b"fab-bytes", {"job-id": "J1"}) == 42
        state = control.run_state(42)
        with pytest.raises(FederationError, match="404"):
            control.stop_run(42)

    assert state.succeeded and state.run_config == {"job-id": "J1"}
    assert (state.bytes_sent, state.bytes_recv) == (100, 50)
    path, content_type, body = seen[0]
    assert (path, content_type) == ("/v1/control/start-run", "application/protobuf")
    start = StartRunRequest()
    start.ParseFromString(body)
    assert start.fab.content == b"fab-bytes"
    assert user_config_from_proto(start.override_config) == {"job-id": "J1"}
    listed = ListRunsRequest()
    listed.ParseFromString(seen[1][2])
    assert listed.run_id == 42


def test_flower_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMONS_FLOWER_SUPERLINK", "link.example.org:9093")
    monkeypatch.setenv("COMMONS_FLOWER_ROOT_CERTIFICATES", "/etc/commons/ca.pem")
    monkeypatch.setenv("COMMONS_SIMULATION_NUM_CPUS", "4")
    s = FlowerSettings.from_env()
    assert (s.superlink, s.root_certificates, s.insecure, s.simulation_num_cpus) == (
        "link.example.org:9093",
        "/etc/commons/ca.pem",
        False,  # certificates given: HTTPS unless COMMONS_FLOWER_INSECURE says otherwise
        4,
    )
    monkeypatch.delenv("COMMONS_FLOWER_ROOT_CERTIFICATES")
    assert FlowerSettings.from_env().insecure


def test_progress_tail_forwards_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    seen: list[ProgressEvent] = []
    tail = ProgressTail(path, seen.append)
    tail.poll()  # no file yet
    event = {"job_id": "J", "phase": "ascent", "round": 1, "total_rounds": 2, "metrics": {"loss": 1.5}}
    path.write_text(json.dumps(event) + "\n" + json.dumps({**event, "round": 2})[:20])
    tail.poll()
    assert [e.round for e in seen] == [1]
    with path.open("a") as f:
        f.write(json.dumps({**event, "round": 2})[20:] + "\n")
    tail.poll()
    assert [e.round for e in seen] == [1, 2] and seen[1].metrics == {"loss": 1.5}


def test_deployment_runtime_reports_an_unreachable_superlink_as_a_failed_job(tmp_path: Path) -> None:
    spec = JobSpec(
        kind="train",
        job_id="J1",
        artifact_root=str(tmp_path / "art"),
        dataset_dir=str(tmp_path / "data"),
        base_version="mv-x",
    )
    result = run_on_superlink(spec, settings=FlowerSettings(superlink=f"127.0.0.1:{free_port()}"))
    assert result.status == "failed"
    assert result.error is not None and "not reachable" in result.error
    assert remote_spec(spec).artifact_root == str((tmp_path / "art").resolve())


def test_a_deployment_spec_carries_no_path_and_the_datasets_nodes(tmp_path: Path) -> None:
    """What travels to the SuperLink (and in the run config to every SuperNode): no path of the service's
    machine; the node names by partition id (from the manifest) and the settings' timeouts."""
    from unlearning.api import init_dataset
    from unlearning.federation.flower_runtimes import deployment_spec, prepared, run_config_for

    init_dataset("digits", tmp_path / "data", nodes=2, seed=0)
    spec = JobSpec(
        kind="train",
        job_id="J1",
        artifact_root=str(tmp_path / "art"),
        dataset_dir=str(tmp_path / "data"),
        base_version="mv-x",
    )
    job = prepared(spec, FlowerSettings(exchange_timeout_s=60, node_timeout_s=30))
    assert job.node_names == ["node-0", "node-1"]
    assert (job.timeout_s, job.node_timeout_s) == (60, 30)
    config = run_config_for(deployment_spec(job))
    assert str(tmp_path) not in json.dumps(config)
    assert JobSpec.from_json(config["job-spec"]).node_names == ["node-0", "node-1"]
    given = prepared(JobSpec(**{**spec.__dict__, "timeout_s": 5.0}), FlowerSettings())
    assert (given.timeout_s, given.node_timeout_s) == (5.0, FlowerSettings().node_timeout_s)


def test_the_service_passes_its_flower_settings_down() -> None:
    """governance/settings.py is the one place: COMMONS_FLOWER_* become the FlowerSettings a job runs with."""
    from governance.jobs.worker import flower_settings
    from governance.settings import Settings

    s = Settings(
        flower_superlink="link.example:9093",
        flower_job_timeout=60,
        flower_poll_interval=0.25,
        simulation_num_cpus=2,
        flower_exchange_timeout=90,
        flower_node_timeout=45,
    )
    got = flower_settings(s)
    assert (got.exchange_timeout_s, got.node_timeout_s) == (90, 45)
    defaults = flower_settings(Settings())  # minutes, not a day; the service and the library agree
    assert (defaults.job_timeout_s, defaults.exchange_timeout_s, defaults.node_timeout_s) == (2700, 300, 120)
    assert defaults == FlowerSettings()
    assert (got.superlink, got.insecure, got.job_timeout_s, got.poll_interval_s, got.simulation_num_cpus) == (
        "link.example:9093",
        True,
        60,
        0.25,
        2,
    )
    tls = flower_settings(Settings(flower_root_certificates="/etc/ca.pem"))
    assert tls.root_certificates == "/etc/ca.pem" and tls.insecure is False


def test_an_unknown_default_method_is_refused_at_start() -> None:
    import pydantic

    from governance.settings import Settings

    with pytest.raises(pydantic.ValidationError, match="unknown unlearning method 'nope'"):
        Settings(unlearning_method="nope")
