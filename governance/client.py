"""The one JSON API client of the ``commons`` command line: member commands, the release gate, provenance
bundles and ``commons audit --api`` all call the service through it. It takes an ``httpx.Client`` so that tests
can pass Litestar's TestClient (the real app, in-process) or an ``httpx.MockTransport``.

Errors (the commands word them for their users)::

    ApiError            the service answered with an HTTP error: status, detail (the body's "detail", else its
     |                  text), field (the body's "field", if any), text (the raw body)
     +-- Unreachable    no answer at all: connection refused, timeout (status 0; reason is httpx's message, url
     |                  the service's address that was tried)
     +-- NotJson        an answer that is not JSON where JSON was expected
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


class ApiError(Exception):
    def __init__(self, status: int, detail: str, field: str | None = None, text: str = "") -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.field, self.text = status, detail, field, text


class Unreachable(ApiError):
    def __init__(self, reason: str, url: str = "") -> None:
        at = f" at {url}" if url else ""
        super().__init__(0, f"cannot reach the Commons service{at}: {reason}")
        self.reason, self.url = reason, url


class NotJson(ApiError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(status, "the service answered with something that is not JSON", text=text)


class CommonsClient:
    def __init__(self, http: httpx.Client, token: str | None = None) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    @classmethod
    def connect(cls, base_url: str, token: str | None, timeout: float = 30.0) -> CommonsClient:
        return cls(httpx.Client(base_url=base_url, timeout=timeout), token)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, headers=self.headers, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(str(exc) or type(exc).__name__, str(self.http.base_url).rstrip("/")) from exc
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                raise ApiError(r.status_code, r.text or r.reason_phrase, text=r.text) from None
            if not isinstance(body, dict):
                raise ApiError(r.status_code, r.text, text=r.text)
            raise ApiError(r.status_code, str(body.get("detail", r.text)), body.get("field"), r.text)
        return r

    @staticmethod
    def _json(r: httpx.Response) -> Any:
        try:
            return r.json()
        except ValueError:
            raise NotJson(r.status_code, r.text) from None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON (None for an empty answer)."""
        r = self._send(method, path, **kwargs)
        return self._json(r) if r.content else None

    def _get(self, path: str, **kwargs: Any) -> Any:
        """The answer's JSON, which must be there."""
        return self._json(self._send("GET", path, **kwargs))

    # -- members and proposals

    def me(self) -> Any:
        return self._call("GET", "/api/v1/members/me")

    def create_proposal(self, body: dict[str, Any]) -> Any:
        return self._call("POST", "/api/v1/proposals", json=body)

    def proposal(self, proposal_id: int) -> Any:
        return self._call("GET", f"/api/v1/proposals/{proposal_id}")

    def proposals(self, **filters: Any) -> Any:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call("GET", "/api/v1/proposals", params=params)

    def action(self, proposal_id: int, name: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", f"/api/v1/proposals/{proposal_id}/{name}", json=body or {})

    def write_outcome(self, proposal_id: int, body: dict[str, str], revise: bool = False) -> Any:
        """Write (POST) or revise (PUT) the outcome statement of a closed decision."""
        return self._call("PUT" if revise else "POST", f"/api/v1/proposals/{proposal_id}/outcome", json=body)

    def jobs(self, proposal_id: int | None = None, limit: int = 50) -> Any:
        params: dict[str, Any] = {"limit": limit}
        if proposal_id is not None:
            params["proposal_id"] = proposal_id
        return self._get("/api/v1/jobs", params=params)

    def vote(self, proposal_id: int, choice: str, reason: str | None) -> Any:
        return self.action(proposal_id, "votes", {"choice": choice, "reason": reason or ""})

    def tally(self, proposal_id: int) -> Any:
        return self._call("GET", f"/api/v1/proposals/{proposal_id}/tally")

    # -- data sources

    def data_sources(self, **filters: Any) -> Any:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._get("/api/v1/data-sources", params=params)

    def data_source(self, source_id: int) -> Any:
        return self._get(f"/api/v1/data-sources/{source_id}")

    def register_data_source(self, body: dict[str, Any]) -> Any:
        return self._call("POST", "/api/v1/data-sources", json=body)

    def data_source_ledger(self, source_id: int) -> Any:
        """Is the data source in the released model: the answer, the lineage and the audit proofs."""
        return self._get(f"/api/v1/data-sources/{source_id}/ledger")

    # -- the model registry

    def models(self, **filters: Any) -> Any:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._get("/api/v1/models", params=params)

    def model(self, version: str) -> Any:
        return self._get(f"/api/v1/models/{quote(version, safe='')}")

    def release_version(self, version: str) -> Any:
        """Release a verified version (the council or an admin; refused unless the gate allows it)."""
        return self._call("POST", f"/api/v1/models/{quote(version, safe='')}/release")

    def reject_version(self, version: str, reason: str) -> Any:
        """Reject a version for good (an admin)."""
        return self._call("POST", f"/api/v1/models/{quote(version, safe='')}/reject", json={"reason": reason})

    # -- releases

    def verdict(self, version: str) -> Any:
        """The release gate's verdict on a model version."""
        return self._get(f"/api/v1/releases/{version}/verdict")

    def bundle(self, version: str) -> Any:
        """The provenance bundle of a model version."""
        return self._get(f"/api/v1/releases/{version}/bundle")

    def request_verification(self, version: str) -> Any:
        """Queue the service's own verification of a stored version (one made outside the service)."""
        return self._call("POST", f"/api/v1/models/{version}/verify")

    def override(self, version: str, reason: str) -> Any:
        """Propose, or second, the council's override of the gate for a version, with a written reason."""
        return self._call("POST", f"/api/v1/models/{version}/override", json={"reason": reason})

    def overrides(self, version: str) -> Any:
        """The overrides of a version, proposed and granted."""
        return self._get(f"/api/v1/models/{version}/overrides")

    # -- evaluation probes and a version's community evaluation

    def submit_probe(self, body: dict[str, Any]) -> Any:
        return self._call("POST", "/api/v1/probes", json=body)

    def probes(self, state: str | None = None) -> Any:
        return self._get("/api/v1/probes", params={"state": state} if state else {})

    def probe(self, probe_id: int) -> Any:
        return self._get(f"/api/v1/probes/{probe_id}")

    def triage_probe(self, probe_id: int, decision: str, reason: str = "") -> Any:
        """A reviewer's ``accept`` or ``reject`` of a submitted probe."""
        return self._call("POST", f"/api/v1/probes/{probe_id}/{decision}", json={"reason": reason})

    def evaluation(self, version: str) -> Any:
        """The community evaluation stored with a version."""
        return self._get(f"/api/v1/models/{quote(version, safe='')}/evaluation")

    # -- delegation

    def delegate(self, body: dict[str, Any]) -> Any:
        return self._call("POST", "/api/v1/delegations", json=body)

    def delegations(self, revoked: bool = False) -> Any:
        return self._get("/api/v1/delegations", params={"revoked": "true"} if revoked else {})

    def revoke_delegation(self, delegation_id: int) -> Any:
        return self._call("POST", f"/api/v1/delegations/{delegation_id}/revoke")

    def carried(self) -> Any:
        """The votes you carry: the delegations made to you, and per open poll how many."""
        return self._get("/api/v1/delegations/carried")

    # -- the public audit log

    def audit_checkpoint(self) -> Any:
        return self._get("/api/v1/audit/checkpoint")

    def audit_public_key(self) -> Any:
        return self._get("/api/v1/audit/public-key")

    def audit_entry(self, seq: int, tree_size: int | None = None) -> Any:
        """Entry ``seq`` with its inclusion proof against ``tree_size`` (default: the latest) and the checkpoint."""
        params = {"tree_size": tree_size} if tree_size else {}
        return self._get(f"/api/v1/audit/entries/{seq}", params=params)

    def audit_export(self) -> bytes:
        """The full export (JSON Lines), as the service wrote it."""
        return self._send("GET", "/api/v1/audit/export").content
