"""Recall served by a hot standby: a streaming replica of the test server, made with
pg_basebackup over loopback, answers every read-only recall function, kernel.recall (without
its usage bump) and `psimem recall` (PSIMEM_READ_DATABASE_URL) once it has replayed the
primary's writes, and refuses writes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from conftest import free_port, wait_until_accepting
from helpers import UDIM, new_session, new_user, record, unit
from psimem.cluster import make_postgres_dir
from psimem.settings import PG_BINDIR

RECALL = [  # every read-only recall function, with arguments built from (user, session, query vector)
    ("SELECT * FROM memory.recall_recent(%(q)s::real[], %(s)s, %(u)s, 5)", "entry_id"),
    ("SELECT * FROM memory.recall(%(u)s, NULL, %(q)s::real[], %(s)s, 5)", "entry_id"),
    ("SELECT * FROM memory.recall_blocks(%(q)s::real[], 5, %(u)s)", None),
]


def as_postgres(cmd: list[str]) -> list[str]:
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def standby(pg_server, db_url):
    root = Path(tempfile.mkdtemp(prefix="psimem-standby-", dir="/var/tmp"))
    make_postgres_dir(root, 0o755)
    data, port = root / "data", free_port()
    subprocess.run(as_postgres([str(PG_BINDIR / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(pg_server.port),
                                "-U", "postgres", "-D", str(data), "-R", "-X", "stream", "--checkpoint=fast"]),
                   check=True, capture_output=True)
    # A hot standby needs at least the primary's max_connections and max_worker_processes.
    opts = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c hot_standby=on "
            "-c max_connections=50 -c max_worker_processes=16")
    subprocess.run(as_postgres([str(PG_BINDIR / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"),
                                "-w", "start"]), check=True, capture_output=True)
    url = db_url.replace(f":{pg_server.port}/", f":{port}/")
    wait_until_accepting(url)
    yield url
    subprocess.run(as_postgres([str(PG_BINDIR / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                   capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def replayed(primary_url: str, standby_url: str, seconds: float = 120.0) -> None:
    # The insert position, not pg_current_wal_lsn(): the test server commits asynchronously
    # (synchronous_commit=off), so a commit record can still sit in WAL buffers, past the
    # write position, and a standby that reached the write position would not yet see it.
    with psycopg.connect(primary_url, autocommit=True) as p:
        lsn = p.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    deadline = time.monotonic() + seconds
    with psycopg.connect(standby_url, autocommit=True) as s:
        while s.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0] is not True:
            assert time.monotonic() < deadline, "the standby did not replay the primary's writes"
            time.sleep(0.05)


@pytest.fixture
def remembered(db_url):
    rng = np.random.default_rng(21)
    vectors = [unit(rng, UDIM) for _ in range(4)]
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("CREATE ROLE standby_reader LOGIN IN ROLE psimem_reader")
    with psycopg.connect(db_url) as c:
        user = new_user(c, "standby-user")
        session = new_session(c, user)
        entries = [record(c, session, f"standby turn {i}", universal=v) for i, v in enumerate(vectors)]
        c.execute("SELECT memory.bind_user(%s, 'standby_reader')", (user,))
        c.execute("SELECT kernel.upsert_card(%s, 'standby card')", (user,))
        c.commit()
    yield str(user), str(session), vectors, [str(e) for e in entries]
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("DELETE FROM memory.users WHERE user_id = %s", (user,))
        c.execute("DROP ROLE standby_reader")


def test_recall_on_a_hot_standby_after_replay(db_url, standby, remembered, tmp_path):
    user, session, vectors, entries = remembered
    replayed(db_url, standby)
    reader = standby.replace("postgres@", "standby_reader@", 1)
    with psycopg.connect(reader) as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        c.execute("SELECT memory.act_for(%s)", (user,))
        for query, id_col in RECALL:
            cur = c.execute(query, {"q": vectors[2].tolist(), "s": session, "u": user})
            rows = cur.fetchall()
            if id_col:
                ids = [str(r[[d.name for d in cur.description].index(id_col)]) for r in rows]
                assert ids and ids[0] == entries[2], (query, ids)
    with psycopg.connect(standby) as c, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        record(c, session, "a write on the standby")
    with psycopg.connect(reader) as c:  # kernel.recall answers too, and counts no usage there
        c.execute("SELECT memory.act_for(%s)", (user,))
        [(summary, used, usage)] = c.execute("SELECT summary, used_count, legs -> 'usage' FROM kernel.recall(%s, 'standby')",
                                             (user,)).fetchall()
        assert summary == "standby card" and used == 0
        assert usage == {"bumped": False, "reason": "hot standby: usage is counted on the primary only"}

    q = tmp_path / "q.json"
    q.write_text(json.dumps(vectors[1].tolist()))
    r = subprocess.run([sys.executable, "-m", "psimem", "recall", "--vector", str(q), "--user", user, "--json",
                        "--cortex", str(tmp_path / "cortex")], capture_output=True, text=True,
                       env={**os.environ, "PSIMEM_DATABASE_URL": db_url, "PSIMEM_READ_DATABASE_URL": reader})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["text"].endswith("standby turn 1")
