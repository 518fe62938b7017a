"""Sign in, sign out, choose a password from an invitation link."""

from __future__ import annotations

import math
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from governance.domain.errors import InvalidInput
from governance.services import auth
from governance.services.context import Ctx
from governance.web.ui.render import Form, field_errors, page, redirect, safe_next, viewer
from governance.web.ui.security import end_session, read_invitation, session_cookie


def limiter(request: Request[Any, Any, Any]) -> auth.LoginLimiter:
    """The sign-in limits (their state is in the database, so a restart does not reset them)."""
    ctx: Ctx = request.app.state.ctx
    return auth.LoginLimiter(ctx)


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


class AuthPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/login", sync_to_thread=False)
    def login_form(self, request: Request[Any, Any, Any]) -> Template | Redirect:
        target = safe_next(request.query_params.get("next"))
        if viewer(request) is not None:
            return redirect(target)
        return page(request, "login.html", next=target, values={})

    @post("/login", sync_to_thread=True)
    def login(self, request: Request[Any, Any, Any], ctx: Ctx, form: Form) -> Template | Redirect:
        handle, password = form.get("handle").lower(), form.raw("password")
        target = safe_next(form.get("next"))
        address = client_address(request)
        now = ctx.clock.now()
        wait = limiter(request).retry_after(handle, address, now)
        if wait is not None:
            minutes = max(1, math.ceil(wait.total_seconds() / 60))
            return page(
                request,
                "login.html",
                status_code=429,
                next=target,
                values={"handle": handle},
                errors={"_form": f"Too many failed attempts. Try again in {minutes} minute(s)."},
            )
        errors = {}
        if not handle:
            errors["handle"] = "Enter your handle."
        if not password:
            errors["password"] = "Enter your password."
        if errors:
            return page(
                request, "login.html", status_code=422, next=target, values=form.values(), errors=errors
            )
        grant = auth.login(ctx, handle, password)
        if grant is None:
            limiter(request).failed(handle, address, now)
            return page(
                request,
                "login.html",
                status_code=401,
                next=target,
                values={"handle": handle},
                errors={"_form": "That handle and password do not match a member with a password."},
            )
        limiter(request).succeeded(handle, address)
        return redirect(target, cookies=[session_cookie(request, grant)])

    @post("/logout", sync_to_thread=True)
    def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        return redirect("/login", flash="You are signed out.", cookies=[end_session(request)])

    @get("/password/set", sync_to_thread=True)
    def password_form(self, request: Request[Any, Any, Any], ctx: Ctx, token: str = "") -> Template:
        member_id = read_invitation(ctx, token)
        return page(request, "password_set.html", token=token, valid=member_id is not None)

    @post("/password/set", sync_to_thread=True)
    def password_set(self, request: Request[Any, Any, Any], ctx: Ctx, form: Form) -> Template | Redirect:
        token = form.get("token")
        member_id = read_invitation(ctx, token)
        if member_id is None:
            return page(request, "password_set.html", status_code=403, token=token, valid=False)
        new, again = form.raw("password"), form.raw("password_again")
        errors: dict[str, str] = {}
        if new != again:
            errors["password_again"] = "The two passwords differ."
        else:
            try:
                auth.check_password_rules(new)
            except InvalidInput as exc:
                errors = field_errors(exc)
        if errors:
            return page(request, "password_set.html", status_code=422, token=token, valid=True, errors=errors)
        fp = auth.set_password(ctx, member_id, new)
        grant = auth.SignedIn(member_id, fp)
        return redirect("/", flash="Your password is set. Welcome!", cookies=[session_cookie(request, grant)])
