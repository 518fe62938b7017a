"""Vote throughput against a bare JSON endpoint of the same server, in one run.

    .venv/bin/python bench/votes.py [--requests 4000] [--concurrency 16] [--database-url URL]

Starts `commons serve`'s app under uvicorn in a subprocess on a fresh SQLite database (or the given URL),
creates an electorate and one proposal open for voting, then drives both endpoints from another process:
POST /api/v1/proposals/{id}/votes (auth, domain rules, vote history, current vote, audit-log append, commit)
and GET /api/v1/health (a bare Litestar JSON handler). Prints and records votes/s, p50/p99 latency and the
ratio in bench/RESULTS.md (section "## Votes"). Targets (not asserted): >= 1,000 votes/s on SQLite on
2 cores and >= 25 % of the bare endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(url: str, voters: int) -> tuple[int, list[str]]:
    from governance.db.engine import make_engine
    from governance.db.migrate import upgrade
    from governance.schemas import MemberCreate, ProposalCreate
    from governance.services import members, proposals
    from governance.services.context import Ctx
    from governance.settings import Settings

    upgrade(url)
    settings = Settings(database_url=url, voting_days=30)
    ctx = Ctx.create(make_engine(url), settings)
    tokens = []
    reviewers = []
    for i in range(voters):
        roles = ["reviewer"] if i < 2 else []
        m = members.add_member(
            ctx, MemberCreate(handle=f"voter{i:05d}", display_name=f"Voter {i}", roles=roles)
        )
        tokens.append(members.create_token(ctx, m.id, "bench").token)
        if roles:
            reviewers.append(members.authenticate(ctx, tokens[-1]))
    proposer = members.authenticate(ctx, tokens[-1])
    assert proposer is not None
    p = proposals.create(
        ctx,
        ProposalCreate(title="Benchmark vote", target={"kind": "category", "category": "bench"}, submit=True),
        proposer,
    )
    for r in reviewers:
        assert r is not None
        proposals.triage(ctx, p.id, r, "approve", None)
    ctx.engine.dispose()
    return p.id, tokens


async def _one_connection(host: str, port: int, requests: list[bytes], latencies: list[float]) -> int:
    """Send requests one after another on one keep-alive connection; returns the number of non-200 replies.

    A minimal HTTP/1.1 client on asyncio streams, written by hand because httpx's own per-request cost on
    2 cores would be what this benchmark measured, not the server.
    """
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        for raw in requests:
            t0 = time.perf_counter()
            writer.write(raw)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if status_line.split()[1] != b"200":
                errors += 1
    finally:
        writer.close()
    return errors


def build(
    method: str, path: str, port: int, token: str | None = None, body: dict[str, object] | None = None
) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(payload)}"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    if body is not None:
        head.append("Content-Type: application/json")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def drive(port: int, requests: list[bytes], concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    shares = [requests[i::concurrency] for i in range(concurrency)]
    start = time.perf_counter()
    errors = await asyncio.gather(*(_one_connection("127.0.0.1", port, share, latencies) for share in shares))
    return time.perf_counter() - start, latencies, sum(errors)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else values[0] * 1000


NO_AUDIT_LAUNCHER = """
import sys
import governance.services.votes as votes
votes.record_many = lambda session, entries: None  # the baseline: votes without their audit entries
from governance.cli import main
sys.exit(main(sys.argv[1:]))
"""


def measure(
    url: str, tmp: Path, pid: int, tokens: list[str], args: argparse.Namespace, audit: bool
) -> dict[str, float]:
    """Serve the app in a subprocess and drive the bare endpoint, then votes; returns rates and latencies."""
    port = _free_port()
    env = {
        **os.environ,
        "COMMONS_DATABASE_URL": url,
        "COMMONS_DATA_DIR": str(tmp),
        "COMMONS_VOTING_DAYS": "30",
        "COMMONS_EMBEDDED_WORKER": "false",
    }
    launcher = ["-m", "governance.cli"] if audit else ["-c", NO_AUDIT_LAUNCHER]
    server = subprocess.Popen(
        [sys.executable, *launcher, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/api/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        rng = random.Random(0)
        choices = ["approve", "abstain", "approve", "object"]

        def votes(n: int) -> list[bytes]:
            out = []
            for i in range(n):
                choice = choices[i % len(choices)]
                body = {"choice": choice, "reason": "bench" if choice == "object" else ""}
                out.append(build("POST", f"/api/v1/proposals/{pid}/votes", port, rng.choice(tokens), body))
            return out

        bare = [build("GET", "/api/v1/health", port)] * args.requests
        asyncio.run(drive(port, bare[:200], args.concurrency))  # warm up both paths
        asyncio.run(drive(port, votes(200), args.concurrency))
        b_time, b_lat, b_err = asyncio.run(drive(port, bare, args.concurrency))
        v_time, v_lat, v_err = asyncio.run(drive(port, votes(args.requests), args.concurrency))
    finally:
        server.terminate()
        server.wait(timeout=20)
    return {
        "bare_rps": args.requests / b_time,
        "bare_p50": pct(b_lat, 50),
        "bare_p99": pct(b_lat, 99),
        "bare_err": b_err,
        "vote_rps": args.requests / v_time,
        "vote_p50": pct(v_lat, 50),
        "vote_p99": pct(v_lat, 99),
        "vote_err": v_err,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument(
        "--concurrency", type=int, default=64, help="clients sending at once (keep-alive connections)"
    )
    ap.add_argument("--voters", type=int, default=300)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="commons-bench-"))
    url = args.database_url or f"sqlite:///{tmp / 'commons.db'}"
    pid, tokens = prepare(url, args.voters)
    with_audit = measure(url, tmp, pid, tokens, args, audit=True)
    without = measure(url, tmp, pid, tokens, args, audit=False)
    load = os.getloadavg()[0]

    backend = url.split(":", 1)[0].split("+")[0]
    w, b = with_audit, without
    rows = [
        (
            "bare JSON endpoint (GET /api/v1/health)",
            w["bare_rps"],
            w["bare_p50"],
            w["bare_p99"],
            w["bare_err"],
        ),
        (
            "vote (POST .../votes, with audit append)",
            w["vote_rps"],
            w["vote_p50"],
            w["vote_p99"],
            w["vote_err"],
        ),
        (
            "vote without the audit append (baseline)",
            b["vote_rps"],
            b["vote_p50"],
            b["vote_p99"],
            b["vote_err"],
        ),
    ]
    lines = [
        "## Votes",
        "",
        f"`bench/votes.py --requests {args.requests} --concurrency {args.concurrency}` on {backend}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, one uvicorn worker; "
        f"the load generator runs in another process on the same machine (load average {load:.1f} at the end).",
        "",
        "| endpoint | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
        *[f"| {n} | {r:,.0f} | {p50:.1f} | {p99:.1f} | {e} |" for n, r, p50, p99, e in rows],
        "",
        f"**votes/s = {w['vote_rps']:,.0f}; ratio to the bare endpoint = {w['vote_rps'] / w['bare_rps']:.0%}** "
        f"(targets: >= 1,000 votes/s on SQLite and >= 25 %); with the audit append the vote path runs at "
        f"{w['vote_rps'] / b['vote_rps']:.0%} of its rate without it.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(ROOT / "bench" / "RESULTS.md", "## Votes", text)


def write_section(path: Path, heading: str, text: str) -> None:
    """Replace one '## ' section of RESULTS.md, keeping the others."""
    old = (
        path.read_text()
        if path.exists()
        else "# Benchmark results\n\nLatest figures; each section is rewritten by its script.\n"
    )
    parts = old.split("\n## ")
    head, sections = parts[0], ["## " + p for p in parts[1:]]
    sections = [s for s in sections if not s.startswith(heading + "\n")]
    sections.append(text.rstrip() + "\n")
    path.write_text(head.rstrip() + "\n\n" + "\n".join(s.rstrip() + "\n" for s in sections))


if __name__ == "__main__":
    main()
