"""Where a Deployment Engine exchange's time goes: the trace files of one job, hop by hop.

    COMMONS_FEDERATION_TRACE=/tmp/trace nice -n 10 .venv/bin/python bench/federation.py \
        --tasks community-lm --skip-simulation --no-write
    .venv/bin/python bench/federation_trace.py /tmp/trace [--last-run]

Reads the ``*.trace`` files that ``unlearning.federation.trace`` writes (the ServerApp, every SuperNode and
every ClientApp executor), matches each message the ServerApp pushed with the SuperNode that received it,
the executor that ran it and the reply that came back, and prints, per exchange, the median over its
messages of each step (seconds):

- ``push``: the ServerApp's PushMessages and its objects' upload to the SuperLink;
- ``to node``: from the messages listed at the SuperLink (PushMessages answered) to the SuperNode's pull
  that got the message starting (its idle poll);
- ``node objs``: the SuperNode's download of the message's objects (with its retries);
- ``exec in``: from the SuperNode's receipt to the executor holding the message's inputs (acquire, task
  input, its own object downloads, waiting for the SuperNode's);
- ``compute``: the ClientApp;
- ``exec out``: the executor pushing its reply, its objects and the task's output;
- ``node wait``: from the executor's end to the SuperNode's push of the reply (its reply poll);
- ``node send``: the SuperNode's push of the reply and its objects;
- ``to server``: from the reply's objects at the SuperLink to the ServerApp holding the reply (its reply
  poll and download);
- ``exchange``: the ServerApp's push to its last reply; ``overhead``: exchange less the slowest node's
  compute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def read(directory: Path) -> list[tuple[float, str, int, str, dict[str, str]]]:
    events = []
    for path in sorted(directory.glob("*.trace")):
        pid = int(path.stem.rsplit("-", 1)[1])
        for line in path.read_text().splitlines():
            ts, component, what, *rest = line.split(" ")
            fields = dict(f.split("=", 1) for f in rest)
            events.append((float(ts), component, pid, what, fields))
    events.sort(key=lambda e: e[0])
    return events


STEPS = [
    "push",
    "to node",
    "node objs",
    "exec in",
    "compute",
    "exec out",
    "node wait",
    "node send",
    "to server",
]


def analyse(events: list[tuple[float, str, int, str, dict[str, str]]]) -> list[dict[str, float]]:
    # per message id (12 hex digits): the times of its steps
    msg: dict[str, dict[str, float]] = defaultdict(dict)
    exchanges: list[dict[str, object]] = []
    last_push_rpc: float | None = None
    executor_of: dict[int, str] = {}  # clientapp pid -> the message it runs
    pending_acquire = (0, 0.0)
    for ts, component, pid, what, f in events:
        if component == "serverapp":
            if what == "push":
                exchanges.append({"start": ts, "ids": [], "end": ts})
            elif what == "rpc" and f["method"] == "PushMessages":
                last_push_rpc = ts
            elif what == "pushed" and exchanges:
                ids = [i for i in f["ids"].split(",") if i]
                exchanges[-1]["ids"] = ids
                for i in ids:
                    msg[i]["pushed_rpc"] = last_push_rpc or ts
                    msg[i]["pushed"] = ts
                    msg[i]["start"] = float(exchanges[-1]["start"])  # type: ignore[arg-type]
            elif what == "reply":
                msg[f["reply_to"]]["reply"] = ts
                exchanges[-1]["end"] = ts
        elif component == "supernode":
            if what == "receive":
                m = f["message"]
                msg[m]["recv_start"] = ts - float(f["took"])
                msg[m]["recv_end"] = ts
                msg[m]["node"] = pid
            elif what == "objects":
                # the objects of the message this SuperNode received last
                for d in msg.values():
                    if d.get("node") == pid and "objs_end" not in d:
                        d["objs_end"] = ts
            elif what == "send":
                m = f["reply_to"]
                msg[m]["send_start"] = ts - float(f["took"])
            elif what == "push-objects":
                for d in msg.values():
                    if d.get("node") == pid and "send_start" in d and "sent" not in d:
                        d["sent"] = ts
        elif component == "clientapp":
            if what == "acquired":
                executor_of[pid] = ""
                pending_acquire = (pid, ts)
            elif what == "input":
                m = f["message"]
                executor_of[pid] = m
                if pending_acquire[0] == pid:
                    msg[m]["acquired"] = pending_acquire[1]
                msg[m]["input"] = ts
            elif what == "computed":
                msg[executor_of[pid]]["computed"] = ts
            elif what == "done":
                msg[executor_of[pid]]["done"] = ts
    rows = []
    for ex in exchanges:
        ids = [i for i in ex["ids"] if "reply" in msg[i]]  # type: ignore[union-attr]
        if not ids:
            continue
        per: dict[str, list[float]] = defaultdict(list)
        for i in ids:
            d = msg[i]
            try:
                per["push"].append(d["pushed"] - d["start"])
                per["to node"].append(d["recv_start"] - d["pushed_rpc"])
                per["node objs"].append(d["objs_end"] - d["recv_end"])
                per["exec in"].append(d["input"] - d["objs_end"])
                per["compute"].append(d["computed"] - d["input"])
                per["exec out"].append(d["done"] - d["computed"])
                per["node wait"].append(d["send_start"] - d["done"])
                per["node send"].append(d["sent"] - d["send_start"])
                per["to server"].append(d["reply"] - d["sent"])
            except KeyError:
                continue
        if not per:
            continue
        row = {k: statistics.median(v) for k, v in per.items()}
        row["exchange"] = float(ex["end"]) - float(ex["start"])  # type: ignore[arg-type]
        row["overhead"] = row["exchange"] - max(per["compute"])
        row["messages"] = len(ids)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--skip", type=int, default=0, help="leave out the first N exchanges (warm-up)")
    args = parser.parse_args()
    rows = analyse(read(args.directory))[args.skip :]
    if not rows:
        print("no complete exchange in the traces", file=sys.stderr)
        return 1
    cols = [*STEPS, "exchange", "overhead"]
    print("| # | msgs | " + " | ".join(cols) + " |")
    print("|---:|---:|" + "---:|" * len(cols))
    for k, r in enumerate(rows):
        print(
            f"| {k + 1} | {int(r['messages'])} | "
            + " | ".join(f"{r.get(c, float('nan')):.3f}" for c in cols)
            + " |"
        )
    mean = {c: statistics.mean(r.get(c, 0.0) for r in rows) for c in cols}
    print("| mean | | " + " | ".join(f"{mean[c]:.3f}" for c in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
