"""What the OpenAPI document says beyond the handlers' own signatures: the bearer-token security scheme (on
every operation that takes the caller) and the error responses every operation can give, with the one error
body governance/web/errors.py writes. Written here once, applied to every JSON API handler by
:func:`document`, so a new endpoint is documented like the others without a line of its own."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from litestar import Controller
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from pydantic import BaseModel

BEARER = "bearer"


class ErrorBody(BaseModel):
    """The body of every error answer (governance/web/errors.py)."""

    status_code: int
    error: str
    detail: str
    field: str | None = None
    request_id: str


_ERRORS = {
    400: "bad input: breaks the schema or a limit (docs/api.md, Limits)",
    403: "the caller may not do this",
    404: "no such resource",
    409: "the resource is not in a state that allows this",
    422: "a value is not acceptable (the field is named)",
    500: "a bug: logged on the server under the body's request id",
    503: "the database is busy: try again",
}
_UNAUTHENTICATED = (401, "no API token, or an unknown or revoked one")


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


def _takes_caller(handler: HTTPRouteHandler) -> bool:
    return "actor" in inspect.signature(handler.fn).parameters


def document(controllers: Iterable[type[Controller]]) -> None:
    """Give every handler of ``controllers`` its error responses and, when it takes the caller, the bearer
    security requirement (idempotent)."""
    for controller in controllers:
        for value in vars(controller).values():
            if not isinstance(value, HTTPRouteHandler):
                continue
            errors = dict(_ERRORS)
            if _takes_caller(value):
                errors[_UNAUTHENTICATED[0]] = _UNAUTHENTICATED[1]
                value.security = [{BEARER: []}]
            value.responses = {code: _spec(text) for code, text in sorted(errors.items())} | dict(
                value.responses or {}
            )


def config(description: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Commons",
        version="1",
        description=description,
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API token: `commons token create HANDLE`, or the web UI's account page.",
                )
            }
        ),
    )


__all__: list[Any] = ["ErrorBody", "config", "document"]
