"""The security rules as catalog facts, so a new table or function that breaks one fails
here without anyone remembering to add a test for it."""
import re

SCHEMAS = ["memory", "psi", "procedural", "kernel", "ops", "bi"]
ROLES = ["psimem_writer", "psimem_reader", "psimem_bi"]
# Tables without a user_id that user-facing roles may read: tunables and policy, no one's memories.
SHARED_TABLES = {"ops.settings", "ops.turn_rules", "memory.retention_policy"}


def test_every_table_holding_a_user_id_has_row_level_security_and_policies(conn):
    rows = conn.execute("""
        SELECT format('%%I.%%I', n.nspname, c.relname), c.relrowsecurity,
               array(SELECT p.polname || ':' || pg_get_expr(p.polqual, p.polrelid) || ':' ||
                            array_to_string(array(SELECT r.rolname FROM pg_roles r WHERE r.oid = ANY(p.polroles)), ',')
                     FROM pg_policy p WHERE p.polrelid = c.oid),
               bool_or(has_table_privilege(r, c.oid, 'SELECT, INSERT, UPDATE, DELETE'))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
        CROSS JOIN unnest(%s::text[]) r
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p')
        GROUP BY 1, 2, 3 ORDER BY 1""", (ROLES, SCHEMAS)).fetchall()
    assert len(rows) >= 15
    for table, rls, policies, user_facing in rows:
        assert rls, f"{table} holds user_id but has no row-level security"
        assert any(p.endswith(":psimem_admin") for p in policies), f"{table}: no psimem_admin policy"
        if user_facing:
            acting = [p for p in policies if "_acting_user()" in p]
            assert acting, f"{table}: writers or readers have privileges but no policy checks memory._acting_user()"
            assert all("psimem_bi" not in p for p in acting)


def test_tables_without_a_user_id_are_closed_to_writers_readers_and_bi(conn):
    open_ = conn.execute("""
        SELECT format('%%I.%%I', n.nspname, c.relname), r
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN unnest(%s::text[]) r
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p')
          AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'user_id')
          AND has_table_privilege(r, c.oid, 'SELECT, INSERT, UPDATE, DELETE')""", (ROLES, SCHEMAS)).fetchall()
    assert {t for t, _ in open_} <= SHARED_TABLES, open_


def test_no_function_is_executable_by_public_and_every_one_pins_its_search_path(conn):
    rows = conn.execute("""
        SELECT p.oid::regprocedure::text, p.prosecdef,
               (SELECT c FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%%'),
               p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) x WHERE x.grantee = 0),
               p.prokind, p.prosrc, p.prosqlbody IS NOT NULL
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%s)""", (SCHEMAS,)).fetchall()
    assert len(rows) >= 60
    for fn, definer, path, public, kind, body, parsed in rows:
        assert not public, f"{fn}: PUBLIC may execute it"
        if parsed and not path and not definer:
            # a SQL-standard body (RETURN ...) was parsed at CREATE: its names and operators are
            # bound then, and a SET clause would keep the planner from inlining it
            continue
        if kind == "p" and not path and not definer:
            assert_independent_of_search_path(fn, body)
            continue
        assert path, f"{fn}: no SET search_path"
        assert path.rstrip().endswith("pg_temp"), f"{fn}: pg_temp must come last in {path}"
        if definer:
            assert "public" not in path.split("=", 1)[1], f"{fn} is SECURITY DEFINER and searches public: {path}"


def assert_independent_of_search_path(fn: str, body: str) -> None:
    """A procedure that commits cannot pin search_path (PostgreSQL refuses transaction control
    under a SET clause), so nothing in it may be looked up through one: every function it
    calls is schema-qualified and it uses no operator (operators resolve through the path too)."""
    code = re.sub(r"--[^\n]*", "", body)
    code = re.sub(r"'(?:[^']|'')*'", "''", code).replace(":=", " ")
    unqualified = [m for m in re.findall(r"(?<![\w.])([A-Za-z_]\w*)\s*\(", code)]
    assert not unqualified, f"{fn} has no SET search_path and calls {unqualified} without a schema"
    operators = re.findall(r"[-+*/<>=~!@#%^&|`?]+", code)
    assert not operators, f"{fn} has no SET search_path and uses operators {operators}"


def test_bi_sees_views_only_and_no_view_names_a_person_or_holds_content(conn):
    granted = conn.execute("""
        SELECT format('%%I.%%I', n.nspname, c.relname), c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE has_table_privilege('psimem_bi', c.oid, 'SELECT') AND n.nspname = ANY(%s)""", (SCHEMAS,)).fetchall()
    assert granted and all(kind == "v" and name.startswith("bi.") for name, kind in granted), granted
    cols = conn.execute("""
        SELECT c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'bi' AND a.attnum > 0 AND NOT a.attisdropped""").fetchall()
    for col, typ in cols:
        name = col.split(".", 1)[1]
        assert not name.endswith(("user_id", "session_id", "entry_id", "block_id", "reflex_id")), col
        assert name not in ("content", "prose", "summary_text", "text") and not typ.startswith(("vector", "halfvec")), col
