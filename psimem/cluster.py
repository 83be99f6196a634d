"""The embedded PostgreSQL cluster behind `psimem db up|down|status`.

It runs the machine's PostgreSQL 15 binaries with pg_cron preloaded, listens on a Unix
socket only, and runs as the `postgres` OS user when invoked as root (PostgreSQL refuses
to run as root). The postgres user must be able to reach the data directory, so when
the configured home sits under a directory it cannot enter (/root, say), the cluster
lives in /var/tmp/psimem-<hash> instead and says so.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg

from .settings import PG_BINDIR, Settings

SERVER_CONF = {
    "shared_preload_libraries": "'pg_cron'",
    # pg_cron runs jobs in background workers: the cluster listens on no TCP port for it to use.
    "cron.use_background_workers": "on",
    "max_worker_processes": "16",
    "listen_addresses": "''",
    "max_connections": "100",
    "shared_buffers": "'512MB'",
    "maintenance_work_mem": "'1GB'",
    "max_parallel_maintenance_workers": "2",
    "wal_level": "'minimal'",
    "max_wal_senders": "0",
    "max_wal_size": "'4GB'",
    "log_min_messages": "warning",
}


def as_postgres() -> list[str]:
    """Command prefix that drops root to the postgres user; empty when not root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def postgres_can_reach(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    probe = path if path.exists() else path.parent
    while not probe.exists():
        probe = probe.parent
    return subprocess.run([*as_postgres(), "test", "-x", str(probe)]).returncode == 0


def make_postgres_dir(path: Path, mode: int = 0o700) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    path.chmod(mode)


class Cluster:
    def __init__(self, home: Path, port: int, dbname: str = "psimem", conf: dict | None = None):
        home = Path(home).resolve()
        if not postgres_can_reach(home):
            digest = hashlib.sha1(str(home).encode()).hexdigest()[:12]
            home = Path("/var/tmp") / f"psimem-{digest}"
        self.home = home
        self.port = port
        self.dbname = dbname
        self.conf = {**SERVER_CONF, "cron.database_name": f"'{dbname}'", **(conf or {})}

    @classmethod
    def from_settings(cls, s: Settings) -> "Cluster":
        return cls(s.home, s.port, s.dbname)

    data = property(lambda self: self.home / "data")
    sockets = property(lambda self: self.home / "run")
    logfile = property(lambda self: self.home / "postgres.log")

    def conninfo(self, dbname: str | None = None) -> str:
        return f"host={self.sockets} port={self.port} user=postgres dbname={dbname or self.dbname}"

    def url(self, dbname: str | None = None) -> str:
        return f"postgresql://postgres@/{dbname or self.dbname}?host={self.sockets}&port={self.port}"

    def _pg(self, tool: str, *args: str, check: bool = True, quiet: bool = True):
        cmd = [*as_postgres(), str(PG_BINDIR / tool), *args]
        out = subprocess.DEVNULL if quiet else None
        return subprocess.run(cmd, check=check, stdout=out, stderr=subprocess.PIPE, text=True)

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def running(self) -> bool:
        return self.initialized() and self._pg("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def init(self, say=print) -> None:
        if self.initialized():
            return
        say(f"initdb {self.data}")
        make_postgres_dir(self.home, 0o755)
        make_postgres_dir(self.sockets, 0o755)
        make_postgres_dir(self.data)
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--locale=C.UTF-8")
        conf = "\n".join(f"{k} = {v}" for k, v in self.conf.items())
        conf += f"\nport = {self.port}\nunix_socket_directories = '{self.sockets}'\n"
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write("\n# psimem\n" + conf)

    def start(self, say=print) -> None:
        self.init(say)
        if self.running():
            say(f"server already running ({self.data})")
        else:
            say(f"starting PostgreSQL on {self.sockets} port {self.port}")
            if os.geteuid() == 0 and not self.logfile.exists():
                self.logfile.touch()
                shutil.chown(self.logfile, "postgres", "postgres")
            r = self._pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.logfile), check=False)
            if r.returncode != 0:
                tail = self.logfile.read_text().splitlines()[-15:] if self.logfile.exists() else []
                raise RuntimeError("pg_ctl start failed:\n" + r.stderr + "\n".join(tail))
        self.wait_ready()
        self.ensure_database()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.conninfo("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def ensure_database(self, dbname: str | None = None) -> None:
        dbname = dbname or self.dbname
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))

    def stop(self, say=print) -> None:
        if not self.running():
            say("server not running")
            return
        say("stopping PostgreSQL")
        self._pg("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))
