"""What the README says each role does, done by real login roles through the command line:
a psimem_writer login ingests and voices, a psimem_reader login bound to the user recalls,
and neither reaches a user it is not bound to."""
import json
import os
import subprocess
import sys

import numpy as np
import psycopg
import pytest
from psycopg import sql

from helpers import UDIM, unit

PSIMEM = [sys.executable, "-m", "psimem"]
LOGINS = {"e2e_writer": "psimem_writer", "e2e_reader": "psimem_reader", "e2e_other": "psimem_writer"}


def as_login(url, login):
    return url.replace("postgres@", f"{login}@", 1)


def run(url, *args, **kw):
    return subprocess.run([*PSIMEM, *args], capture_output=True, text=True,
                          env={**os.environ, "PSIMEM_DATABASE_URL": url, **kw.pop("env", {})}, **kw)


@pytest.fixture
def logins(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        for login, role in LOGINS.items():
            c.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(login), sql.Identifier(role)))
    yield
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("DELETE FROM memory.users WHERE realm = ANY(%s)", (list(LOGINS),))
        for login in LOGINS:
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def test_writer_ingests_and_voices_reader_recalls_and_neither_reaches_another_user(db_url, logins, tmp_path):
    rng = np.random.default_rng(12)
    vectors = [unit(rng, UDIM) for _ in range(6)]
    path = tmp_path / "turns.jsonl"
    path.write_text("".join(json.dumps({"user": u, "session": f"{u}-s", "role": role, "content": f"{u} turn {i}",
                                        "universal_embedding": vectors[i].tolist(), "external_ref": f"{u}-{i}"}) + "\n"
                            for u in ("alice", "bob") for i, role in enumerate(["user", "assistant"] * 3)))
    writer = as_login(db_url, "e2e_writer")
    r = run(writer, "ingest", "turns", str(path), "--quiet")
    assert r.returncode == 0 and "loaded 12 turns" in r.stderr, r.stderr

    r = run(writer, "realtime", "--user", "alice", "--synth", "--latest", "1", "--no-live",
            env={"PSIMEM_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr
    assert "alice turn 5" in r.stdout                      # alice's newest assistant turn was voiced

    with psycopg.connect(db_url) as c:
        alice = c.execute("SELECT user_id FROM memory.users WHERE realm = 'e2e_writer' AND external_ref = 'alice'"
                          ).fetchone()[0]
        assert c.execute("SELECT count(*) FROM psi.utterances WHERE user_id = %s", (alice,)).fetchone()[0] == 1
        c.execute("SELECT memory.bind_user(%s, 'e2e_reader')", (alice,))
        c.commit()

    q = tmp_path / "q.json"
    q.write_text(json.dumps(vectors[2].tolist()))
    reader = as_login(db_url, "e2e_reader")
    r = run(reader, "recall", "--vector", str(q), "--user", str(alice), "--json", "--cortex", str(tmp_path / "cortex"))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got and all("alice" in item["text"] for item in got) and "alice turn 2" in got[0]["text"]

    # bob exists in the writer's realm, but the reader is not bound to him; another writer
    # has a realm of its own, where "alice" is nobody yet
    for url, ref in ((reader, "bob"), (as_login(db_url, "e2e_other"), "alice")):
        r = run(url, "recall", "--vector", str(q), "--user", ref, "--cortex", str(tmp_path / "cortex"))
        assert r.returncode != 0 and f"--user: no user '{ref}' that this login may act for" in r.stderr, r.stderr


def test_a_writers_load_with_a_bad_row_names_its_line_and_loads_nothing(db_url, logins, tmp_path):
    rng = np.random.default_rng(13)
    lines = [{"user": "carol", "session": "carol-s", "role": "user", "content": f"turn {i}",
              "universal_embedding": unit(rng, UDIM).tolist()} for i in range(5)]
    lines[3]["role"] = "narrator"
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = run(as_login(db_url, "e2e_writer"), "ingest", "turns", str(path), "--quiet")
    assert r.returncode == 2 and "line 4: role: must be one of user, assistant, system" in r.stderr, r.stderr
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT count(*) FROM memory.users WHERE external_ref = 'carol'").fetchone()[0] == 0
