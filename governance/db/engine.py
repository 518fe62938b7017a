"""Engines and sessions. SQLite runs in WAL mode; write transactions take the write lock up front.

The service layer owns transactions: ``write_session`` opens one that begins with ``BEGIN IMMEDIATE`` on
SQLite (so two writers never deadlock upgrading a read lock) and commits on success; ``read_session``
never writes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

_IMMEDIATE = "commons_sqlite_immediate"


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if "poolclass" not in kwargs:
            # enough pooled connections for the handler threads: a connection opened and closed per request
            # would pay for its PRAGMAs each time
            kwargs.setdefault("pool_size", 32)
            kwargs.setdefault("max_overflow", 32)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


_WRITE_LOCKS: dict[int, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _sqlite_write_lock(engine: Engine) -> threading.Lock:
    # SQLite has one writer at a time. Threads of this process queue on a lock instead of spinning in SQLite's
    # busy handler, whose growing sleeps (up to 100 ms) turned contention into long tail latencies; other
    # processes (``commons worker``) still wait on the database lock through busy_timeout.
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(id(engine.pool), threading.Lock())


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """One write transaction: committed when the block ends, rolled back on any exception."""
    if not is_sqlite(engine):
        with Session(engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
        return
    with (
        _sqlite_write_lock(engine),
        Session(engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False) as session,
    ):
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    # closing (not rolling back) ends the transaction without expiring what was loaded
    with Session(engine, expire_on_commit=False) as session:
        yield session
