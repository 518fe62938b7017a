"""What the ``commons`` commands share: the settings, the database context of operator commands, the API client
of member commands, one mapping of errors to click's one-line messages, and printing."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
import httpx

from governance.client import ApiError, CommonsClient

F = TypeVar("F", bound=Callable[..., Any])


def pydantic_message(exc: Any) -> str:
    """A pydantic ValidationError in one line: ``field: message; ...``."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def load_settings() -> Any:
    """The settings from the environment; invalid ones end the command with one line."""
    from pydantic import ValidationError

    from governance.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException("invalid settings: " + pydantic_message(exc)) from None


def open_ctx() -> Any:
    """The service context of operator commands (the database upgraded to the latest schema first)."""
    from governance.db.engine import make_engine
    from governance.db.migrate import upgrade
    from governance.services.context import Ctx

    s = load_settings()
    upgrade(s.effective_database_url)
    return Ctx.create(make_engine(s.effective_database_url), s)


def domain_errors(fn: F) -> F:
    """Domain errors (operator commands) and API errors (member commands) end the command with one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from governance.domain.errors import DomainError

        try:
            return fn(*args, **kwargs)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        except ApiError as exc:
            where = f" ({exc.field})" if exc.field else ""
            raise click.ClickException(f"{exc.detail}{where}") from None

    return wrapper  # type: ignore[return-value]


class ApiContext:
    """The click context object of member commands: the API client, made from the settings on first use (tests
    pass one over Litestar's TestClient)."""

    def __init__(self, client: CommonsClient | None = None) -> None:
        self._client = client

    def client(self) -> CommonsClient:
        if self._client is None:
            s = load_settings()
            if not s.api_token:
                raise click.ClickException(
                    "set COMMONS_API_TOKEN (create one with `commons token create HANDLE`)"
                )
            self._client = CommonsClient.connect(s.api_url, s.api_token)
        return self._client


def api(click_ctx: click.Context) -> CommonsClient:
    """The API client of a member command."""
    return click_ctx.ensure_object(ApiContext).client()


def client_for(click_ctx: click.Context, base_url: str, token: str | None, timeout: float) -> CommonsClient:
    """The API client of a command with its own server option (gate, release, audit --api): over the
    ``httpx.Client`` given as the click context object (tests pass Litestar's TestClient or a MockTransport),
    else over a new one for ``base_url``."""
    injected = click_ctx.obj
    http = (
        injected if isinstance(injected, httpx.Client) else httpx.Client(base_url=base_url, timeout=timeout)
    )
    return CommonsClient(http, token)


def echo(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """Print an answer as sorted, indented JSON or rendered for people."""
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else render(data))
