"""The rules a schema distributed by user (Citus, sharding by user_id) needs, as catalog facts.

A table holding user_id would be distributed by it, so every primary key, unique constraint
and unique index of it must contain user_id (a shard can only enforce uniqueness among the
rows it holds), and every foreign key between two such tables must pair user_id with user_id
(the referenced row must be on the same shard: no reference crosses users). A table without
user_id is reference data (copied to every node) or local to the coordinator, and may not
refer to a user's table (Citus refuses a foreign key from either into a distributed table).
docs/scale.md says what else would change.

Read from pg_catalog, not from db/schema.sql, so a table added by any means is checked; the
checker is one function so that a test can show it catching a new table.
"""
SCHEMAS = ["memory", "psi", "procedural", "kernel", "ops", "bi"]

# Tables holding user_id that are not distributed with the user's data, and why.
EXEMPT_TABLES = {
    "ops.cycle_runs": "a Night Cycle run log: user_id is the optional one-user filter of a run (NULL for a "
                      "run over everyone), not an owner; runs are started by pg_cron on the coordinator "
                      "and stay local to it",
    "ops.cycle_stage_log": "per-stage timings of ops.cycle_runs, local to the coordinator with it; user_id "
                           "attributes a timing, may be NULL (stages run once per run) and owns nothing",
    "ops.kernel_run_log": "per-step timings of a kernel maintenance run (ops.kernel_runs), local to the "
                          "coordinator; user_id attributes a step and is NULL for run-wide steps",
}
# Single constraints or unique indexes that may lack user_id, and why.
EXEMPT_CONSTRAINTS = {
    "memory.users.users_realm_external_ref_unique":
        "memory.users is distributed by its own key, user_id; a user's external_ref is unique within "
        "its realm (the login or group that created it), which is a lookup from outside the user "
        "into it: on Citus this uniqueness moves to a lookup table keyed by (realm, external_ref) "
        "(docs/scale.md); on one server the constraint stays and is exempt here",
}


def distribution_violations(conn, exempt_tables=EXEMPT_TABLES, exempt_constraints=EXEMPT_CONSTRAINTS) -> list[str]:
    """What in psimem's schemas would keep its tables from being distributed by user_id."""
    holders = """
        SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'user_id'
                      AND NOT a.attisdropped)
          AND NOT format('%%I.%%I', n.nspname, c.relname) = ANY(%(exempt)s)"""
    args = {"schemas": SCHEMAS, "exempt": list(exempt_tables)}
    out = []
    # Unique indexes cover primary keys, unique (and exclusion-free) constraints and bare unique indexes.
    for table, index, definition in conn.execute(f"""
            SELECT x.indrelid::regclass::text, i.relname, pg_get_indexdef(x.indexrelid)
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
            WHERE x.indisunique AND x.indrelid IN ({holders})
              AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = x.indrelid AND a.attname = 'user_id'
                              AND a.attnum = ANY(x.indkey::int2[]))
            ORDER BY 1, 2""", args).fetchall():
        if f"{table}.{index}" not in exempt_constraints:
            out.append(f"{table}: unique index {index} lacks user_id: {definition}")
    # Foreign keys from a holder to a holder must pair user_id with user_id.
    for table, name, definition in conn.execute(f"""
            SELECT k.conrelid::regclass::text, k.conname, pg_get_constraintdef(k.oid)
            FROM pg_constraint k
            WHERE k.contype = 'f' AND k.conrelid IN ({holders}) AND k.confrelid IN ({holders})
              AND NOT EXISTS (
                  SELECT 1 FROM unnest(k.conkey, k.confkey) AS p(col, refcol)
                  JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = p.col
                  JOIN pg_attribute r ON r.attrelid = k.confrelid AND r.attnum = p.refcol
                  WHERE a.attname = 'user_id' AND r.attname = 'user_id')
            ORDER BY 1, 2""", args).fetchall():
        if f"{table}.{name}" not in exempt_constraints:
            out.append(f"{table}: foreign key {name} crosses users: {definition}")
    # A table without user_id (reference data or coordinator-local) may not point into a user's
    # table, nor may a user's table point at an exempt (coordinator-local) one.
    for table, name, definition in conn.execute(f"""
            SELECT k.conrelid::regclass::text, k.conname, pg_get_constraintdef(k.oid)
            FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE k.contype = 'f' AND n.nspname = ANY(%(schemas)s)
              AND ((k.conrelid NOT IN ({holders}) AND k.confrelid IN ({holders})
                    AND NOT format('%%I.%%I', n.nspname, c.relname) = ANY(%(exempt)s))
                   OR (k.conrelid IN ({holders}) AND k.confrelid::regclass::text = ANY(%(exempt)s)))
            ORDER BY 1, 2""", args).fetchall():
        if f"{table}.{name}" not in exempt_constraints:
            out.append(f"{table}: foreign key {name} joins user data and non-user data: {definition}")
    return out


def test_every_key_of_a_users_data_holds_user_id_and_no_foreign_key_crosses_users(conn):
    n = conn.execute("""
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id'
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p')""", (SCHEMAS,)).fetchone()[0]
    assert n >= 30  # the check reads the catalog it means to
    assert distribution_violations(conn) == []


def test_every_exemption_names_something_that_exists_and_needs_it(conn):
    for table in EXEMPT_TABLES:
        assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0], table
    assert distribution_violations(conn, exempt_tables={}, exempt_constraints=EXEMPT_CONSTRAINTS)
    unexempted = distribution_violations(conn, exempt_tables=EXEMPT_TABLES, exempt_constraints={})
    assert [v.split(":")[0] for v in unexempted] == ["memory.users"], unexempted


def test_a_new_table_breaking_the_rules_is_reported(conn):
    conn.execute("""
        CREATE TABLE memory.zz_notes (
            note_id uuid PRIMARY KEY,
            user_id uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
            session_id uuid,
            slug text,
            CONSTRAINT zz_notes_slug_unique UNIQUE (slug),
            CONSTRAINT zz_notes_session_fk FOREIGN KEY (session_id, user_id)
                REFERENCES memory.sessions (session_id, user_id)
        );
        CREATE UNIQUE INDEX zz_notes_session_slug ON memory.zz_notes (session_id, slug);
        CREATE TABLE memory.zz_note_links (
            user_id uuid NOT NULL,
            note_id uuid REFERENCES memory.zz_notes (note_id),
            PRIMARY KEY (user_id, note_id)
        );
        CREATE TABLE memory.zz_lookup (note_id uuid, user_id_of text,
            FOREIGN KEY (note_id) REFERENCES memory.zz_notes (note_id));""")
    found = [v for v in distribution_violations(conn) if "zz_" in v]
    assert len(found) == 5, found
    assert any("zz_notes_pkey lacks user_id" in v for v in found)
    assert any("zz_notes_slug_unique lacks user_id" in v for v in found)
    assert any("zz_notes_session_slug lacks user_id" in v for v in found)
    assert any(v.startswith("memory.zz_note_links: foreign key") and "crosses users" in v for v in found)
    assert any(v.startswith("memory.zz_lookup: foreign key") and "non-user data" in v for v in found)
    # The composite reference to sessions pairs user_id with user_id: not a violation.
    assert not any("zz_notes_session_fk" in v for v in found)


def test_a_foreign_key_pairing_user_id_with_another_column_is_reported(conn):
    """Containing user_id is not enough: it must meet the other table's user_id."""
    conn.execute("""
        CREATE TABLE memory.zz_skewed (
            user_id uuid NOT NULL, other uuid NOT NULL, session_id uuid NOT NULL,
            PRIMARY KEY (session_id, user_id),
            FOREIGN KEY (other, user_id) REFERENCES memory.sessions (user_id, session_id))""")
    found = [v for v in distribution_violations(conn) if "zz_skewed" in v]
    assert len(found) == 1 and "crosses users" in found[0], found


def test_revision_0018_keeps_a_populated_database_and_refuses_a_reference_across_users(db_url):
    """Down to 0017 and up again with rows in the changed tables: every row stays. A row that
    already referred to another user's row (possible before 0018) stops the upgrade, which
    then changes nothing, until the row is fixed."""
    import psycopg
    import pytest
    from alembic.script import ScriptDirectory
    from helpers import card, new_session, new_user, record

    from psimem import migrate

    counted = ("memory.sessions", "memory.day_table", "kernel.card", "kernel.edge", "kernel.usage",
               "procedural.procedural_memory", "procedural.causal_edges")

    def counts(c):
        return {t: c.execute(f"SELECT count(*) FROM {t} t JOIN memory.users u USING (user_id) "
                             "WHERE u.external_ref LIKE 'dist-0018-%%'").fetchone()[0] for t in counted}

    with psycopg.connect(db_url) as c:
        users = [new_user(c, f"dist-0018-{i}") for i in range(2)]
        sessions = []
        for u in users:
            first = new_session(c, u)
            for i in range(3):
                record(c, first, f"turn {i} of {u}")
            sessions.append(first)
            c.execute("UPDATE memory.sessions SET continues_session_id = %s WHERE session_id = %s",
                      (first, new_session(c, u)))
            a, b = card(c, u, f"fact one of {u}"), card(c, u, f"fact two of {u}")
            c.execute("SELECT kernel.link(%s, %s, %s)", (u, a["card_id"], b["card_id"]))
            c.execute("SELECT memory.act_for(%s)", (u,))
            r1 = c.execute("SELECT procedural.learn_reflex('a', 'tool_call', 'ctx')").fetchone()[0]
            r2 = c.execute("SELECT procedural.learn_reflex('b', 'tool_call', 'ctx')").fetchone()[0]
            c.execute("SELECT procedural.observe_causal_edge(%s, %s, 0.5, 1.0)", (r1, r2))
            c.execute("RESET psimem.user_id")
        c.commit()
        before = counts(c)
    assert all(before.values()), before
    try:
        migrate.downgrade(db_url, "0017")
        migrate.upgrade(db_url)
        with psycopg.connect(db_url) as c:
            assert counts(c) == before
            # the keys are the new ones: the same session id may not continue another user's session
            with pytest.raises(psycopg.errors.ForeignKeyViolation), c.transaction():
                c.execute("UPDATE memory.sessions SET continues_session_id = %s WHERE session_id = %s",
                          (sessions[1], sessions[0]))
        migrate.downgrade(db_url, "0017")
        with psycopg.connect(db_url) as c:  # before 0018 nothing stopped this
            c.execute("UPDATE memory.sessions SET continues_session_id = %s WHERE session_id = %s",
                      (sessions[1], sessions[0]))
        with pytest.raises(Exception, match="sessions_continues_session_id_fkey"):
            migrate.upgrade(db_url)
        assert migrate.current(db_url) == "0017"
        with psycopg.connect(db_url) as c:
            assert c.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'card_id_user_unique'").fetchone()[0] == 1
            c.execute("UPDATE memory.sessions SET continues_session_id = NULL WHERE session_id = %s", (sessions[0],))
    finally:
        migrate.upgrade(db_url)
        with psycopg.connect(db_url) as c:
            c.execute("DELETE FROM memory.users WHERE external_ref LIKE 'dist-0018-%'")
    assert migrate.current(db_url) == ScriptDirectory.from_config(migrate.alembic_config(db_url)).get_current_head()
    with psycopg.connect(db_url) as c:
        assert distribution_violations(c) == []
