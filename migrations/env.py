"""Alembic environment: the only way a schema is created. Every table module is imported here."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

import governance.audit.models
import governance.db.comments
import governance.db.delegation
import governance.db.evaluation
import governance.db.ledger
import governance.db.models
import governance.db.outcomes
import governance.db.registry
from governance.db.base import metadata
from governance.db.engine import make_engine

# every table module is imported above, before target_metadata is read
_TABLE_MODULES = (
    governance.audit.models,
    governance.db.comments,
    governance.db.evaluation,
    governance.db.ledger,
    governance.db.models,
    governance.db.outcomes,
    governance.db.registry,
)

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from governance.settings import get_settings

    return get_settings().effective_database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
