"""Migrations: idempotent, reversible on the base revision, and matching the committed dump."""
import os
import shutil

import psycopg

from psimem import migrate
from psimem.schema_dump import SCHEMA_FILE, dump_schema
from psimem.settings import DB_DIR
from psimem.sqlfiles import apply_sql_files


def _head() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(migrate.alembic_config("postgresql://unused")).get_heads()
    assert len(heads) == 1, f"the revisions must form one chain, not branch into {heads}"
    return heads[0]


HEAD = _head()  # the newest revision; test_cli checks `db status` reports it


def applied(url):
    """What a re-run could touch: code files applied and settings rows, with their times."""
    with psycopg.connect(url) as c:
        return (c.execute("SELECT path, applied_at FROM ops.applied_sql ORDER BY 1").fetchall(),
                c.execute("SELECT key, value, updated_at FROM ops.settings ORDER BY 1").fetchall())


def test_migrated_schema_matches_the_committed_dump(db_url):
    if os.environ.get("PSIMEM_UPDATE_SCHEMA") == "1":  # `make schema`
        SCHEMA_FILE.write_text(dump_schema(db_url))
    assert dump_schema(db_url) == SCHEMA_FILE.read_text(), \
        "schema changed: run `make schema` and commit db/schema.sql"


def test_second_migrate_changes_nothing(db_url):
    before_files, before_schema = applied(db_url), dump_schema(db_url)
    migrate.upgrade(db_url)
    assert applied(db_url) == before_files
    assert dump_schema(db_url) == before_schema
    assert migrate.current(db_url) == HEAD


def test_install_time_sizes_are_recorded(db_url):
    with psycopg.connect(db_url) as c:
        got = dict(c.execute("SELECT key, value FROM ops.settings WHERE key LIKE 'embedding.%'").fetchall())
    assert got == {"embedding.universal_dim": 768, "embedding.native_dim": 4096,
                   "embedding.universal_index": "vector", "embedding.native_index": "binary"}


def test_changed_code_file_is_reapplied_and_unchanged_ones_are_not(db_url, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(DB_DIR, db, ignore=shutil.ignore_patterns("migrations"))
    target = db / "functions" / "bi_hippocampus.sql"
    with psycopg.connect(db_url) as c:
        assert apply_sql_files(c, db) == []
        target.write_text(target.read_text().replace("never content or vectors.", "never content or vectors (edited)."))
        assert apply_sql_files(c, db) == ["functions/bi_hippocampus.sql"]
        c.rollback()


def test_a_routine_no_file_defines_is_dropped_and_one_that_moved_to_another_file_is_kept(db_url, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(DB_DIR, db, ignore=shutil.ignore_patterns("migrations"))
    probe, moved = db / "functions" / "zz_probe.sql", db / "functions" / "aa_probe.sql"
    proc = ("CREATE OR REPLACE PROCEDURE memory.zz_probe({args}) LANGUAGE plpgsql "
            "SET search_path = pg_catalog, public, pg_temp AS $$ BEGIN END $$;")
    func = ("CREATE OR REPLACE FUNCTION memory.zz_probe_f() RETURNS int LANGUAGE sql "
            "SET search_path = pg_catalog, public, pg_temp AS $$ SELECT 1 $$;")
    exists = "SELECT to_regprocedure(%s) IS NOT NULL"
    with psycopg.connect(db_url) as c:
        probe.write_text(proc.format(args="p_a int") + func)
        assert apply_sql_files(c, db) == ["functions/zz_probe.sql"]
        # its signature changes, and the function moves to a file applied before it
        probe.write_text(proc.format(args="p_a int, p_b int"))
        moved.write_text(func)
        assert apply_sql_files(c, db) == ["functions/aa_probe.sql", "functions/zz_probe.sql"]
        assert [c.execute(exists, (f,)).fetchone()[0] for f in
                ("memory.zz_probe(int)", "memory.zz_probe(int, int)", "memory.zz_probe_f()")] == [False, True, True]
        probe.unlink()
        assert apply_sql_files(c, db) == []
        assert [c.execute(exists, (f,)).fetchone()[0] for f in ("memory.zz_probe(int, int)", "memory.zz_probe_f()")] == \
            [False, True]
        c.rollback()


def test_upgrade_downgrade_upgrade_on_the_base_revision(db_url):
    migrate.downgrade(db_url, "0001")
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT to_regclass('memory.holographic_blocks')").fetchone()[0] is None
        assert c.execute("SELECT count(*) FROM cron.job WHERE jobname LIKE 'psimem-%'").fetchone()[0] == 0
    migrate.downgrade(db_url, "base")
    with psycopg.connect(db_url) as c:
        schemas = {r[0] for r in c.execute("SELECT nspname FROM pg_namespace")}
        exts = {r[0] for r in c.execute("SELECT extname FROM pg_extension")}
    assert not {"memory", "ops", "bi"} & schemas and not {"vector", "pg_cron"} & exts
    assert migrate.current(db_url) is None
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == HEAD
    assert dump_schema(db_url) == SCHEMA_FILE.read_text()


def test_first_migration_creates_the_four_extensions_and_plpython_has_numpy(conn):
    exts = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
    assert exts["vector"] == "0.8.0" and {"pg_cron", "plpython3u", "pgcrypto"} <= exts.keys()
    conn.execute("CREATE FUNCTION pg_temp.np_norm(v real[]) RETURNS float8 LANGUAGE plpython3u AS "
                 "$$ import numpy; return float(numpy.linalg.norm(v)) $$")
    assert conn.execute("SELECT pg_temp.np_norm(ARRAY[3,4]::real[])").fetchone()[0] == 5.0
    job = conn.execute("SELECT cron.schedule('psimem-test-job', '0 3 * * *', 'SELECT 1')").fetchone()[0]
    assert conn.execute("SELECT schedule FROM cron.job WHERE jobid = %s", (job,)).fetchone()[0] == "0 3 * * *"


def test_revision_0007_backfills_the_live_arc_columns_as_the_trigger_sets_them(db_url):
    """Turns recorded before the upgrade get what the trigger now keeps on each turn."""
    cols = "turn_number, flux_baseline_mean, flux_baseline_sd, flux_arc_start"
    with psycopg.connect(db_url) as c:
        sid = c.execute("SELECT memory.start_session(memory.ensure_user('backfill-0007', 'normal'), NULL, now())").fetchone()[0]
        script = [10, 11, 10, 11, 10, 30, 25, 15, 14.5, 14.4, 10, 11, 10, 40, 30, 20]  # one closed arc, one open
        for p in script:
            c.execute("SELECT memory.record_turn(p_session_id => %s, p_role => 'user', p_content => 'x', "
                      "p_perplexity_score => %s)", (sid, p))
        c.commit()
        live = c.execute(f"SELECT {cols} FROM memory.day_table WHERE session_id = %s ORDER BY 1", (sid,)).fetchall()
        live_open = c.execute("SELECT flux_arc_start FROM memory.sessions WHERE session_id = %s", (sid,)).fetchone()
    try:
        migrate.downgrade(db_url, "0006")
        migrate.upgrade(db_url)
        with psycopg.connect(db_url) as c:
            got = c.execute(f"SELECT {cols} FROM memory.day_table WHERE session_id = %s ORDER BY 1", (sid,)).fetchall()
            got_open = c.execute("SELECT flux_arc_start FROM memory.sessions WHERE session_id = %s", (sid,)).fetchone()
    finally:
        with psycopg.connect(db_url) as c:
            c.execute("DELETE FROM memory.users WHERE external_ref = 'backfill-0007'")
    assert [r[3] for r in live] == [None] * 5 + [6] * 5 + [None] * 3 + [14] * 3
    assert [r[3] for r in got] == [r[3] for r in live] and got_open == live_open == (14,)
    for (_, m1, s1, _), (_, m2, s2, _) in zip(live, got):
        assert (m1 is None and m2 is None) or abs(m1 - m2) < 1e-5
        assert abs(s1 - s2) < 1e-5
