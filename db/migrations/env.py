"""Alembic environment: plain SQL revisions, then the re-applied SQL code files."""
from alembic import context
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from psimem.connect import database_url
from psimem.sqlfiles import apply_sql_files

config = context.config


def sqlalchemy_url() -> str:
    url = config.get_main_option("sqlalchemy.url") or database_url()
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()
            heads = set(ScriptDirectory.from_config(config).get_heads())
            current = set(context.get_context().get_current_heads())
            if current and current == heads:
                apply_sql_files(connection.connection.driver_connection)


if context.is_offline_mode():
    raise SystemExit("psimem migrations run online only (they read install-time settings)")
run_migrations_online()
