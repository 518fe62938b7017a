"""What the ``commons`` commands share: the settings, the database context of operator commands, the API client
of the commands that call the service, one mapping of errors to one-line messages and exit codes, and printing.

Exit codes, one meaning each across the CLI (``commons gate`` adds 2, pending)::

    0  done
    1  refused: the service answered 4xx (not allowed, not found, invalid value), or an operator command's
       request broke a rule (DomainError); the message says why
    3  error: the service or the database cannot be reached, the service failed (5xx or not JSON), invalid
       settings, bad command-line usage (click's own code for it, 2, means "pending" to the gate)

No command prints a traceback: an unexpected exception ends ``commons`` with one line and exit 3
(``commons --traceback ...`` shows it).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import httpx

from governance.client import ApiError, CommonsClient, NotJson, Unreachable

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_REFUSED, EXIT_ERROR = 0, 1, 3

API_HELP = (
    "Calls the service at COMMONS_API_URL (default http://COMMONS_HOST:COMMONS_PORT, i.e. "
    "http://127.0.0.1:8000) with the token in COMMONS_API_TOKEN (create one with `commons token create "
    "HANDLE`). Exit 0 done, 1 refused by the service, 3 error (unreachable, bad usage)."
)


class CliError(click.ClickException):
    """An error that is not a refusal (exit 3): unreachable, failed, misconfigured, misused."""

    exit_code = EXIT_ERROR


class CliUsageError(click.UsageError):
    """Bad command-line usage, exit 3 (never 2, which the gate's callers read as "pending")."""

    exit_code = EXIT_ERROR


def first_line(text: object) -> str:
    return (str(text).strip().splitlines() or [""])[0]


def redact(url: str) -> str:
    """A database URL without its password (the text as given when it does not parse)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL that does not parse: named without what comes before '@' (credentials)
        return url.split("@")[-1] if "@" in url else url


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Errors of reaching, parsing or migrating the database as one line naming it (exit 3)."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, DBAPIError

    try:
        yield
    except DBAPIError as exc:  # OperationalError, InterfaceError...: the driver's first line says why
        raise CliError(f"cannot use the database {redact(url)}: {first_line(exc.orig)}") from None
    except ArgumentError as exc:
        raise CliError(f"invalid database URL {redact(url)}: {first_line(exc)}") from None
    except ImportError as exc:
        raise CliError(f"no driver for the database URL {redact(url)}: {first_line(exc)}") from None
    except CommandError as exc:
        raise CliError(f"database migration: {first_line(exc)}") from None


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
        raise CliError("invalid settings: " + pydantic_message(exc)) from None


def open_ctx() -> Any:
    """The service context of operator commands (the database upgraded to the latest schema first)."""
    from governance.db.engine import make_engine
    from governance.db.migrate import upgrade
    from governance.services.context import Ctx

    s = load_settings()
    url = s.effective_database_url
    with database_errors(url):
        upgrade(url)
        return Ctx.create(make_engine(url), s)


def api_failure(exc: ApiError, *, status_prefix: bool = False) -> click.ClickException:
    """An API error as one line: a 4xx is a refusal (exit 1), no answer, not JSON or a 5xx an error (exit 3).
    ``status_prefix`` puts "HTTP <status>: " before a refusal's detail."""
    if isinstance(exc, (Unreachable, NotJson)):
        return CliError(exc.detail)
    if exc.status >= 500:
        return CliError(f"the service failed (HTTP {exc.status}): {exc.detail}")
    where = f" ({exc.field})" if exc.field else ""
    prefix = f"HTTP {exc.status}: " if status_prefix else ""
    return click.ClickException(f"{prefix}{exc.detail}{where}")


def domain_errors(fn: F) -> F:
    """Domain errors (operator commands: refused, exit 1) and API errors (refused or error, see
    :func:`api_failure`) end the command with one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from governance.domain.errors import DomainError

        try:
            return fn(*args, **kwargs)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        except ApiError as exc:
            raise api_failure(exc) from None

    return wrapper  # type: ignore[return-value]


class ApiCommand(click.Command):
    """A command that calls the service: its help ends saying which server and token it uses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", API_HELP)
        super().__init__(*args, **kwargs)


class ApiGroup(click.Group):
    """A group of commands that call the service (each one's help says which server and token)."""

    command_class = ApiCommand

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", API_HELP)
        super().__init__(*args, **kwargs)


class ApiContext:
    """The click context object of member commands: the API client, made from the settings on first use (tests
    pass one over Litestar's TestClient)."""

    def __init__(self, client: CommonsClient | None = None) -> None:
        self._client = client

    def client(self) -> CommonsClient:
        if self._client is None:
            s = load_settings()
            if not s.api_token:
                raise CliError(
                    f"set COMMONS_API_TOKEN to call {s.effective_api_url} "
                    "(create one with `commons token create HANDLE`)"
                )
            self._client = CommonsClient.connect(s.effective_api_url, s.api_token)
        return self._client


def api(click_ctx: click.Context) -> CommonsClient:
    """The API client of a member command."""
    return click_ctx.ensure_object(ApiContext).client()


def default_server() -> str:
    """The service's address when a command's --server is not given: COMMONS_API_URL, else the address
    `commons serve` listens on (COMMONS_HOST, COMMONS_PORT)."""
    return str(load_settings().effective_api_url)


def client_for(
    click_ctx: click.Context, base_url: str | None, token: str | None, timeout: float
) -> CommonsClient:
    """The API client of a command with its own server option (gate, release, audit --api): over the
    ``httpx.Client`` given as the click context object (tests pass Litestar's TestClient or a MockTransport),
    else over a new one for ``base_url`` (default: :func:`default_server`)."""
    injected = click_ctx.obj
    if isinstance(injected, httpx.Client):
        return CommonsClient(injected, token)
    return CommonsClient(httpx.Client(base_url=base_url or default_server(), timeout=timeout), token)


class CommonsGroup(click.Group):
    """A group whose usage errors (an unknown command or option, a bad value) exit 3, and, with
    ``catch_all``, whose unexpected exceptions end in one line and exit 3 instead of a traceback (unless the
    context's ``traceback`` parameter asks for it)."""

    catch_all = False

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _exit_3(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _exit_3(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if not self.catch_all or ctx.params.get("traceback"):
                raise
            raise CliError(unexpected(exc)) from None


def _exit_3(exc: click.UsageError) -> click.UsageError:
    """A usage error that exits 3 (a bare command group's help, click's NoArgsIsHelpError, is left alone)."""
    if isinstance(exc, (CliUsageError, click.exceptions.NoArgsIsHelpError)):
        return exc
    return CliUsageError(exc.format_message(), exc.ctx)


def unexpected(exc: BaseException) -> str:
    """An exception no command expected, in one line."""
    module = type(exc).__module__
    if module.startswith("sqlalchemy"):
        orig = getattr(exc, "orig", None)
        return f"database error: {first_line(orig if orig is not None else exc)}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    text = first_line(exc)
    return (
        f"unexpected error: {type(exc).__name__}{': ' + text if text else ''} "
        "(`commons --traceback ...` shows where)"
    )


def echo(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """Print an answer as sorted, indented JSON or rendered for people."""
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else render(data))
