"""Shared fixtures. Environment first, before anything imports Flower or the settings."""

from __future__ import annotations

import os

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
os.environ["FLWR_DISABLE_UPDATE_CHECK"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("COMMONS_ENVIRONMENT", "test")
os.environ.setdefault("COMMONS_SECRET_KEY", "test-secret-key-not-for-production-0123456789")

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from governance.db.engine import make_engine
from governance.db.migrate import upgrade
from governance.domain.clock import FixedClock
from governance.domain.review import ActorView
from governance.schemas import MemberCreate
from governance.services import lifecycle, members
from governance.services.context import Ctx
from governance.settings import Settings

DEFAULT_PG = "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres"
# one template per test session, so parallel sessions never clash (an environment variable, because test
# modules import this file a second time as tests.conftest)
PG_TEMPLATE = os.environ.setdefault("COMMONS_TEST_PG_TEMPLATE", f"commons_tpl_{uuid.uuid4().hex[:10]}")


def _pg_admin_url() -> str | None:
    url = os.environ.get("COMMONS_TEST_POSTGRES_URL") or DEFAULT_PG
    try:
        eng = make_engine(url, poolclass=__import__("sqlalchemy.pool", fromlist=["NullPool"]).NullPool)
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
    except Exception:
        if os.environ.get("COMMONS_TEST_POSTGRES_URL"):
            raise  # CI asked for PostgreSQL: a failure to reach it is an error, not a skip
        return None
    return url


def _with_db(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "commons.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    url = _pg_admin_url()
    if url is None:
        pytest.skip(
            "PostgreSQL not reachable (set COMMONS_TEST_POSTGRES_URL or run one on 127.0.0.1:5432); "
            ".ci/run installs and starts it"
        )
    from sqlalchemy.pool import NullPool

    admin = make_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {PG_TEMPLATE} WITH (FORCE)"))
        c.execute(text(f"CREATE DATABASE {PG_TEMPLATE}"))
    upgrade(_with_db(url, PG_TEMPLATE))
    yield url
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {PG_TEMPLATE} WITH (FORCE)"))
    admin.dispose()


def _fresh_pg(admin_url: str) -> Iterator[str]:
    from sqlalchemy.pool import NullPool

    name = f"commons_t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name} TEMPLATE {PG_TEMPLATE}"))
    try:
        yield _with_db(admin_url, name)
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database per test: SQLite (a copy of a migrated file) and PostgreSQL (a template)."""
    if request.param == "sqlite":
        path = tmp_path / "commons.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        yield from _fresh_pg(request.getfixturevalue("pg_admin"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        environment="test",
        secret_key="test-secret-key-not-for-production-0123456789",
        data_dir=tmp_path / "data",
        database_url=db_url,
        triage_approvals_required=2,
        quorum=0.5,
        support_threshold=0.6,
        voting_days=7,
        extension_window_hours=24,
        extension_hours=24,
    )


@pytest.fixture
def ctx(engine: Engine, settings: Settings, clock: FixedClock) -> Ctx:
    return Ctx.create(engine, settings, clock)


PassTime = Callable[..., list[tuple[int, str]]]


@pytest.fixture
def pass_time(ctx: Ctx, clock: FixedClock) -> PassTime:
    """Time passes (``pass_time(days=7)``) and the service's deadline sweeper runs, as it does every 30 s in
    ``commons serve``: reads never close a vote themselves. Returns what the sweep did."""

    def advance(**delta: float) -> list[tuple[int, str]]:
        clock.advance(**delta)
        return lifecycle.sweep(ctx)

    return advance


@dataclass
class Person:
    id: int
    handle: str
    token: str
    actor: ActorView

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def add_person(ctx: Ctx, handle: str, *roles: str) -> Person:
    m = members.add_member(ctx, MemberCreate(handle=handle, display_name=handle.title(), roles=list(roles)))
    t = members.create_token(ctx, m.id, "test")
    actor = members.authenticate(ctx, t.token)
    assert actor is not None
    return Person(m.id, handle, t.token, actor)


@pytest.fixture
def community(ctx: Ctx) -> dict[str, Person]:
    """admin, 3 reviewers, 3 council members and 4 plain members (everyone is a member and votes)."""
    people = {"admin": add_person(ctx, "admin", "admin")}
    for h in ("rev1", "rev2", "rev3"):
        people[h] = add_person(ctx, h, "reviewer")
    for h in ("coun1", "coun2", "coun3"):
        people[h] = add_person(ctx, h, "council")
    for h in ("ann", "bob", "cat", "dan"):
        people[h] = add_person(ctx, h)
    return people
