"""Data sources and the model registry from the command line.

``commons data-source register|list|show|hash`` and ``commons registry list|show|release|reject`` call the JSON
API through the one client, with the member's token (COMMONS_API_URL, COMMONS_API_TOKEN), as member commands
do. ``commons registry adopt`` is an operator command on the database (like ``commons demo``): it registers a
base version of the service's artifact store, has the service's own verifier verify it (a ``verify`` job, run
in this process) and releases it, so that a community's first model gets a version id that ``commons gate``
and proposals can name.

A data source's content hash is computed here, from the file or directory the member names
(:func:`content_hash`): a file's is the sha256 of its bytes (what a dataset manifest records for each node's
JSONL file); a directory's is the sha256 of the lines ``<sha256>  <path>\\n`` of its files (``sha256sum``'s
format, paths relative to the directory with ``/``, sorted by their UTF-8 bytes).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import click

from governance.cli.common import ApiGroup, CliUsageError, api, domain_errors, echo, open_ctx

# ---------------------------------------------------------------- data sources


def _sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def content_hash(path: Path) -> str:
    """The sha256 of a data source: of a file's bytes, or of a directory's ``sha256sum`` listing (every regular
    file below it, sorted by relative path; symbolic links are not followed)."""
    if path.is_file():
        return _sha256_file(path)
    if not path.is_dir():
        raise CliUsageError(f"{path} is neither a file nor a directory")
    files = sorted(
        (p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file() and not p.is_symlink()
    )
    if not files:
        raise CliUsageError(f"{path} holds no file to hash")
    listing = "".join(f"{_sha256_file(p)}  {rel}\n" for rel, p in files)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def _hash_of(path_text: str) -> str:
    try:
        return content_hash(Path(path_text))
    except OSError as exc:
        raise CliUsageError(f"cannot read {exc.filename or path_text}: {exc.strerror}") from None


def _protected_commitment(path_text: str) -> dict[str, Any]:
    from unlearning.api import protected_commitment

    try:
        c = protected_commitment(path_text)
    except (OSError, ValueError) as exc:
        raise CliUsageError(f"cannot use {path_text} as protected strings: {exc}") from None
    return {"protected_count": c["count"], "protected_sha256": c["sha256"]}


def _source_line(d: dict[str, Any]) -> str:
    return (
        f"#{d['id']:<5} {d['node_id']}/{d['name']:<24} owner {d['owner_id']:<5} {d['consent_state']:<10} "
        f"{d['content_hash'][:12]}"
    )


@click.group("data-source", cls=ApiGroup)
def data_source() -> None:
    """Data sources: register yours (its sha256 computed from the file or directory), list, show."""


@data_source.command("register")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, readable=True))
@click.option("--node", "node_id", required=True, help="the node that holds the data, e.g. node-0")
@click.option("--description", default="", help="what the data is (shown to members)")
@click.option(
    "--protected",
    "protected_file",
    type=click.Path(exists=True, dir_okay=False, readable=True),
    default=None,
    help="your node's protected.txt: registers only its count and salted sha256 (the salt is kept beside it)",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def data_source_register(
    click_ctx: click.Context,
    name: str,
    path: str,
    node_id: str,
    description: str,
    protected_file: str | None,
    as_json: bool,
) -> None:
    """Register NAME, a data source you own on --node, with the sha256 of PATH (a file, or a directory: see
    `commons data-source hash`). Where the service holds the federation's dataset manifest, PATH must be one
    of its source files (DATASET/<node>/<NAME>.jsonl, as `commons model init` wrote it)."""
    folder = Path(path)
    if folder.is_dir() and (folder.parent / "manifest.json").is_file():  # a node folder of a dataset
        files = sorted(p.name for p in folder.glob("*.jsonl") if p.name != "validation.jsonl")
        raise CliUsageError(
            f"{path} is a node folder of a dataset: a data source is one of its files, registered one by one "
            f"({', '.join(files) or 'it has none'}), e.g. `commons data-source register "
            f"{Path(files[0]).stem if files else 'NAME'} {folder / (files[0] if files else 'NAME.jsonl')} "
            f"--node {folder.name}`"
        )
    body: dict[str, Any] = {
        "name": name,
        "node_id": node_id,
        "content_hash": _hash_of(path),
        "description": description,
    }
    if protected_file is not None:  # the strings stay here: only how many and a salted hash are sent
        body |= _protected_commitment(protected_file)
    d = api(click_ctx).register_data_source(body)
    echo(
        d,
        as_json,
        lambda d: f"data source #{d['id']} registered: {d['node_id']}/{d['name']} {d['content_hash']}",
    )


@data_source.command("list")
@click.option("--owner", "owner_id", type=click.IntRange(1), default=None, help="an owner's member id")
@click.option("--mine", is_flag=True, help="only yours")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def data_source_list(
    click_ctx: click.Context, owner_id: int | None, mine: bool, limit: int, as_json: bool
) -> None:
    """List data sources (id, node/name, owner, consent, the start of the sha256)."""
    client = api(click_ctx)
    if mine:
        owner_id = int(client.me()["id"])
    rows = client.data_sources(owner_id=owner_id, limit=limit)
    echo(rows, as_json, lambda rows: "\n".join(_source_line(d) for d in rows) or "no data sources")


@data_source.command("show")
@click.argument("source_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def data_source_show(click_ctx: click.Context, source_id: int, as_json: bool) -> None:
    """Show a data source: its node, owner, consent, full sha256 and description."""

    def render(d: dict[str, Any]) -> str:
        lines = [
            _source_line(d),
            f"  sha256: {d['content_hash']}",
            f"  registered: {d['created_at']}",
        ]
        if d.get("protected_sha256"):
            lines.append(f"  protected strings: {d['protected_count']} (commitment {d['protected_sha256']})")
        if d.get("description"):
            lines.append(f"  description: {d['description']}")
        lines.append(f"  target it: commons proposal new --title ... --data-source {d['id']}")
        return "\n".join(lines)

    echo(api(click_ctx).data_source(source_id), as_json, render)


@data_source.command("hash", epilog="Reads nothing but PATH.")
@click.argument("path", type=click.Path(exists=True, readable=True))
def data_source_hash(path: str) -> None:
    """Print the sha256 that `register` computes for PATH: of a file's bytes, or of a directory's listing
    `<sha256>  <relative path>` of every file, sorted (what `sha256sum` prints, one line per file)."""
    click.echo(_hash_of(path))


@data_source.command("ledger")
@click.argument("source_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="the API's answer, proofs included")
@click.pass_context
@domain_errors
def data_source_ledger(click_ctx: click.Context, source_id: int, as_json: bool) -> None:
    """Is data source SOURCE_ID in the released model? The answer, every version that trained on it or
    unlearned it, the released versions that still hold it, and its node's contributions; the audit entries
    behind each step are checked here against the service's signed checkpoint (exit 1 if one does not verify)."""
    from governance.cli.ledger import render_ledger, verify_ledger_proofs

    client = api(click_ctx)
    body = client.data_source_ledger(source_id)
    verified = verify_ledger_proofs(body, client.audit_public_key()["verifier_key"])
    echo(body, as_json, lambda b: render_ledger(b, verified))


# ---------------------------------------------------------------- the model registry


def _version_line(v: dict[str, Any]) -> str:
    verified = v.get("verification") or {}
    check = "" if not verified else ("report: pass" if verified.get("passed") else "report: fail")
    return f"{v['version']}  {v['state']:<10} {v['kind']:<8} {v['task']:<14} {check}".rstrip()


@click.group("registry", cls=ApiGroup)
def registry() -> None:
    """The model registry: list and show versions, release or reject one (over the API); adopt a trained base
    version from the service's artifact store (an operator command, on the database)."""


@registry.command("list")
@click.option("--state", default=None, help="candidate, verified, failed, released or rejected")
@click.option(
    "--proposal", "proposal_id", type=click.IntRange(1), default=None, help="made for this proposal"
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def registry_list(
    click_ctx: click.Context, state: str | None, proposal_id: int | None, limit: int, as_json: bool
) -> None:
    """List model versions, newest first: the version id (for `commons gate`), state, kind, task."""
    rows = api(click_ctx).models(state=state, proposal_id=proposal_id, limit=limit)
    echo(rows, as_json, lambda rows: "\n".join(_version_line(v) for v in rows) or "no model versions")


@registry.command("show")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def registry_show(click_ctx: click.Context, version: str, as_json: bool) -> None:
    """Show a model version: its lineage, proposal, job and latest verification."""

    def render(v: dict[str, Any]) -> str:
        lines = [_version_line(v), f"  content hash: {v['content_hash']}"]
        if v.get("lineage"):
            lines.append(f"  lineage: {' <- '.join(v['lineage'])}")
        for key in ("proposal_id", "job_id", "released_at"):
            if v.get(key):
                lines.append(f"  {key.replace('_', ' ')}: {v[key]}")
        if v.get("verification"):
            lines.append(f"  verification: {v['verification']['summary']}")
        lines.append(f"  may it ship? commons gate {v['version']}")
        return "\n".join(lines)

    echo(api(click_ctx).model(version), as_json, render)


@registry.command("release")
@click.argument("version")
@click.pass_context
@domain_errors
def registry_release(click_ctx: click.Context, version: str) -> None:
    """Release VERSION (the council or an admin); refused unless the release gate allows it."""
    v = api(click_ctx).release_version(version)
    click.echo(f"{v['version']} is {v['state']}")


@registry.command("reject")
@click.argument("version")
@click.option("--reason", required=True, help="why (kept in the audit log)")
@click.pass_context
@domain_errors
def registry_reject(click_ctx: click.Context, version: str, reason: str) -> None:
    """Reject VERSION for good (an admin)."""
    v = api(click_ctx).reject_version(version, reason)
    click.echo(f"{v['version']} is {v['state']}")


@registry.command(
    "adopt",
    cls=click.Command,
    epilog="An operator command: it works on the database (COMMONS_DATABASE_URL / COMMONS_DATA_DIR) and the "
    "artifact store in COMMONS_DATA_DIR/artifacts, not over the API. Exit 0 released, 1 refused (not in the "
    "store, already registered, the gate does not allow it), 3 error.",
)
@click.argument("version")
@click.option("--parent", default=None, help="the version it was trained from (default: its manifest's)")
@domain_errors
def registry_adopt(version: str, parent: str | None) -> None:
    """Adopt VERSION, a trained base model in the service's artifact store: register it, have the service's
    verifier verify it (in this process; a few seconds to minutes) and release it. Proposals then unlearn from
    it and `commons gate VERSION` allows it."""
    import re

    from governance.jobs.worker import verify_and_release_base
    from governance.registry_schemas import VERSION_PATTERN

    for value in (version, parent):
        if value is not None and not re.match(VERSION_PATTERN, value):
            raise CliUsageError(f"{value!r} is not a model version id (mv- and 6 to 61 hex digits)")
    ctx = open_ctx()
    click.echo(f"adopting {version} from {ctx.settings.artifact_dir}: registering, verifying, releasing")
    released = verify_and_release_base(ctx, version, parent=parent)
    click.echo(f"{released.version} is {released.state}")
