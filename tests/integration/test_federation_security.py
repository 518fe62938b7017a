"""The documented federation set-up on the real Deployment Engine: TLS everywhere, SuperNode authentication,
and the Fleet API apart from the Control API (SecureFederation, what `python -m unlearning.federation.deployment
up` starts).

Two SuperNodes with registered keys join through the fleet gateway and run a small train job to the end; a
SuperNode with a key nobody registered is refused and exits; the gateway answers 404 for the Control API
(where runs are started and nodes registered) and the SuperLink itself listens on 127.0.0.1 only; plain HTTP
is refused; every socket any of its processes listens on is on loopback and in the port range. Bounded: about a minute on 2 cores. Skipped locally with COMMONS_SKIP_DEPLOYMENT_TESTS=1, never when
CI=true."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

import contextlib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from unlearning import JobSpec, init_dataset, init_model, run_job
from unlearning.data import read_manifest
from unlearning.federation.deployment import ControlClient, FederationError
from unlearning.federation.flower_runtimes import FlowerSettings
from unlearning.federation.security import PortRange, SecureFederation, make_node_key, register_node_key

_skip = os.environ.get("COMMONS_SKIP_DEPLOYMENT_TESTS") == "1" and os.environ.get("CI", "").lower() != "true"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(_skip, reason="COMMONS_SKIP_DEPLOYMENT_TESTS=1 (never skipped when CI=true)"),
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SecureFederation, Path]]:
    base = tmp_path_factory.mktemp("secure")
    init_dataset("digits", base / "data", nodes=2, seed=0)
    nodes = [
        {"partition-id": i, "num-partitions": 2, "data-path": str(base / "data" / node["path"])}
        for i, node in enumerate(read_manifest(base / "data")["nodes"])
    ]
    first = 29400 + os.getpid() % 500 * 20  # a range of our own, clear of other test processes
    fed = SecureFederation(
        base / "flwr", nodes, ports=PortRange(first, first + 19), artifact_root=base / "art"
    )
    with fed:
        yield fed, base


def _listening(port: int) -> list[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def _sockets_of(pids: list[int]) -> set[tuple[str, int]]:
    """(local address, port) of every listening socket of ``pids`` and the processes below them."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue

    def ours(pid: int) -> bool:
        while pid > 1:
            if pid in pids:
                return True
            pid = parent.get(pid, 0)
        return False

    inodes = set()
    for pid in filter(ours, parent):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                address, _, port = fields[1].rpartition(":")
                found.add((address, int(port, 16)))
    return found


def test_every_process_listens_in_the_port_range_on_loopback(secured: tuple[SecureFederation, Path]) -> None:
    fed, _ = secured
    assert fed.ports is not None
    sockets = _sockets_of(fed.pids)  # SuperLink, gateway, SuperNodes, their executors and superexecs
    assert {port for _, port in sockets} >= {fed.port, fed.fleet_port}
    assert all(fed.ports.first <= port <= fed.ports.last for _, port in sockets), sockets
    assert all(address in ("0100007F", "0000000000000000FFFF00000100007F") for address, _ in sockets), sockets
    assert _listening(fed.port) == ["0100007F"]  # the SuperLink (Control API included): 127.0.0.1 only


def test_a_registered_node_runs_a_job_over_tls(secured: tuple[SecureFederation, Path]) -> None:
    fed, base = secured
    v0 = init_model(base / "art", "digits", size="tiny", seed=0)
    spec = JobSpec(
        kind="train",
        job_id="secure-train",
        artifact_root=str(base / "art"),
        dataset_dir=str(base / "data"),
        base_version=v0.version,
        rounds=1,
        evaluate=False,
        contribution={"method": "none"},  # two exchanges: discovery and one round
        runtime="deployment",
    )
    settings = FlowerSettings(
        superlink=fed.address,
        insecure=False,
        root_certificates=str(fed.tls.ca_cert),
        poll_interval_s=0.5,
        job_timeout_s=180,
    )
    result = run_job(spec, flower=settings)
    assert result.status == "succeeded", result.error
    assert result.model_version is not None
    assert int(result.metrics["runtime"]["bytes_sent"]) > 0


def test_an_unregistered_node_is_refused(secured: tuple[SecureFederation, Path]) -> None:
    fed, base = secured
    stranger = fed.start_extra_node(
        {"partition-id": 0, "num-partitions": 2, "data-path": str(base / "data")}, register=False
    )
    deadline = time.monotonic() + 60
    while stranger.alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not stranger.alive(), "an unregistered SuperNode stayed up"
    assert stranger.popen.returncode != 0
    assert "Failed to initialize the connection" in stranger.log_tail(), stranger.log_tail()
    with fed.control_client() as control:
        online = [n for n in control.list_nodes() if n.status == "online"]
    assert len(online) == 2  # only the registered ones


def test_members_reach_the_fleet_api_only(secured: tuple[SecureFederation, Path]) -> None:
    fed, _ = secured
    tls = ssl.create_default_context(cafile=str(fed.tls.ca_cert))
    with httpx.Client(verify=tls, timeout=10) as client:
        gateway = f"https://{fed.fleet_address}"
        assert client.get(f"{gateway}/health").status_code == 200
        for path in ("list-runs", "register-node", "start-run", "list-nodes"):
            reply = client.post(f"{gateway}/v1/control/{path}", content=b"")
            assert reply.status_code == 404, (path, reply.status_code)
        assert client.post(f"{gateway}/v1/fleet/../control/list-runs", content=b"").status_code == 404
    # the Control API answers on the SuperLink's loopback address, over TLS only
    with fed.control_client() as control:
        assert control.healthy()
    with pytest.raises(FederationError, match="not reachable"), ControlClient(fed.address) as plain:
        plain.list_nodes()


def test_registering_a_bad_key_is_refused(secured: tuple[SecureFederation, Path], tmp_path: Path) -> None:
    fed, _ = secured
    bogus = tmp_path / "bogus.pub"
    bogus.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx4 test\n")
    with fed.control_client() as control, pytest.raises(ValueError, match=r"OpenSSH public key|NIST"):
        register_node_key(control, bogus)
    key = make_node_key(tmp_path, "again")
    with fed.control_client() as control:
        register_node_key(control, key.public)
        with pytest.raises(FederationError, match="refused register-node"):
            register_node_key(control, key.public)  # one key, one node
