"""Sessions and CSRF for the web UI.

- The session lives on the server (a ``ui_session`` row, governance/services/auth.py); its cookie (HttpOnly,
  SameSite=Lax, Secure over https) carries only a random token whose hash names the row. Signing out deletes
  the row, so the cookie, and any copy of it, is dead; setting a new password ends every session of that
  member; a session lasts ``SESSION_SECONDS``.
- ``session_middleware`` turns a valid session into ``scope["commons_actor"]`` (an ``ActorView``), the same
  actor ``governance.web.deps.provide_actor`` hands the JSON API, so both share one authorisation.
- CSRF: a random per-browser cookie, and in every form a token that is the HMAC of that cookie and of the
  session it was issued in (a signed double-submit token bound to the session): signing in or out changes
  every form's token. ``csrf_guard`` refuses any POST whose token is missing or wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import anyio.to_thread
from litestar import Request
from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from governance.domain.errors import PermissionDenied
from governance.services import auth
from governance.services.context import Ctx

SESSION_COOKIE = "commons_session"
CSRF_COOKIE = "commons_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 7 * 24 * 3600
INVITATION_SECONDS = 7 * 24 * 3600


class CsrfRefused(PermissionDenied):
    """A form came without a valid CSRF token."""


def _key(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), f"commons-ui:{purpose}".encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, purpose: str, data: dict[str, Any]) -> str:
    body = _b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(_key(secret, purpose), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(secret: str, purpose: str, value: str) -> dict[str, Any] | None:
    body, _, mac = value.partition(".")
    try:
        expected = hmac.new(_key(secret, purpose), body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        data = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


# -- sessions ----------------------------------------------------------------------------------------------------


def _secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


def session_cookie(request: Request[Any, Any, Any], grant: auth.SignedIn) -> Cookie:
    """Start a server-side session for ``grant`` and the cookie that names it."""
    ctx: Ctx = request.app.state.ctx
    value = auth.start_session(ctx, grant)
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


def end_session(request: Request[Any, Any, Any]) -> Cookie:
    """Sign out: end the session on the server (its row goes) and clear the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token and len(token) <= 100:
        auth.end_session(request.app.state.ctx, token)
    return Cookie(key=SESSION_COOKIE, value="", max_age=0, httponly=True, samesite="lax", path="/")


def _read_session(ctx: Ctx, value: str) -> auth.SessionMember | None:
    if not 20 <= len(value) <= 100:
        return None
    return auth.session_member(ctx, value)


def _cookies(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, sep, val = part.strip().partition("=")
                if sep:
                    out.setdefault(key, val)
    return out


def session_middleware(app: ASGIApp) -> ASGIApp:
    """Resolve the session into ``scope["commons_actor"]``; give a new browser its CSRF cookie."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        cookies = _cookies(scope)
        ctx: Ctx = scope["litestar_app"].state.ctx
        raw = cookies.get(SESSION_COOKIE)
        if raw:
            who = await anyio.to_thread.run_sync(_read_session, ctx, raw)
            if who is not None:
                scope["commons_actor"] = who.actor  # type: ignore[typeddict-unknown-key]
                scope["commons_member"] = who  # type: ignore[typeddict-unknown-key]
        csrf = cookies.get(CSRF_COOKIE)
        if csrf and 20 <= len(csrf) <= 100:
            scope["commons_csrf"] = csrf  # type: ignore[typeddict-unknown-key]
            await app(scope, receive, send)
            return
        fresh = secrets.token_urlsafe(32)
        scope["commons_csrf"] = fresh  # type: ignore[typeddict-unknown-key]
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        header = f"{CSRF_COOKIE}={fresh}; Path=/; HttpOnly; SameSite=Lax{secure}".encode("latin-1")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", header)]
            await send(message)

        await app(scope, receive, send_with_cookie)

    return middleware


# -- CSRF --------------------------------------------------------------------------------------------------------


def csrf_token(request: Request[Any, Any, Any]) -> str:
    """The token this browser's forms carry: the HMAC of its CSRF cookie and of its session (none before
    signing in), so a token issued in one session is refused in another."""
    ctx: Ctx = request.app.state.ctx
    cookie = str(request.scope.get("commons_csrf", ""))
    member = request.scope.get("commons_member")
    session = member.session_key if isinstance(member, auth.SessionMember) else ""
    message = f"{cookie}|{session}".encode()
    return _b64(hmac.new(_key(ctx.settings.secret_key, "csrf"), message, hashlib.sha256).digest())


async def csrf_guard(request: Request[Any, Any, Any]) -> None:
    """before_request hook of the UI router: every unsafe request carries a valid token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    cookie = request.cookies.get(CSRF_COOKIE)
    if not sent or not cookie or not hmac.compare_digest(sent, csrf_token(request)):
        raise CsrfRefused(
            "this form's security token is missing or out of date; go back, reload the page and try again"
        )


# -- invitations ---------------------------------------------------------------------------------------------------


def invitation_token(ctx: Ctx, member_id: int) -> str:
    """A link token that lets a member choose a password, once (it binds to their current password)."""
    fp = auth.invitation_fingerprint(ctx, member_id)
    exp = int(time.time()) + INVITATION_SECONDS
    return sign(ctx.settings.secret_key, "invitation", {"m": member_id, "f": fp, "e": exp})


def read_invitation(ctx: Ctx, token: str) -> int | None:
    """The member an invitation is for, or None when it is forged, expired or already used."""
    data = unsign(ctx.settings.secret_key, "invitation", token)
    if data is None:
        return None
    member_id, fp, exp = data.get("m"), data.get("f"), data.get("e")
    if not isinstance(member_id, int) or not isinstance(fp, str) or not isinstance(exp, int):
        return None
    if exp < time.time():
        return None
    try:
        current = auth.invitation_fingerprint(ctx, member_id)
    except Exception:
        return None
    return member_id if hmac.compare_digest(current, fp) else None


# -- response headers ----------------------------------------------------------------------------------------------

#: only the app's own scripts run (htmx and the audit page's verifier are served from /static); nobody frames it
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
_EVERY_RESPONSE = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
_HTML_RESPONSE = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
]


def security_headers_middleware(app: ASGIApp) -> ASGIApp:
    """Every response: nosniff and a same-origin referrer policy; HTML pages also the CSP and no framing."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                extra = _EVERY_RESPONSE + (_HTML_RESPONSE if html else [])
                message["headers"] = headers + [(k, v) for k, v in extra if k not in names]
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware
