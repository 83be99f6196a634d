"""`psimem db migrate` is `alembic upgrade head`, with install-time sizes as -x options."""
from __future__ import annotations

from argparse import Namespace

from alembic import command
from alembic.config import Config

from .settings import REPO_ROOT


def alembic_config(url: str, x: dict[str, object] | None = None) -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.cmd_opts = Namespace(x=[f"{k}={v}" for k, v in (x or {}).items() if v is not None])
    return cfg


def upgrade(url: str, revision: str = "head", universal_dim: int | None = None, native_dim: int | None = None) -> None:
    command.upgrade(alembic_config(url, {"universal_dim": universal_dim, "native_dim": native_dim}), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    import psycopg

    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()[0]
        if not exists:
            return None
        row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
        return row[0] if row else None
