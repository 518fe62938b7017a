"""The web UI: server-rendered Jinja2 pages (templates/), served by the same app as the JSON API.

``ui_router`` holds every page controller, the session middleware (which sets ``scope["commons_actor"]`` so
the API's ``provide_actor`` serves both), the CSRF check and the HTML error pages; ``static_router`` serves
governance/web/static (vendored htmx, the stylesheet, the audit proof checker). docs/ui.md describes the pages.
"""

from __future__ import annotations

from typing import Any

from litestar import Router, get
from litestar.di import Provide
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from governance.web.ui.account import AccountPages
from governance.web.ui.audit_pages import AuditPages
from governance.web.ui.auth_pages import AuthPages
from governance.web.ui.comment_pages import CommentPages
from governance.web.ui.community import DataSourcePages, ElectionPages, MemberPages
from governance.web.ui.delegation_pages import DelegationPages
from governance.web.ui.jobs_pages import JobPages
from governance.web.ui.models_pages import ModelPages
from governance.web.ui.nudge_pages import NudgePages
from governance.web.ui.outcome_pages import OutcomePages
from governance.web.ui.probes_pages import ProbePages
from governance.web.ui.proposals import ProposalPages
from governance.web.ui.render import STATIC, UI_EXCEPTION_HANDLERS, provide_form, template_config
from governance.web.ui.security import csrf_guard, security_headers_middleware, session_middleware

__all__ = ["static_router", "template_config", "ui_router"]

PAGES: list[Any] = [
    AuthPages,
    AccountPages,
    DelegationPages,
    ProposalPages,
    NudgePages,
    OutcomePages,
    CommentPages,
    DataSourcePages,
    ElectionPages,
    JobPages,
    ModelPages,
    ProbePages,
    AuditPages,
    MemberPages,
]


@get("/favicon.ico", sync_to_thread=False)
def favicon() -> Redirect:
    """Browsers ask for /favicon.ico before they read the page's icon link."""
    return Redirect("/static/favicon.svg", status_code=301)


def ui_router() -> Router:
    return Router(
        path="/",
        route_handlers=[*PAGES, favicon],
        middleware=[security_headers_middleware, session_middleware],
        before_request=csrf_guard,
        dependencies={"form": Provide(provide_form)},
        exception_handlers=UI_EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        include_in_schema=False,
    )


def static_router() -> Router:
    return create_static_files_router(
        path="/static",
        directories=[STATIC],
        include_in_schema=False,
        middleware=[security_headers_middleware],
    )
