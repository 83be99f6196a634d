"""The psimem command: --help everywhere, the embedded cluster, ingest from a file."""
import json
import os
import subprocess
import sys

import shutil

import numpy as np
import psycopg
import pytest

from helpers import UDIM, unit
from test_migrations import HEAD
from psimem.cli import build_parser
from psimem.cluster import Cluster

PSIMEM = [sys.executable, "-m", "psimem.cli"]


def run(*args, env=None, **kw):
    return subprocess.run([*PSIMEM, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)


def subcommands(parser, prefix=()):
    yield prefix
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield from subcommands(sub, (*prefix, name))


def test_every_subcommand_has_help():
    paths = list(subcommands(build_parser()))
    assert ("db", "up") in paths and ("ingest", "turns") in paths and ("demo",) in paths
    for path in paths:
        r = run(*path, "--help")
        assert r.returncode == 0 and "usage: psimem" in r.stdout, (path, r.stderr)


def test_ingest_turns_from_jsonl_and_refusal(env_url, tmp_path):
    rng = np.random.default_rng(10)
    recs = [dict(user="cli-u", session="cli-s", role="user", content=f"hi {i}",
                 universal_embedding=unit(rng, UDIM).tolist(), perplexity_score=5.0) for i in range(4)]
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in recs))
    bad = tmp_path / "bad.jsonl"
    recs[1]["perplexity_score"] = -3
    bad.write_text("\n".join(json.dumps(r) for r in recs))
    r = run("ingest", "turns", str(bad), "--quiet")
    assert r.returncode == 2 and "line 2: perplexity_score" in r.stderr
    r = run("ingest", "turns", str(good), "--quiet")
    assert r.returncode == 0 and "loaded 4 turns" in r.stderr
    with psycopg.connect(env_url) as c:
        n = c.execute("SELECT count(*) FROM memory.day_table d JOIN memory.sessions s USING (session_id) "
                      "WHERE s.external_ref = 'cli-s'").fetchone()[0]
        c.execute("DELETE FROM memory.users WHERE external_ref = 'cli-u'")
    assert n == 4


def test_status_and_url_follow_psimem_database_url(env_url):
    r = run("db", "url")
    assert r.stdout.strip() == env_url
    r = run("db", "status")
    assert r.returncode == 0 and f"schema revision: {HEAD}" in r.stdout


def test_embedded_cluster_up_is_idempotent_and_down_stops_it(tmp_path_factory):
    home = tmp_path_factory.mktemp("home") / "psimem-home"
    env = {"PSIMEM_HOME": str(home), "PSIMEM_PORT": "55499", "PSIMEM_DATABASE_URL": ""}
    try:
        first = run("db", "up", env=env, timeout=120)
        assert first.returncode == 0, first.stderr
        url = first.stdout.strip()
        second = run("db", "up", env=env, timeout=60)
        assert second.returncode == 0 and "already running" in second.stderr
        with psycopg.connect(url) as c:
            assert c.execute("SHOW shared_preload_libraries").fetchone()[0] == "pg_cron"
            assert c.execute("SHOW cron.database_name").fetchone()[0] == "psimem"
            assert c.execute("SHOW listen_addresses").fetchone()[0] == ""
            assert c.execute("SELECT current_database()").fetchone()[0] == "psimem"
        assert "running" in run("db", "status", env=env).stdout
    finally:
        down = run("db", "down", env=env, timeout=60)
    assert down.returncode == 0
    status = run("db", "status", env=env)
    assert status.returncode == 3 and "stopped" in status.stdout
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    shutil.rmtree(Cluster(home, 55499).home)  # may be the /var/tmp fallback: tmp_path is 0700


@pytest.mark.parametrize("args,message", [
    (("ingest", "turns", "/nonexistent/turns.jsonl"), "argument file: no such file: /nonexistent/turns.jsonl"),
    (("ingest", "turns", "/tmp"), "argument file: must be a file, not a directory: /tmp"),
    (("packet", "import", "/nonexistent/p.json"), "argument file: no such file"),
    (("packet", "export", "not-a-uuid"), "argument block_ids: must be a UUID"),
    (("realtime", "--entry", "12"), "argument --entry: must be a UUID"),
    (("recall", "x", "--user", "u", "--budget", "0"), "argument --budget: must be a whole number >= 1"),
    (("recall", "x", "--user", "u", "--since", "May 1"), "argument --since: must be an ISO 8601 time"),
])
def test_bad_arguments_get_one_line_naming_them_not_a_traceback(args, message, env_url):
    r = run(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_recall_vector_files_are_checked(env_url, tmp_path):
    with psycopg.connect(env_url) as c:
        c.execute("SELECT memory.ensure_user('cli-vec')")
        c.commit()
    try:
        for content, message in (("[0.1, 0.2]", "--vector: must be a JSON list of 768 finite numbers"),
                                 ("", "--vector: {} is not JSON"), (json.dumps([0.0] * UDIM), "--vector: must not be all zeros")):
            f = tmp_path / "q.json"
            f.write_text(content)
            r = run("recall", "--vector", str(f), "--user", "cli-vec", "--cortex", str(tmp_path / "cx"))
            assert r.returncode != 0 and message.format(f) in r.stderr and "Traceback" not in r.stderr, r.stderr
    finally:
        with psycopg.connect(env_url) as c:
            c.execute("DELETE FROM memory.users WHERE external_ref = 'cli-vec'")


def test_a_server_gone_mid_load_is_one_line_and_nothing_is_loaded(pg_server, db_url, tmp_path):
    """The server is stopped while `psimem ingest` streams a large file: one line, exit 4,
    and after the restart not one of its turns is in the database."""
    import time

    from conftest import wait_until_accepting

    rng = np.random.default_rng(4)
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(20000):
            f.write(json.dumps({"user": "cli-dies", "session": "cli-dies-s", "role": "user", "content": f"turn {i}",
                                "universal_embedding": unit(rng, UDIM).round(4).tolist()}) + "\n")
    p = subprocess.Popen([*PSIMEM, "ingest", "turns", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "PSIMEM_DATABASE_URL": db_url})
    deadline = time.monotonic() + 60
    with psycopg.connect(db_url, autocommit=True) as c:   # wait until the COPY is streaming
        while time.monotonic() < deadline and not c.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY memory.day_table%%' AND state = 'active'").fetchone():
            time.sleep(0.05)
    with pg_server.stopped():
        out, err = p.communicate(timeout=120)
    wait_until_accepting(db_url)
    assert p.returncode == 4 and "psimem: database:" in err and "nothing from this command was committed" in err, err
    messages = [line for line in err.splitlines() if not line.startswith("copy:") and line.strip()]
    assert "Traceback" not in err and len(messages) == 1, err   # progress bars aside, one line
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT count(*) FROM memory.users WHERE external_ref = 'cli-dies'").fetchone()[0] == 0
