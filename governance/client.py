"""A small JSON API client for the CLI's member commands. It takes an ``httpx.Client`` so that tests can pass
Litestar's TestClient (the real app, in-process) or an ``httpx.MockTransport``."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.field = status, detail, field


class CommonsClient:
    def __init__(self, http: httpx.Client, token: str | None = None) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    @classmethod
    def connect(cls, base_url: str, token: str | None, timeout: float = 30.0) -> CommonsClient:
        return cls(httpx.Client(base_url=base_url, timeout=timeout), token)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self.http.request(method, path, headers=self.headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the Commons service: {exc}") from exc
        if r.status_code >= 400:
            try:
                body = r.json()
                raise ApiError(r.status_code, str(body.get("detail", r.text)), body.get("field"))
            except ValueError:
                raise ApiError(r.status_code, r.text or r.reason_phrase) from None
        return r.json() if r.content else None

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

    def vote(self, proposal_id: int, choice: str, reason: str | None) -> Any:
        return self.action(proposal_id, "votes", {"choice": choice, "reason": reason or ""})

    def tally(self, proposal_id: int) -> Any:
        return self._call("GET", f"/api/v1/proposals/{proposal_id}/tally")
