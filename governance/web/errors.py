"""Domain errors mapped to HTTP in one place. Every error body: {status_code, error, detail, field}."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
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


STATUS: list[tuple[type[DomainError], int, str]] = [
    (NotAuthenticated, 401, "not_authenticated"),
    (PermissionDenied, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (InvalidInput, 422, "invalid_input"),
    (DomainError, 400, "bad_request"),
]


def _body(status: int, error: str, detail: str, field: str | None = None) -> dict[str, object]:
    return {"status_code": status, "error": error, "detail": detail, "field": field}


def domain_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    assert isinstance(exc, DomainError)
    for cls, status, name in STATUS:
        if isinstance(exc, cls):
            field = exc.field if isinstance(exc, InvalidInput) else None
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return Response(
                _body(status, name, exc.message, field),
                status_code=status,
                media_type=MediaType.JSON,
                headers=headers,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def integrity_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    # a concurrent request won a race on a unique constraint; nothing was written by this one
    log.info("integrity error: %s", exc)
    return Response(
        _body(409, "conflict", "the request conflicts with a concurrent change; try again"),
        status_code=409,
        media_type=MediaType.JSON,
    )


def busy_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    log.warning("database busy: %s", exc)
    return Response(
        _body(503, "unavailable", "the database is busy; try again"),
        status_code=503,
        media_type=MediaType.JSON,
        headers={"Retry-After": "1"},
    )


def http_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    assert isinstance(exc, HTTPException)
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
        _body(exc.status_code, name, detail), status_code=exc.status_code, media_type=MediaType.JSON
    )


EXCEPTION_HANDLERS = {
    DomainError: domain_error_handler,
    IntegrityError: integrity_error_handler,
    OperationalError: busy_error_handler,
    HTTPException: http_error_handler,
}
