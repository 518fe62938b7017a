"""Rendering for the UI: pages with their shared context, redirects with a flash message, form data, and the
HTML error pages (the JSON API keeps governance/web/errors.py; this maps the same errors to pages)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from jinja2 import Environment
from litestar import Request, Response
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import Cookie, FormMultiDict
from litestar.exceptions import ClientException, HTTPException
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig
from sqlalchemy.exc import IntegrityError, OperationalError

from governance.domain.errors import Conflict, DomainError, InvalidInput, NotFound, PermissionDenied
from governance.domain.review import ActorView
from governance.services.auth import SessionMember
from governance.web.errors import NotAuthenticated, log_unexpected, request_id
from governance.web.ui.markup import render_markdown
from governance.web.ui.security import csrf_token

log = logging.getLogger("commons.ui")

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "templates"
STATIC = Path(__file__).resolve().parents[1] / "static"
FLASH_COOKIE = "commons_flash"


# -- template environment --------------------------------------------------------------------------------------


def _when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(fmt) + " UTC"


def _label(value: str | None) -> str:
    return (value or "").replace("_", " ")


def _configure(engine: JinjaTemplateEngine) -> None:
    env: Environment = engine.engine
    env.filters["when"] = _when
    env.filters["label"] = _label
    env.filters["markdown"] = render_markdown  # members' Markdown, safely (governance/web/ui/markup.py)
    env.trim_blocks = True
    env.lstrip_blocks = True


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_configure)


# -- pages -----------------------------------------------------------------------------------------------------


def viewer(request: Request[Any, Any, Any]) -> ActorView | None:
    actor = request.scope.get("commons_actor")
    return actor if isinstance(actor, ActorView) else None


def page(request: Request[Any, Any, Any], name: str, status_code: int = 200, **context: Any) -> Template:
    """A full page: the template plus who is signed in, their roles, the CSRF token and any flash message."""
    who = request.scope.get("commons_member")
    actor = viewer(request)
    cookies: list[Cookie] = []
    flash = request.cookies.get(FLASH_COOKIE)
    if flash:
        cookies.append(Cookie(key=FLASH_COOKIE, value="", max_age=0, path="/", httponly=True, samesite="lax"))
    base: dict[str, Any] = {
        "me": who if isinstance(who, SessionMember) else None,
        "actor": actor,
        "roles": sorted(r.value for r in actor.roles) if actor else [],
        "csrf": csrf_token(request),
        "flash": unquote(flash)[:300] if flash else None,
        "path": request.url.path,
        "errors": {},
        "values": {},
    }
    base.update(context)
    return Template(template_name=name, context=base, status_code=status_code, cookies=cookies)


def redirect(path: str, flash: str | None = None, cookies: list[Cookie] | None = None) -> Redirect:
    """See Other (the page after a form), with a one-shot message shown on the next page."""
    jar = list(cookies or [])
    if flash:
        jar.append(
            Cookie(key=FLASH_COOKIE, value=quote(flash), max_age=60, path="/", httponly=True, samesite="lax")
        )
    return Redirect(path=path, status_code=303, cookies=jar)


def safe_next(target: str | None) -> str:
    """Only a path on this site (never //host or a scheme): no open redirects after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


class Form:
    """The submitted form: text values stripped, missing ones empty."""

    def __init__(self, data: FormMultiDict) -> None:
        self.data = data

    def get(self, name: str, default: str = "") -> str:
        value = self.data.get(name)
        return value.strip() if isinstance(value, str) else default

    def raw(self, name: str) -> str:
        value = self.data.get(name)
        return value if isinstance(value, str) else ""

    def getall(self, name: str) -> list[str]:
        return [v.strip() for v in self.data.getall(name, []) if isinstance(v, str)]

    def checked(self, name: str) -> bool:
        return self.get(name) in ("on", "true", "1", "yes")

    def values(self) -> dict[str, str]:
        return {k: v.strip() for k, v in self.data.items() if isinstance(v, str) and k != "csrf_token"}


async def provide_form(request: Request[Any, Any, Any]) -> Form:
    data = await request.form()
    for name, value in data.multi_items():
        if "\x00" in name or (isinstance(value, str) and "\x00" in value):
            raise ClientException("a form field must not contain a NUL character")
    return Form(data)


def field_errors(exc: InvalidInput, default_field: str = "_form") -> dict[str, str]:
    """{field: message} for a form; a dotted field ("target.kind") is shown at its first part too."""
    name = exc.field or default_field
    errors = {name: exc.message}
    head = name.split(".", 1)[0]
    errors.setdefault(head, exc.message)
    return errors


def pydantic_errors(exc: Any) -> dict[str, str]:
    """Validation errors by field, as sentences (not Pydantic's wording: "String should match pattern ...")."""
    out: dict[str, str] = {}
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ())) or "_form"
        out.setdefault(loc, _sentence(loc, e))
    return out


def _sentence(loc: str, e: Any) -> str:
    what = loc.rsplit(".", 1)[-1].replace("_", " ")
    ctx = e.get("ctx") or {}
    kind = str(e.get("type", ""))
    if kind == "string_pattern_mismatch":
        return f"the {what} has characters that are not allowed here"
    if kind == "string_too_short":
        return f"the {what} needs at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"the {what} has at most {ctx.get('max_length')} characters"
    if kind == "missing":
        return f"the {what} is required"
    if kind in ("int_parsing", "int_type"):
        return f"the {what} must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return f"the {what} must be a number"
    return str(e.get("msg", "invalid")).removeprefix("Value error, ")


# -- error pages -----------------------------------------------------------------------------------------------

_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible now",
    422: "Invalid input",
    429: "Too many attempts",
    500: "Something went wrong",
    503: "Busy",
}


def error_page(request: Request[Any, Any, Any], status: int, message: str) -> Response[Any]:
    return page(
        request, "error.html", status_code=status, title=_TITLES.get(status, "Error"), message=message
    )


def ui_domain_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, DomainError)
    if isinstance(exc, NotAuthenticated):
        return redirect(f"/login?next={quote(request.url.path)}")
    status = 400
    for cls, code in ((PermissionDenied, 403), (NotFound, 404), (Conflict, 409), (InvalidInput, 422)):
        if isinstance(exc, cls):
            status = code
            break
    return error_page(request, status, exc.message)


def ui_http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    if exc.status_code >= 500:
        return ui_unexpected_error(request, exc)
    return error_page(request, exc.status_code, str(exc.detail))


def ui_integrity_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.info("integrity error: %s", exc)
    return error_page(request, 409, "that clashed with a change made at the same moment; try again")


def ui_busy_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("database busy (request %s): %s", request_id(request), exc)
    return error_page(request, 503, "the database is busy; try again in a moment")


def ui_unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A bug: logged with its traceback and the request id, which the page shows (never the traceback)."""
    rid = log_unexpected(request, exc)
    return error_page(request, 500, f"Something went wrong on our side. It is logged as request {rid}.")


UI_EXCEPTION_HANDLERS = {
    DomainError: ui_domain_error,
    HTTPException: ui_http_error,
    IntegrityError: ui_integrity_error,
    OperationalError: ui_busy_error,
    Exception: ui_unexpected_error,
}
