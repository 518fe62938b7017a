"""Delegation's cost (docs/governance.md, "Delegation"): resolving a poll's chains (what every live tally and
the close pay) and the vote path's incremental turnout (governance/domain/delegation.py: ``Turnout``) against
counting the whole poll again for every vote.

    python bench/delegation.py [--sizes 1000,10000,50000] [--share 0.3] [--votes 128]

Each size is an electorate with ``share`` of it delegating (to random members, depth limit 3) and a fifth of it
having voted; 128 more votes then arrive, as one vote batch. Writes bench/RESULTS.md's '## Delegation' section.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import replace_section
from governance.domain.delegation import Turnout, resolve


def poll(n: int, share: float, seed: int = 0) -> tuple[dict[int, int], set[int]]:
    rng = random.Random(seed)
    edges = {}
    for a in rng.sample(range(n), int(n * share)):
        b = rng.randrange(n)
        if b != a:
            edges[a] = b
    return edges, set(rng.sample(range(n), n // 5))


def cast(edges: dict[int, int], voted: set[int], n: int) -> int:
    r = resolve(electors=range(n), edges=edges, direct=dict.fromkeys(voted, "x"), max_depth=3)
    return len(voted) + r.delegated_total


def measure(n: int, share: float, votes: int) -> dict[str, float]:
    edges, voted = poll(n, share)
    arrivals = random.Random(1).sample(sorted(set(range(n)) - voted), votes)
    t0 = time.perf_counter()
    cast(edges, voted, n)
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    t = Turnout(edges=edges, voted=voted, max_depth=3)
    init = time.perf_counter() - t0
    t0 = time.perf_counter()
    for m in arrivals:
        t.gain(m)
        t.add(m)
    batch = time.perf_counter() - t0
    assert t.total == cast(edges, voted | set(arrivals), n)
    # the naive vote path: two full counts per vote (before and after); timed on 8 votes, scaled
    sample = arrivals[:8]
    t0 = time.perf_counter()
    seen = set(voted)
    for m in sample:
        cast(edges, seen, n)
        seen.add(m)
        cast(edges, seen, n)
    naive = (time.perf_counter() - t0) / len(sample) * votes
    return {"full": full, "init": init, "batch": batch, "naive": naive}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--votes", type=int, default=128)
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        m = measure(n, args.share, args.votes)
        rows.append((n, m))
        print(n, {k: round(v * 1000, 2) for k, v in m.items()}, flush=True)
    load = os.getloadavg()[0]
    lines = [
        "## Delegation",
        "",
        f"`python bench/delegation.py --sizes {args.sizes} --share {args.share} --votes {args.votes}` "
        f"({platform.python_version()}, {os.cpu_count()} cores, load average {load:.1f} while it ran: other "
        "work shared the machine). An electorate with a share of it delegating to random members (depth "
        f"limit 3), a fifth of it having voted, then a batch of {args.votes} votes.",
        "",
        "| electors | delegations | resolve the poll (live tally, close) ms | vote path: load ms | "
        f"vote path: {args.votes} votes ms | recounting twice per vote instead ms | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, m in rows:
        ratio = m["naive"] / m["batch"] if m["batch"] else float("inf")
        lines.append(
            f"| {n:,} | {int(n * args.share):,} | {m['full'] * 1000:.1f} | {m['init'] * 1000:.1f} | "
            f"{m['batch'] * 1000:.2f} | {m['naive'] * 1000:,.0f} | {ratio:,.0f}x |"
        )
    lines += [
        "",
        "The vote path loads the poll's turnout once per batch (one resolution of the voters and delegators) and "
        "then finds what each vote adds by walking back along the delegations within the depth limit; counting "
        "the poll again before and after every vote would cost the last column.",
    ]
    replace_section(lines)


if __name__ == "__main__":
    main()
