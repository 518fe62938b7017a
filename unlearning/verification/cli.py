"""``commons verify CANDIDATE``: verify a model version from the command line and write the report
(``report.json`` and ``report.html``). Exit 0 when the policy passes, 1 when it does not."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from unlearning.contract import TARGET_KINDS, default_acceptance_tests

# the documented defaults per target kind (the contract's, as the service's proposals start from them)
DEFAULT_TESTS: dict[str, list[dict[str, Any]]] = {
    kind: [
        {"metric": t.metric, "comparator": t.comparator, "threshold": t.threshold}
        for t in default_acceptance_tests(kind)
    ]
    for kind in TARGET_KINDS
}


def task_defaults(kind: str, artifact_root: str, candidate: str) -> list[dict[str, Any]]:
    """The defaults a proposal on the candidate's task starts from (a voted test the task cannot measure would
    block: docs/verification.md); every kind's defaults when the candidate is not in the store."""
    from unlearning.artifacts import ArtifactError, ArtifactStore

    try:
        task: str | None = ArtifactStore(artifact_root).get(candidate).task
    except (ArtifactError, OSError, KeyError, ValueError):  # verify() reports a missing version
        task = None
    return [t.to_dict() for t in default_acceptance_tests(kind, task)]


def parse_commitment(
    _ctx: click.Context | None, _param: click.Parameter | None, value: str | None
) -> dict[str, Any] | None:
    """``COUNT:SHA256`` (as ``commons data-source show`` prints a source's commitment: ``protected strings: 3
    (commitment 9f86...)``) -> ``VerifySpec.protected_commitment`` ``{"count", "sha256"}``, as the worker
    passes the commitment registered with the data source."""
    if value is None:
        return None
    count, sep, digest = value.strip().partition(":")
    digest = digest.strip().lower()
    if not sep or not count.strip().isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise click.BadParameter(
            f"{value!r} is not COUNT:SHA256 (how many protected strings, a colon, then the 64 hex digits of "
            "their salted sha256, as `commons data-source show ID` prints them)"
        )
    return {"count": int(count), "sha256": digest}


@click.command("verify")
@click.argument("candidate")
@click.option(
    "--artifacts", "artifact_root", required=True, type=click.Path(file_okay=False), help="artifact store"
)
@click.option(
    "--dataset", "dataset_dir", required=True, type=click.Path(file_okay=False), help="dataset directory"
)
@click.option("--data-source", default=None, help="target: a data source name (node-K/<source>)")
@click.option("--category", default=None, help="target: a category")
@click.option(
    "--secret", "secrets", multiple=True, help="target: PROMPT=COMPLETION behaviour example (repeatable)"
)
@click.option(
    "--tests",
    "tests_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="acceptance tests (JSON list)",
)
@click.option(
    "--original", default=None, help="the version before unlearning (default: the candidate's parent)"
)
@click.option("--reference", default=None, help="the retrained reference version")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--exposure-candidates", type=int, default=1000, show_default=True)
@click.option(
    "--protected-commitment",
    metavar="COUNT:SHA256",
    callback=parse_commitment,
    default=None,
    help="with --data-source: the protected-string commitment registered with the source (`commons "
    "data-source show`); a node whose protected.txt differs makes the secret tests unmeasured",
)
@click.option(
    "--node-data-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="the folder holding each node's own data folder, apart from the published manifest in --dataset "
    "(the demo's COMMONS_DATA_DIR/nodes; default $COMMONS_NODE_DATA_DIR, else the nodes' folders beside "
    "the manifest)",
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), default=None, help="write report.json/html here"
)
def verify(
    candidate: str,
    artifact_root: str,
    dataset_dir: str,
    data_source: str | None,
    category: str | None,
    secrets: tuple[str, ...],
    tests_file: str | None,
    original: str | None,
    reference: str | None,
    seed: int,
    exposure_candidates: int,
    protected_commitment: dict[str, Any] | None,
    node_data_dir: str | None,
    out_dir: str | None,
) -> None:
    """Verify model version CANDIDATE against its original (and a retrained reference) and print the verdict."""
    from dataclasses import replace

    from unlearning.api import FlowerSettings
    from unlearning.api import verify as run
    from unlearning.verification import VerifySpec, VerifySpecError, render_html

    flower = FlowerSettings.from_env()
    if node_data_dir is not None:
        flower = replace(flower, node_data_dir=node_data_dir)

    chosen = [x for x in (data_source, category, secrets or None) if x]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one target: --data-source, --category or --secret")
    if protected_commitment is not None and not data_source:
        raise click.UsageError("--protected-commitment is a data source's: it goes with --data-source")
    if data_source:
        target: dict[str, Any] = {"kind": "data_source", "value": data_source}
    elif category:
        target = {"kind": "category", "value": category}
    else:
        examples = []
        for s in secrets:
            prompt, sep, completion = s.partition("=")
            if not sep or not completion:
                raise click.UsageError("--secret takes PROMPT=COMPLETION")
            examples.append({"prompt": prompt, "completion": completion})
        target = {"kind": "behaviour", "examples": examples}
    if tests_file:
        tests = json.loads(Path(tests_file).read_text())
    else:
        tests = task_defaults(target["kind"], artifact_root, candidate)
    spec = VerifySpec(
        artifact_root=artifact_root,
        dataset_dir=dataset_dir,
        candidate_version=candidate,
        tests=tests,
        target=target,
        original_version=original,
        reference_version=reference,
        seed=seed,
        exposure_candidates=exposure_candidates,
        protected_commitment=protected_commitment,
    )
    try:
        report = run(
            spec, lambda p: click.echo(f"  {p.stage} {p.done}/{p.total} {p.detail}", err=True), flower
        )
    except (VerifySpecError, LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for t in report.tests:
        click.echo(f"{t.status:<15} {t.metric} {t.comparator} {t.threshold:g}: {t.reason}")
    click.echo(report.summary)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(report.to_json() + "\n")
        (out / "report.html").write_text(render_html(report))
        click.echo(f"report: {out / 'report.json'}, {out / 'report.html'}", err=True)
    sys.exit(0 if report.passed else 1)
