"""Ray's services listen on the loopback interface only: while a simulation job runs, every listening TCP
socket of the simulation subprocess and the processes below it (Ray's GCS, raylet, workers, agents) is bound
to 127.0.0.1 (or its IPv4-mapped IPv6 form), never to all interfaces or to a routable address. The sockets
are read from /proc (each process's socket inodes, matched against /proc/net/tcp and tcp6) every 0.3 s
while the job runs; about 30 s on 2 cores (one Ray cluster: the only way to see where Ray binds)."""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import threading
from pathlib import Path

import pytest

from unlearning import JobSpec, init_dataset, init_model, run_job

pytestmark = pytest.mark.slow

LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        found[int(stat.parent.name)] = (ppid, cmd)
    return found


def _listening_sockets_of_simulation() -> list[tuple[str, int, str]]:
    """(local address in /proc's hex, port, command) of every listening socket of the simulation child and
    its descendants."""
    procs = _processes()
    roots = {pid for pid, (_, cmd) in procs.items() if "unlearning.federation.simulation" in cmd}

    def in_tree(pid: int) -> bool:
        while pid > 1:
            if pid in roots:
                return True
            pid = procs.get(pid, (0, ""))[0]
        return False

    inodes: dict[str, int] = {}
    for pid in procs:
        if not in_tree(pid):
            continue
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    sockets = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, _, port = fields[1].rpartition(":")
                # the whole command line: a deep checkout's path would cut "gcs_server" off an 80-character prefix
                sockets.append((address, int(port, 16), procs[inodes[fields[9]]][1]))
    return sockets


def test_ray_listens_on_loopback_only(tmp_path: Path) -> None:
    init_dataset("digits", tmp_path / "data", nodes=2, seed=0)
    v0 = init_model(tmp_path / "art", "digits", size="tiny", seed=0)
    spec = JobSpec(
        kind="train",
        job_id="loopback",
        artifact_root=str(tmp_path / "art"),
        dataset_dir=str(tmp_path / "data"),
        base_version=v0.version,
        rounds=1,
        evaluate=False,
        contribution={"method": "none"},  # two exchanges: discovery and one round
        runtime="simulation",
    )
    seen: dict[tuple[str, int], str] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.3):
            for address, port, cmd in _listening_sockets_of_simulation():
                seen[(address, port)] = cmd

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_job(spec)
    finally:
        done.set()
        sampler.join(timeout=10)
    assert result.status == "succeeded", result.error
    assert any("gcs_server" in cmd or "raylet" in cmd for cmd in seen.values()), seen  # the control
    exposed = {key: cmd for key, cmd in seen.items() if key[0] not in LOOPBACK}
    assert not exposed, f"Ray listens beyond loopback: {exposed}"
