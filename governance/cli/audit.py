"""``commons audit``: verify an export offline, print proofs and checkpoints, write an export.

verify needs nothing but the file (and optionally a saved checkpoint or a trusted key); prove, checkpoint and
export read the database named by the settings, or, with ``--api``, ask a running service.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx

from governance.audit import merkle
from governance.audit.canonical import dumps_plain
from governance.audit.checkpoint import CheckpointError, VerifierKey, open_checkpoint
from governance.audit.verify import VerificationFailed, verify_export
from governance.cli.common import CliError, client_for, database_errors, load_settings
from governance.cli.gate import verify_bundle_cmd
from governance.client import ApiError, CommonsClient, NotJson, Unreachable

if TYPE_CHECKING:
    from sqlmodel import Session


API_OPTION_HELP = (
    "Ask the service at URL (e.g. http://127.0.0.1:8000; no token needed: the log is public) instead of "
    "reading the database (COMMONS_DATABASE_URL / COMMONS_DATA_DIR)."
)


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


def _checkpoint_text(raw: bytes) -> str:
    """A saved checkpoint: the signed note itself, or the JSON that /api/v1/audit/checkpoint returns."""
    text = raw.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            return str(json.loads(text)["checkpoint"])
        except (ValueError, KeyError, TypeError):
            raise click.ClickException("the saved checkpoint is JSON without a 'checkpoint' field") from None
    return text


@click.group()
def audit() -> None:
    """The tamper-evident audit log: verify, prove, checkpoint, export."""


@audit.command()
@click.argument("export_file", metavar="EXPORT")
@click.option(
    "--against",
    "old_checkpoint",
    metavar="OLD_CHECKPOINT",
    help="A checkpoint you saved earlier: the log must extend it (same key, same first entries).",
)
@click.option("--key", "key_text", help="The verifier key you trust (text or a file holding it).")
@click.option("--strict", is_flag=True, help="Also check that every entry is a well-formed version-1 entry.")
@click.option(
    "--bundle",
    is_flag=True,
    help="EXPORT is a release's provenance bundle (`commons release bundle`): check its checkpoint, "
    "inclusion proofs and claims instead.",
)
def verify(
    export_file: str, old_checkpoint: str | None, key_text: str | None, strict: bool, bundle: bool
) -> None:
    """Verify an export offline: signatures, every entry, the root, and consistency with OLD_CHECKPOINT.

    Exits 0 when everything verifies, 1 naming the first bad entry otherwise.
    """
    if bundle:
        if key_text and Path(key_text).is_file():
            key_text = Path(key_text).read_text()
        click.get_current_context().invoke(verify_bundle_cmd, bundle_file=export_file, key_text=key_text)
        return
    data = _read(export_file)
    against = _checkpoint_text(_read(old_checkpoint)) if old_checkpoint else None
    trusted = None
    if key_text:
        if Path(key_text).is_file():
            key_text = Path(key_text).read_text()
        try:
            trusted = VerifierKey.parse(key_text)
        except CheckpointError as exc:
            raise click.ClickException(f"--key: {exc}") from None
    try:
        result = verify_export(data, against=against, trusted_key=trusted, strict=strict)
    except VerificationFailed as exc:
        click.echo(f"FAIL: {exc}", err=True)
        sys.exit(1)
    click.echo(f"OK: {result.tree_size} entries of {result.origin}, root {result.root_hash.hex()}")
    click.echo(f"signed by {result.public_key}")
    if result.checked_against is not None:
        click.echo(f"consistent with the saved checkpoint of {result.checked_against} entries")
    if result.revealed:
        click.echo(f"{result.revealed} revealed sensitive values match their commitments")


@audit.command()
@click.argument("export_file", metavar="EXPORT")
@click.argument("proposal_id", type=click.IntRange(min=1))
def recount(export_file: str, proposal_id: int) -> None:
    """Recount PROPOSAL_ID's vote from an export (run `verify` on it first): the latest vote of each member,
    hidden choices checked against their commitments, compared with the published tally.

    Exits 0 when every closed poll matches its tally, 1 when one does not (or a reveal does not match).
    """
    from governance.audit.recount import RecountError
    from governance.audit.recount import recount as recount_export

    try:
        polls = recount_export(_read(export_file), proposal_id)
    except RecountError as exc:
        click.echo(f"FAIL: {exc}", err=True)
        sys.exit(1)
    if not polls:
        raise click.ClickException(f"the export holds no vote on proposal {proposal_id}")
    failed = False
    for poll in polls:
        counts = ", ".join(f"{k} {v}" for k, v in poll.counts.items())
        if not poll.closed:
            hidden = len(poll.unrevealed)
            click.echo(
                f"OPEN: {poll.turnout + hidden} current votes, {hidden} of them hidden until the close"
            )
        elif poll.matches:
            click.echo(f"OK: {counts} (electorate {poll.electorate}), as the tally published")
        else:
            failed = True
            click.echo(f"FAIL: recounted {counts}; the tally published {poll.published}", err=True)
            if poll.unbacked:
                click.echo(f"frozen delegations no delegation entry backs: {poll.unbacked}", err=True)
            if poll.published_delegated != poll.delegated:
                click.echo(
                    f"delegated votes: recounted {poll.delegated}; published {poll.published_delegated}",
                    err=True,
                )
        if poll.delegated is not None:  # direct and delegated weight apart
            direct = ", ".join(f"{k} {v}" for k, v in poll.direct.items())
            delegated = ", ".join(f"{k} {v}" for k, v in poll.delegated.items())
            recused = f"; recused delegates {poll.recused_delegates}" if poll.recused_delegates else ""
            click.echo(f"  direct: {direct}; delegated: {delegated}{recused}")
            if poll.unrevealed:
                click.echo(f"{len(poll.unrevealed)} hidden votes were never revealed", err=True)
    sys.exit(1 if failed else 0)


# -- commands that read the log ------------------------------------------------------------------------------


@contextmanager
def _db_session() -> Iterator[tuple[Session, Any]]:
    from governance.db.engine import make_engine, read_session

    settings = load_settings()
    url = settings.effective_database_url
    with database_errors(url):
        engine = make_engine(url)
        try:
            with read_session(engine) as session:
                yield session, settings
        finally:
            engine.dispose()


def _api_client(api: str | None) -> CommonsClient | None:
    """The API client for --api: over an ``httpx.Client`` given as the click context object (tests pass
    Litestar's TestClient) or one for the URL; None means read the database."""
    ctx = click.get_current_context()
    if api or isinstance(ctx.obj, httpx.Client):
        return client_for(ctx, api or "", None, timeout=30)
    return None


@contextmanager
def _api_errors(client: CommonsClient) -> Iterator[None]:
    """The client's errors as `commons audit` words them: one line, with the status of an HTTP error."""
    try:
        yield
    except Unreachable as exc:  # an error (exit 3), a 4xx a refusal (exit 1)
        raise CliError(f"cannot reach {client.http.base_url}: {exc.reason}") from None
    except NotJson as exc:
        raise CliError(exc.detail) from None
    except ApiError as exc:
        if exc.status >= 500:
            raise CliError(f"the service failed ({exc.status}): {exc.detail}") from None
        raise click.ClickException(f"{exc.status}: {exc.detail}") from None


@audit.command()
@click.argument("seq", type=int)
@click.option("--size", "tree_size", type=int, help="Prove against this tree size (default: the latest).")
@click.option("--api", metavar="URL", help=API_OPTION_HELP)
def prove(seq: int, tree_size: int | None, api: str | None) -> None:
    """Print entry SEQ with its inclusion proof and the signed checkpoint it leads to (JSON)."""
    client = _api_client(api)
    if client is not None:
        with _api_errors(client):
            out = client.audit_entry(seq, tree_size)
            key = VerifierKey.parse(client.audit_public_key()["verifier_key"])
        origin = None
    else:
        from governance.audit import log
        from governance.audit.keys import audit_origin, checkpoint_json, signing_key
        from governance.domain.errors import DomainError

        with _db_session() as (session, settings):
            try:
                found = log.get_entry(session, seq)
                proof = log.inclusion_proof(session, seq, tree_size)
            except DomainError as exc:
                raise click.ClickException(exc.message) from None
            out = {
                **found.to_json(),
                "inclusion_proof": proof.to_json(),
                "checkpoint": checkpoint_json(settings, proof.tree_size, proof.root_hash),
            }
            key, origin = signing_key(settings).verifier, audit_origin(settings)
    try:
        cp = open_checkpoint(out["checkpoint"]["checkpoint"], key, origin)
    except CheckpointError as exc:
        raise click.ClickException(f"checkpoint: {exc}") from None
    hashes = [bytes.fromhex(h) for h in out["inclusion_proof"]["hashes"]]
    leaf = merkle.leaf_hash(dumps_plain(out["entry"]))
    if leaf.hex() != out["leaf_hash"] or not merkle.verify_inclusion(
        seq, cp.size, leaf, hashes, cp.root_hash
    ):
        raise click.ClickException("the inclusion proof does not verify against the signed checkpoint")
    click.echo(json.dumps(out, indent=2, ensure_ascii=False))


@audit.command()
@click.option("--api", metavar="URL", help=API_OPTION_HELP)
def checkpoint(api: str | None) -> None:
    """Print the latest signed checkpoint; save it to check the log later with `verify --against`."""
    client = _api_client(api)
    if client is not None:
        with _api_errors(client):
            note = client.audit_checkpoint()["checkpoint"]
        click.echo(note, nl=False)
        return
    from governance.audit import log
    from governance.audit.keys import audit_origin, signing_key

    with _db_session() as (session, settings):
        _, note = log.checkpoint(session, signing_key(settings), audit_origin(settings))
    click.echo(note, nl=False)


@audit.command()
@click.argument("out", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--api", metavar="URL", help=API_OPTION_HELP)
@click.option(
    "--include-sensitive",
    is_flag=True,
    help="Add the sensitive values not yet erased, with their salts (operators only; never publish).",
)
def export(out: str, api: str | None, include_sensitive: bool) -> None:
    """Write the full export (JSON Lines) to OUT ('-' for stdout)."""
    client = _api_client(api)
    if client is not None:
        if include_sensitive:
            raise click.ClickException("the API never serves sensitive values")
        with _api_errors(client):
            data = client.audit_export()
    else:
        from governance.audit import log
        from governance.audit.keys import audit_origin, signing_key

        with _db_session() as (session, settings):
            data = log.export_bytes(
                session, signing_key(settings), audit_origin(settings), include_sensitive=include_sensitive
            )
    if out == "-":
        sys.stdout.buffer.write(data)
    else:
        Path(out).write_bytes(data)
        click.echo(f"wrote {out}", err=True)
