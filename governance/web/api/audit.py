"""The public audit log API: checkpoints, entries with inclusion proofs, consistency proofs, the full export.

Everything here is public and needs no token: the point of the log is that anyone can check it. Sensitive
values never leave through this API; entries carry only their salted commitments.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

from litestar import Controller, MediaType, get
from litestar.params import Parameter
from litestar.response import Stream
from sqlmodel import Session

from governance.audit import log
from governance.audit.keys import audit_origin, checkpoint_json, signing_key
from governance.bounds import MAX_OFFSET, Seq
from governance.settings import Settings


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]

    @get("/checkpoint", sync_to_thread=True)
    def checkpoint(self, session: Session, settings: Settings) -> dict[str, Any]:
        """The latest signed checkpoint (C2SP signed note). Save it to check the log later with --against."""
        head = log.tree_head(session)
        return checkpoint_json(settings, head.size, head.root_hash)

    @get("/checkpoint.txt", sync_to_thread=True, media_type=MediaType.TEXT)
    def checkpoint_text(self, session: Session, settings: Settings) -> str:
        """The latest signed checkpoint as plain text, ready to save to a file."""
        head = log.tree_head(session)
        return str(checkpoint_json(settings, head.size, head.root_hash)["checkpoint"])

    @get("/public-key", sync_to_thread=True)
    def public_key(self, settings: Settings) -> dict[str, Any]:
        """The log's Ed25519 public key: as a signed-note verifier key, as PEM, and raw (base64)."""
        verifier = signing_key(settings).verifier
        return {
            "algorithm": "Ed25519",
            "name": verifier.name,
            "key_id": verifier.key_id.hex(),
            "verifier_key": verifier.encode(),
            "public_key_pem": verifier.pem(),
        }

    @get("/verifier-key", sync_to_thread=True)
    def verifier_key(self, settings: Settings) -> dict[str, Any]:
        """The keys that vouch for a release: the verifier's Ed25519 key (it signs every verification report;
        never the log's key) and the ECDSA P-256 key that signs released versions (OpenSSF Model Signing)."""
        from governance.audit.keys import trusted_verifier
        from governance.release_signing import public_key_pem

        verifier = trusted_verifier(settings)
        return {
            "algorithm": "Ed25519",
            "name": verifier.name,
            "key_id": verifier.key_id.hex(),
            "verifier_key": verifier.encode(),
            "public_key_pem": verifier.pem(),
            "model_signing_public_key_pem": public_key_pem(settings),
        }

    @get("/entries", sync_to_thread=True)
    def entries(
        self,
        session: Session,
        start: int = Parameter(default=0, ge=0, le=MAX_OFFSET),
        end: int | None = Parameter(
            default=None, ge=0, le=MAX_OFFSET, description="exclusive; at most 1000 per page"
        ),
    ) -> dict[str, Any]:
        """Entries with start <= seq < end, in order."""
        head = log.tree_head(session)
        if end is not None and end < start:
            raise log.AuditInvalid(f"end {end} is before start {start}", field="end")
        stop = head.size if end is None else min(end, head.size)
        rows = log.list_entries(session, start, max(start, stop))
        return {"tree_size": head.size, "entries": [row.to_json() for row in rows]}

    @get("/entries/{seq:int}", sync_to_thread=True)
    def entry(
        self,
        session: Session,
        settings: Settings,
        seq: Seq,
        tree_size: int | None = Parameter(
            default=None, ge=1, le=MAX_OFFSET, description="prove against this size"
        ),
    ) -> dict[str, Any]:
        """One entry with its inclusion proof and the signed checkpoint the proof leads to."""
        found = log.get_entry(session, seq)
        proof = log.inclusion_proof(session, seq, tree_size)
        return {
            **found.to_json(),
            "inclusion_proof": proof.to_json(),
            "checkpoint": checkpoint_json(settings, proof.tree_size, proof.root_hash),
        }

    @get("/consistency", sync_to_thread=True)
    def consistency(
        self,
        session: Session,
        settings: Settings,
        first: int = Parameter(ge=0, le=MAX_OFFSET),
        second: int | None = Parameter(
            default=None, ge=0, le=MAX_OFFSET, description="default: the current size"
        ),
    ) -> dict[str, Any]:
        """Proof that the log of ``first`` entries is a prefix of the log of ``second`` entries."""
        proof = log.consistency_proof(session, first, second)
        return {
            **proof.to_json(),
            "checkpoint": checkpoint_json(settings, proof.second, proof.second_root),
        }

    @get("/export", sync_to_thread=True, media_type="application/x-ndjson")
    def export(self, session: Session, settings: Settings) -> Stream:
        """The whole log as JSON Lines (header with checkpoint and public key, then every entry).

        Written to a spooled temporary file inside the request's session (memory up to 16 MB, disk beyond),
        then streamed, so a large log never sits in memory whole.
        """
        spool = tempfile.SpooledTemporaryFile(max_size=16 * 2**20)  # noqa: SIM115 (closed by the stream)
        for line in log.export_lines(session, signing_key(settings), audit_origin(settings)):
            spool.write(line + b"\n")
        spool.seek(0)

        def chunks() -> Iterator[bytes]:
            with spool:
                while block := spool.read(2**20):
                    yield block

        return Stream(
            chunks(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="commons-audit.jsonl"'},
        )
