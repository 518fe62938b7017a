"""Domain errors mapped to HTTP in one place. Every error body: {status_code, error, detail, field, request_id}.

The error tree::

    DomainError (400 bad_request)
    +-- NotAuthenticated (401), PermissionDenied (403), NotFound (404), Conflict (409), InvalidInput (422)
    IntegrityError (409: a concurrent change won), OperationalError (503: the database is busy)
    HTTPException (its own status: 400 for a request that breaks the schema or governance/bounds.py)
    anything else (500): a bug. It is logged with its traceback and the request id; the body carries the same
    request id (as does every response's X-Request-ID header), never the traceback.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from litestar import MediaType, Request, Response
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import ClientException, HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy.exc import IntegrityError, OperationalError

from governance.domain.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
)

log = logging.getLogger("commons.web")

__all__ = ["EXCEPTION_HANDLERS", "NotAuthenticated"]

REQUEST_ID_HEADER = "x-request-id"
_SCOPE_KEY = "commons_request_id"
_GOOD_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


# -- request ids and request guards ---------------------------------------------------------------------------


def request_id(scope: Scope | ASGIConnection[Any, Any, Any, Any]) -> str:
    """This request's id: the client's ``X-Request-ID`` when it is a sane token, else a new random one. It is
    sent back in the ``X-Request-ID`` header and in every error body, and logged with every unexpected error."""
    raw = scope.scope if isinstance(scope, ASGIConnection) else scope
    found = raw.get(_SCOPE_KEY)
    if isinstance(found, str):
        return found
    new = uuid.uuid4().hex
    for name, value in raw.get("headers") or ():
        if name == REQUEST_ID_HEADER.encode() and _GOOD_ID.match(value.decode("latin-1")):
            new = value.decode("latin-1")
            break
    raw[_SCOPE_KEY] = new  # type: ignore[literal-required]
    return new


async def send_request_id(message: Message, scope: Scope) -> None:
    """``before_send`` hook: every HTTP response carries ``X-Request-ID``."""
    if message["type"] == "http.response.start":
        headers = list(message.get("headers") or [])
        if not any(name.lower() == REQUEST_ID_HEADER.encode() for name, _ in headers):
            headers.append((REQUEST_ID_HEADER.encode(), request_id(scope).encode("latin-1")))
            message["headers"] = headers


def refuse_nul_in_url(app: ASGIApp) -> ASGIApp:
    """Middleware: a NUL character (``%00``) in the path or the query string is refused with 400 before any
    handler reads it (PostgreSQL text cannot hold one; no id, name or filter of this service contains one)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            raw_path = scope.get("raw_path") or b""
            query = scope.get("query_string") or b""
            if "\x00" in scope["path"] or b"%00" in raw_path or b"%00" in query or b"\x00" in query:
                raise ClientException("the URL must not contain a NUL character (%00)")
        await app(scope, receive, send)

    return middleware


class CommonsRequest(Request[Any, Any, Any]):
    """The app's request class: a JSON body nested beyond the decoder's recursion limit is a 400, not a 500
    (governance/bounds.py bounds the depth of what does decode)."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            raise ClientException("the JSON body is nested too deeply") from None


# -- the handlers ----------------------------------------------------------------------------------------------


STATUS: list[tuple[type[DomainError], int, str]] = [
    (NotAuthenticated, 401, "not_authenticated"),
    (PermissionDenied, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (InvalidInput, 422, "invalid_input"),
    (DomainError, 400, "bad_request"),
]


def _body(
    request: Request[Any, Any, Any], status: int, error: str, detail: str, field: str | None = None
) -> dict[str, object]:
    return {
        "status_code": status,
        "error": error,
        "detail": detail,
        "field": field,
        "request_id": request_id(request),
    }


def domain_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    assert isinstance(exc, DomainError)
    for cls, status, name in STATUS:
        if isinstance(exc, cls):
            field = exc.field if isinstance(exc, InvalidInput) else None
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return Response(
                _body(request, status, name, exc.message, field),
                status_code=status,
                media_type=MediaType.JSON,
                headers=headers,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def integrity_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    # a concurrent request won a race on a unique constraint; nothing was written by this one
    log.info("integrity error (request %s): %s", request_id(request), exc)
    return Response(
        _body(request, 409, "conflict", "the request conflicts with a concurrent change; try again"),
        status_code=409,
        media_type=MediaType.JSON,
    )


def busy_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    log.warning("database busy (request %s): %s", request_id(request), exc)
    return Response(
        _body(request, 503, "unavailable", "the database is busy; try again"),
        status_code=503,
        media_type=MediaType.JSON,
        headers={"Retry-After": "1"},
    )


def wants_html(request: Request[Any, Any, Any]) -> bool:
    """A browser asking for a page outside the API (e.g. ``/proposals/abc``, which matches no route, so the UI
    router's HTML error pages never see it)."""
    path = request.url.path
    if path.startswith(("/api/", "/schema", "/static/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def http_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    if wants_html(request):
        from governance.web.ui.render import ui_http_error  # the UI imports this module: import when needed
        from governance.web.ui.security import CONTENT_SECURITY_POLICY

        response = ui_http_error(request, exc)
        response.headers.update(
            {
                "content-security-policy": CONTENT_SECURITY_POLICY,
                "x-frame-options": "DENY",
                "x-content-type-options": "nosniff",
            }
        )
        return response
    if exc.status_code >= 500:
        return unexpected_error_handler(request, exc)
    extra = getattr(exc, "extra", None)
    detail = exc.detail
    if extra:
        parts = []
        for item in extra if isinstance(extra, list) else [extra]:
            if isinstance(item, dict):
                key = item.get("key") or item.get("source") or ""
                parts.append(f"{key}: {item.get('message')}" if key else str(item.get("message")))
            else:
                parts.append(str(item))
        detail = f"{detail}: {'; '.join(parts)}"
    name = {400: "bad_request", 401: "not_authenticated", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "error"
    )
    return Response(
        _body(request, exc.status_code, name, detail),
        status_code=exc.status_code,
        media_type=MediaType.JSON,
        headers=getattr(exc, "headers", None),
    )


def log_unexpected(request: Request[Any, Any, Any], exc: Exception) -> str:
    """Log an unexpected error with its traceback, the request id, the method and the path; returns the id."""
    rid = request_id(request)
    log.error("unexpected error (request %s): %s %s", rid, request.method, request.url.path, exc_info=exc)
    return rid


def unexpected_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    rid = log_unexpected(request, exc)
    return Response(
        _body(request, 500, "internal_error", f"an unexpected error; it is logged as request {rid}"),
        status_code=500,
        media_type=MediaType.JSON,
    )


EXCEPTION_HANDLERS = {
    DomainError: domain_error_handler,
    IntegrityError: integrity_error_handler,
    OperationalError: busy_error_handler,
    HTTPException: http_error_handler,
    Exception: unexpected_error_handler,
}
