"""``commons model ...``: initialise, train, unlearn and inspect model versions without the service.

Registered in the ``commons`` CLI by the service (``main.add_command(model)``); also usable on its own via
``python -m unlearning.cli``. State lives under ``--root``, by default the service's artifact store
(``$COMMONS_DATA_DIR/artifacts``, ``.commons/artifacts`` when unset: the directory ``commons serve`` and
``commons registry adopt`` read, see :func:`default_root`): ``versions/`` (the artifact store), ``datasets/``,
``jobs/`` and ``current.json`` (the dataset and latest version the next command starts from).
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import click

from unlearning.contract import DEFAULT_METHOD, Target
from unlearning.jobs import JobResult, JobSpec, JobSpecError, ProgressEvent

CURRENT = "current.json"

#: the environment variable and default of the service's data directory (governance.settings.Settings.data_dir,
#: read there as ``COMMONS_DATA_DIR``); its ``artifacts/`` sub-directory is the service's artifact store
DATA_DIR_ENV = "COMMONS_DATA_DIR"
DATA_DIR_DEFAULT = ".commons"


def default_root() -> Path:
    """The service's artifact store, ``$COMMONS_DATA_DIR/artifacts`` (``.commons/artifacts`` when unset): what
    ``governance.settings.Settings().artifact_dir`` says, read here without importing the service."""
    return Path(os.environ.get(DATA_DIR_ENV, DATA_DIR_DEFAULT)) / "artifacts"


def _root(ctx: click.Context) -> Path:
    return Path(ctx.obj["root"])


def _current(root: Path) -> dict[str, Any]:
    p = root / CURRENT
    return json.loads(p.read_text()) if p.is_file() else {}


def _save_current(root: Path, **values: Any) -> None:
    root.mkdir(parents=True, exist_ok=True)
    cur = {**_current(root), **values}
    (root / CURRENT).write_text(json.dumps(cur, indent=2, sort_keys=True) + "\n")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{what} settings look like KEY=VALUE (got {item!r})")
        k, v = item.split("=", 1)
        out[k.strip()] = _parse_value(v)
    return out


def parse_target(text: str) -> Target:
    """``data_source:NAME``, ``category:LABEL`` or ``behaviour:FILE`` (JSONL of {prompt, completion})."""
    kind, sep, value = text.partition(":")
    if not sep:
        raise click.BadParameter(
            "a target looks like data_source:NAME, category:LABEL or behaviour:FILE.jsonl"
        )
    try:
        if kind == "behaviour":
            path = Path(value)
            if not path.is_file():
                raise click.BadParameter(f"behaviour examples file {value} not found")
            examples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            return Target(kind="behaviour", examples=examples)
        return Target(kind=kind, value=value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.group(name="model")
@click.option(
    "--root",
    default=None,
    type=click.Path(file_okay=False),
    help="Artifact store and datasets [default: the service's store, $COMMONS_DATA_DIR/artifacts, "
    ".commons/artifacts when COMMONS_DATA_DIR is unset].",
)
@click.pass_context
def model(ctx: click.Context, root: str | None) -> None:
    """Federated models: init, train, unlearn, show."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = str(default_root()) if root is None else root


@model.command()
@click.option(
    "--task", "task", required=True, help="community-lm, digits, or a local transformers causal-LM directory."
)
@click.option(
    "--data",
    "data",
    type=click.Path(exists=True, file_okay=False),
    help="Bring your own: a directory with one sub-directory of JSONL files per node.",
)
@click.option("--nodes", default=5, show_default=True, help="Nodes of a generated dataset.")
@click.option("--seed", default=0, show_default=True)
@click.option("--size", default="default", show_default=True, type=click.Choice(["default", "small", "tiny"]))
@click.option(
    "--partition",
    default="iid",
    show_default=True,
    type=click.Choice(["iid", "dirichlet"]),
    help="digits only.",
)
@click.option("--noise", default=0.0, show_default=True, help="digits only: fixed Gaussian pixel noise.")
@click.option(
    "--heldout",
    "heldout",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="--data only: the share of each data source's records held out (seeded by --seed) as the dataset's "
    "published held-out split (heldout/test.jsonl): the non-members that membership inference compares the "
    "forgotten records with. They leave the nodes; 0 keeps every record on its node (mia_auc_gap then does "
    "not apply).",
)
@click.pass_context
def init(
    ctx: click.Context,
    task: str,
    data: str | None,
    nodes: int,
    seed: int,
    size: str,
    partition: str,
    noise: float,
    heldout: float,
) -> None:
    """Create a dataset and register an initial (untrained) model version."""
    from unlearning.api import init_dataset, init_model

    root = _root(ctx)
    manifest: dict[str, Any] | None = None  # an imported dataset's
    if task in ("digits", "community-lm"):
        ds = root / "datasets" / f"{task}-{seed}"
        opts: dict[str, Any] = {"nodes": nodes, "seed": seed}
        if task == "digits":
            opts.update(partition=partition, noise=noise)
        init_dataset(task, ds, **opts)
    elif Path(task).is_dir():
        if not (Path(task) / "config.json").is_file():
            raise click.BadParameter(
                f"{task} is not a transformers model directory (it has no config.json)", param_hint="--task"
            )
        if data is None:
            raise click.UsageError(
                "a bring-your-own model needs --data (one sub-directory of JSONL per node)"
            )
        ds = root / "datasets" / f"byo-{Path(task).name}"
        manifest = import_jsonl_nodes(Path(data), ds, seed=seed, heldout_fraction=heldout)
    else:
        raise click.BadParameter(
            f"{task!r} is not community-lm, digits or an existing directory", param_hint="--task"
        )
    try:
        version = init_model(root, task, size=size, seed=seed)
    except (OSError, ValueError) as exc:  # a model directory transformers cannot load
        if not Path(task).is_dir():
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise click.BadParameter(f"cannot load the model in {task}: {first}", param_hint="--task") from None
    _save_current(root, dataset=str(ds), version=version.version)
    click.echo(f"dataset  {ds}")
    if manifest is not None:
        nodes_line = ", ".join(f"{n['node']} ({len(n['sources'])})" for n in manifest["nodes"])
        held = manifest["heldout"].get("test", {}).get("records", 0)
        click.echo(f"nodes    {nodes_line}  (data sources per node)")
        click.echo(f"held out {held} records in heldout/test.jsonl (published to the service's verifier)")
        click.echo(f"service  COMMONS_DATASET_DIR={ds.resolve()}")
    click.echo(f"version  {version.version}  (task {version.task}, untrained)")


#: a node folder's or a JSONL file's name, kept as the node's and the data source's name: it becomes a path,
#: a federation name (``<node>/<source>``), a Flower node config value and a registry field
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED_NODES = ("heldout",)  # the dataset's published held-out split lives in DATASET/heldout/


def _check_name(name: str, what: str, where: Path) -> None:
    if not NAME_RE.match(name) or name.endswith("."):
        raise click.UsageError(
            f"{what} {str(where)!r}: its name {name!r} cannot be kept as a {what}'s name (use 1 to 64 letters, "
            "digits, '.', '_' or '-', starting with a letter or digit); rename it"
        )
    if what == "node folder" and name in RESERVED_NODES:
        raise click.UsageError(
            f"node folder {str(where)!r}: {name!r} is reserved for the held-out split; rename it"
        )


def _read_records(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise click.UsageError(f"{path}:{i}: not a JSON line ({exc.msg})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise click.UsageError(f'{path}:{i}: a record is a JSON object with a "text" string')
            out.append(rec)
    return out


def import_jsonl_nodes(
    src: Path,
    dest: Path,
    *,
    seed: int = 0,
    validation_fraction: float = 0.1,
    heldout_fraction: float = 0.1,
) -> dict[str, Any]:
    """Copy per-node JSONL (``src/<node>/<source>.jsonl``, records with ``text`` and optional ``category``,
    ``kind``; ``kind: canary`` with its ``secret`` marks an inserted canary) into the dataset layout with a
    manifest. Node folders and source files keep their names (``src/alice/notes.jsonl`` is the data source
    ``alice/notes`` on node ``alice``); a name that cannot be kept is refused, naming the folder or file.

    Per source file (seeded by ``seed``): ``round(heldout_fraction * n)`` records go to the dataset's published
    held-out split (``heldout/test.jsonl``, what membership inference compares the forgotten records with),
    then every 10th remaining record to the node's local ``validation.jsonl`` (unless the node brings its own
    ``validation.jsonl``). Canary records are never held out or validated: they stay in their source. A share
    that would leave a source with no training record is refused. Hidden folders and files (``.name``) are
    skipped."""
    import random
    import shutil

    from unlearning.data import write_dataset

    nodes: dict[str, dict[str, list[dict[str, Any]]]] = {}
    validation: dict[str, list[dict[str, Any]]] = {}
    held: list[dict[str, Any]] = []
    rng = random.Random(seed)
    for node_dir in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = node_dir.name
        _check_name(name, "node folder", node_dir)
        paths = [
            p
            for p in sorted(node_dir.glob("*.jsonl"))
            if p.name != "validation.jsonl" and not p.name.startswith(".")
        ]
        if not paths:
            raise click.UsageError(f"node folder {str(node_dir)!r} has no .jsonl file")
        files: dict[str, list[dict[str, Any]]] = {}
        for p in paths:
            _check_name(p.stem, "data source file", p)
            files[p.stem] = _read_records(p)
        own_validation = (node_dir / "validation.jsonl").is_file()
        validation[name] = _read_records(node_dir / "validation.jsonl") if own_validation else []
        for stem, recs in files.items():
            free = [j for j, r in enumerate(recs) if r.get("kind") != "canary"]
            out = set(rng.sample(free, k=min(len(free), round(len(recs) * heldout_fraction))))
            held += [{k: v for k, v in recs[j].items() if k != "source"} for j in sorted(out)]
            if not own_validation:
                free = [j for j in free if j not in out]
                val = set(
                    rng.sample(free, k=min(len(free), (len(recs) - len(out)) // int(1 / validation_fraction)))
                )
                validation[name] += [recs[j] for j in sorted(val)]
                out |= val
            files[stem] = [r for j, r in enumerate(recs) if j not in out]
            if not files[stem]:
                raise click.UsageError(
                    f"{node_dir / (stem + '.jsonl')}: {len(recs)} record(s), and holding out "
                    f"{heldout_fraction:g} of them leaves none to train on (give it more records or a smaller "
                    "--heldout)"
                )
        nodes[name] = files
    if not nodes:
        raise click.UsageError(f"{src} has no node sub-directories")
    heldout = {"test": held} if held else {}
    # written beside and swapped in whole: a dataset imported again keeps no folder or held-out file of the last
    new, old = dest.with_name(dest.name + ".new"), dest.with_name(dest.name + ".old")
    for leftover in (new, old):
        shutil.rmtree(leftover, ignore_errors=True)
    manifest = write_dataset(
        new,
        task="causal-lm",
        seed=seed,
        nodes=nodes,
        validation=validation,
        heldout=heldout,
        extra={
            "imported": {"heldout_fraction": heldout_fraction, "validation_fraction": validation_fraction}
        },
    )
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def _run_with_progress(spec: JobSpec, as_json: bool) -> JobResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from unlearning.api import run_job

    cancel = threading.Event()
    if as_json:
        return run_job(spec, None, cancel)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(ev: ProgressEvent) -> None:
            if ev.phase not in tasks:
                tasks[ev.phase] = bar.add_task(ev.phase, total=ev.total_rounds, info="")
            shown = {
                k: v
                for k, v in ev.metrics.items()
                if k in ("train-loss", "forget-loss", "val-loss", "val-accuracy", "steps")
            }
            info = "  ".join(f"{k} {v:.3g}" for k, v in shown.items())
            bar.update(tasks[ev.phase], completed=ev.round, total=max(ev.total_rounds, ev.round), info=info)

        try:
            return run_job(spec, progress, cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise


def _report(result: JobResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        after = result.metrics.get("after", {})
        click.echo(f"status   {result.status}" + (f"  ({result.error})" if result.error else ""))
        if result.model_version:
            click.echo(f"version  {result.model_version}  (parent {result.parent_version})")
        if after:
            m, w = after["mean"], after["worst"]
            click.echo(
                f"eval     val-loss {m.get('val-loss', float('nan')):.4f}  val-accuracy {m.get('val-accuracy', float('nan')):.4f}  "
                f"worst node val-loss {w['val-loss']:.4f}"
            )
            if "forget-loss" in m:
                click.echo(
                    f"forget   loss {m['forget-loss']:.4f}  accuracy {m.get('forget-accuracy', float('nan')):.4f}"
                )
        c = result.cost
        click.echo(
            f"cost     {c.wall_s:.1f} s wall, {c.cpu_s:.1f} s CPU, {c.optimizer_steps} optimizer steps, {c.bytes_sent / 1e6:.1f} MB sent"
        )
    if result.status != "succeeded":
        raise SystemExit(1)


def _spec(ctx: click.Context, version: str | None, dataset: str | None, **kw: Any) -> JobSpec:
    root = _root(ctx)
    cur = _current(root)
    base = version or cur.get("version")
    ds = dataset or cur.get("dataset")
    if not base or not ds:
        raise click.UsageError(
            "no model yet: run `commons model init` first (or give --version and --dataset)"
        )
    return JobSpec(
        artifact_root=str(root),
        dataset_dir=str(ds),
        base_version=str(base),
        job_id=f"cli-{uuid.uuid4().hex[:12]}",
        **kw,
    )


@model.command()
@click.option("--rounds", default=10, show_default=True)
@click.option("--version", help="Start from this version (default: the latest).")
@click.option("--dataset", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--local",
    "local",
    multiple=True,
    help="Local training setting KEY=VALUE (lr, steps, epochs, batch_size, ...).",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", default=1, show_default=True, help="torch threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the JobResult as JSON.")
@click.pass_context
def train(
    ctx: click.Context,
    rounds: int,
    version: str | None,
    dataset: str | None,
    local: tuple[str, ...],
    seed: int,
    threads: int,
    as_json: bool,
) -> None:
    """Federated training (FedAvg), with a progress bar per round."""
    try:
        spec = _spec(
            ctx,
            version,
            dataset,
            kind="train",
            rounds=rounds,
            local=_pairs(local, "--local"),
            seed=seed,
            num_threads=threads,
        )
        result = _run_with_progress(spec, as_json)
    except JobSpecError as exc:
        raise click.UsageError(str(exc)) from exc
    if result.model_version:
        _save_current(_root(ctx), version=result.model_version)
    _report(result, as_json)


@model.command()
@click.option("--method", default=DEFAULT_METHOD, show_default=True, help="A registered unlearning method.")
@click.option(
    "--target", "target_text", required=True, help="data_source:NAME | category:LABEL | behaviour:FILE.jsonl"
)
@click.option("--set", "settings", multiple=True, help="Method setting KEY=VALUE (JSON values).")
@click.option("--version", help="Unlearn from this version (default: the latest).")
@click.option("--dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def unlearn(
    ctx: click.Context,
    method: str,
    target_text: str,
    settings: tuple[str, ...],
    version: str | None,
    dataset: str | None,
    seed: int,
    threads: int,
    as_json: bool,
) -> None:
    """Federated unlearning of a target, standalone (for operators without the service)."""
    target = parse_target(target_text)
    try:
        spec = _spec(
            ctx,
            version,
            dataset,
            kind="unlearn",
            method=method,
            method_config=_pairs(settings, "--set"),
            target=target,
            seed=seed,
            num_threads=threads,
        )
        result = _run_with_progress(spec, as_json)
    except JobSpecError as exc:
        raise click.UsageError(str(exc)) from exc
    if result.model_version:
        _save_current(_root(ctx), version=result.model_version)
    _report(result, as_json)


@model.command()
@click.argument("version")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, version: str, as_json: bool) -> None:
    """Verify a model version's hashes and print its manifest (exit 1 if it was modified)."""
    from unlearning.artifacts import ArtifactError, ArtifactStore

    try:
        v = ArtifactStore(_root(ctx)).get(version)
    except ArtifactError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from exc
    if as_json:
        click.echo(json.dumps(v.manifest, indent=2, sort_keys=True))
        return
    m = v.manifest
    click.echo(f"version       {v.version}  (verified)")
    click.echo(f"task          {m['task']}")
    click.echo(f"content hash  {m['content_hash']}")
    click.echo(f"parent        {m.get('parent')}")
    click.echo(f"job           {m.get('job_id')}")
    click.echo(f"seed          {m.get('seed')}")
    click.echo(f"created       {m.get('created_at')}")
    t = m.get("training", {})
    click.echo(
        f"training      {t.get('kind')} rounds={t.get('rounds')} excluded={len(t.get('excluded', []))}"
    )
    if t.get("unlearning"):
        u = t["unlearning"]
        click.echo(f"unlearning    {u['method']} target={json.dumps(u['target'])}")
    click.echo(
        "libraries     " + ", ".join(f"{k} {val}" for k, val in sorted(m.get("libraries", {}).items()))
    )
    for name, digest in sorted(m["files"].items()):
        click.echo(f"  {digest[:16]}  {name}")


if __name__ == "__main__":
    model()
