"""A real PostgreSQL 15 server with pgvector, pg_cron, PL/Python and pgcrypto.

pytest-postgresql's executor starts it through scripts/pg_ctl_as_postgres (as root it
runs as the postgres user) with its data and sockets in a postgres-owned directory
under /var/tmp, which the postgres user can reach wherever the checkout lives. The
test database is migrated once; each test runs in a transaction that is rolled back.
"""
from __future__ import annotations

import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from pgvector.psycopg import register_vector
from pytest_postgresql.executors import PostgreSQLExecutor

from psimem import migrate
from psimem.cluster import make_postgres_dir
from psimem.settings import REPO_ROOT

DBNAME = "psimem_test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(dbname: str = DBNAME):
    """A PostgreSQL server of its own whose pg_cron serves `dbname` (psimem installs only there)."""
    root = Path(tempfile.mkdtemp(prefix="psimem-test-", dir="/var/tmp"))
    make_postgres_dir(root, 0o755)
    port = free_port()
    executor = PostgreSQLExecutor(
        executable=str(REPO_ROOT / "scripts" / "pg_ctl_as_postgres"),
        host="127.0.0.1",
        port=port,
        datadir=str(root / "data"),
        unixsocketdir=str(root),
        logfile=str(root / "postgres.log"),
        startparams="-w",
        dbname=dbname,
        postgres_options=(f"-c shared_preload_libraries=pg_cron -c cron.database_name={dbname} "
                          "-c cron.use_background_workers=on -c max_worker_processes=16 "
                          "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                          "-c max_connections=50"),
    )
    executor.start()
    try:
        yield executor
    finally:
        executor.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    with server() as executor:
        yield executor


def server_url(server, dbname: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{server.port}/{dbname}"


def wait_until_accepting(url: str, seconds: float = 30.0) -> None:
    """pg_ctl -w can return while the server still answers "the database system is starting up"."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def migrated_database(executor, dbname: str = DBNAME) -> str:
    wait_until_accepting(server_url(executor, "postgres"))
    with psycopg.connect(server_url(executor, "postgres"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {dbname}")
    url = server_url(executor, dbname)
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def db_url(pg_server) -> str:
    url = migrated_database(pg_server)
    # The daily and hourly jobs (Night Cycle, procedural and kernel maintenance, history trim)
    # would consolidate, prune or log the committed users of a test at whatever minute they
    # fire; tests run those functions themselves, on their own clock (test_cron_runs schedules
    # its own jobs to see pg_cron run them).
    with psycopg.connect(url, autocommit=True) as c:
        for job in ("night_cycle", "procedural_maintenance", "trim_history", "kernel_maintenance"):
            c.execute("SELECT ops.set_schedule(%s, '0 0 30 2 *')", (job,))  # 30 February: never
    return url


@pytest.fixture
def conn(db_url):
    """A connection whose work is rolled back after the test."""
    with psycopg.connect(db_url) as c:
        register_vector(c)
        yield c
        c.rollback()


@pytest.fixture
def env_url(db_url, monkeypatch):
    """Point psimem commands at the test database."""
    monkeypatch.setenv("PSIMEM_DATABASE_URL", db_url)
    return db_url


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 for the whole run, started only when a test needs it."""
    from s3_server import S3Server

    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def cortex_uri(request, tmp_path, monkeypatch) -> str:
    """Where a Cortex test keeps its Cortex: a local directory, then a fresh prefix on the S3
    server, whose endpoint, region and credentials go into the environment as an operator
    would set them (worker and CLI subprocesses inherit them)."""
    if request.param == "local":
        return str(tmp_path / "cortex")
    server = request.getfixturevalue("s3_server")
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    return server.new_uri()
