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
    assert r.returncode == 0 and "schema revision: 0004" in r.stdout


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
