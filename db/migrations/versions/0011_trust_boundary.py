"""Trust boundary: a login acts only for the users it is bound to.

Before this revision row-level security read the setting psimem.user_id, which any role
can SET, so any writer or reader could choose whose memories it saw. Now:

- memory.user_bindings says which role may act for which user. A login may act for a
  user bound to it or to a role it is a member of. memory.ensure_user binds the users a
  writer creates to that writer's realm; psimem_admin binds and unbinds others
  (memory.bind_user, memory.unbind_user).
- Every policy compares user_id with memory._acting_user(): the user psimem.user_id
  names, only if session_user may act for that user, otherwise NULL, so a forged setting
  shows nothing. The function is replaced by db/functions/memory_acting_user.sql; the
  stub created here refuses everyone, so a half-applied install fails closed.
- External references are namespaced so that no unique violation can reveal another
  user's rows: a user's external_ref is unique within its realm (the role that created
  it), a session's within its user.
- Every table holding a user's data or metadata carries user_id under row-level security:
  consolidations, block relationships and procedural memory get an owner here.
  Procedural rows that existed before have no known owner; they are given to a user
  'psimem:unowned' in realm 'psimem' that no login is bound to (only admins see them).
- PUBLIC loses CREATE on schema public (functions resolve pgvector's operators there).

Revision ID: 0011
Revises: 0010
"""
from alembic import op

from psimem.migration_sql import user_policies

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Every table with a user_id column before this revision, and those that get one here.
USER_TABLES = (
    "memory.users", "memory.sessions", "memory.day_table", "memory.flux_arcs", "memory.holographic_blocks",
    "memory.preoccupation_centroids", "memory.consolidations", "memory.block_relationships",
    "psi.utterances", "psi.psi_frames", "psi.surprise_events", "psi.band_centroids",
    "procedural.procedural_memory", "procedural.causal_edges", "procedural.frustration_ledger",
)
# Operations tables that name users: only the owner and psimem_admin read them.
ADMIN_ONLY_USER_TABLES = ("ops.cycle_runs", "ops.cycle_stage_log", "memory.user_bindings")


def upgrade() -> None:
    op.execute("""
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;

    CREATE TABLE memory.user_bindings (
        user_id    uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        grantee    oid NOT NULL,
        granted_by name NOT NULL DEFAULT session_user,
        granted_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, grantee)
    );
    COMMENT ON TABLE memory.user_bindings IS
      'Which role (a login, or a group role whose members inherit it) may act for which user. Written by memory.ensure_user for the users a writer creates and by psimem_admin through memory.bind_user / memory.unbind_user.';

    -- Fail closed until db/functions/memory_acting_user.sql replaces it.
    CREATE FUNCTION memory._acting_user() RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT NULL::uuid $$;
    REVOKE ALL ON FUNCTION memory._acting_user() FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION memory._acting_user() TO psimem_writer, psimem_reader, psimem_admin;

    ALTER TABLE memory.users ADD COLUMN realm name;
    UPDATE memory.users SET realm = session_user;
    ALTER TABLE memory.users ALTER COLUMN realm SET NOT NULL,
        DROP CONSTRAINT users_external_ref_key,
        ADD CONSTRAINT users_realm_external_ref_unique UNIQUE (realm, external_ref);
    COMMENT ON COLUMN memory.users.realm IS
      'the role whose namespace external_ref is unique in: the login (or group role) that created the user';

    ALTER TABLE memory.sessions DROP CONSTRAINT sessions_external_ref_key,
        ADD CONSTRAINT sessions_user_external_ref_unique UNIQUE (user_id, external_ref);

    ALTER TABLE memory.consolidations ADD COLUMN user_id uuid REFERENCES memory.users ON DELETE CASCADE;
    UPDATE memory.consolidations c SET user_id = s.user_id FROM memory.sessions s WHERE s.session_id = c.session_id;
    ALTER TABLE memory.consolidations ALTER COLUMN user_id SET NOT NULL;

    ALTER TABLE memory.block_relationships ADD COLUMN user_id uuid REFERENCES memory.users ON DELETE CASCADE;
    UPDATE memory.block_relationships r SET user_id = b.user_id
    FROM memory.holographic_blocks b WHERE b.block_id = r.source_block_id;
    ALTER TABLE memory.block_relationships ALTER COLUMN user_id SET NOT NULL;

    DO $$
    DECLARE
        v_owner uuid;
    BEGIN
        IF EXISTS (SELECT 1 FROM procedural.procedural_memory) OR EXISTS (SELECT 1 FROM procedural.frustration_ledger) THEN
            INSERT INTO memory.users (external_ref, realm, tier) VALUES ('psimem:unowned', 'psimem', 'normal')
            ON CONFLICT (realm, external_ref) DO NOTHING;
            SELECT user_id INTO v_owner FROM memory.users WHERE realm = 'psimem' AND external_ref = 'psimem:unowned';
        END IF;
        ALTER TABLE procedural.procedural_memory ADD COLUMN user_id uuid;
        ALTER TABLE procedural.frustration_ledger ADD COLUMN user_id uuid;
        ALTER TABLE procedural.causal_edges ADD COLUMN user_id uuid;
        UPDATE procedural.procedural_memory SET user_id = v_owner;
        UPDATE procedural.frustration_ledger SET user_id = v_owner;
        UPDATE procedural.causal_edges SET user_id = v_owner;
    END $$;
    -- A row a writer inserts is its acting user's by default; the policies refuse any other.
    ALTER TABLE procedural.procedural_memory
        ALTER COLUMN user_id SET DEFAULT memory._acting_user(), ALTER COLUMN user_id SET NOT NULL,
        ADD CONSTRAINT procedural_memory_user_fk FOREIGN KEY (user_id) REFERENCES memory.users ON DELETE CASCADE,
        ADD CONSTRAINT procedural_memory_reflex_user_unique UNIQUE (reflex_id, user_id);
    ALTER TABLE procedural.frustration_ledger
        ALTER COLUMN user_id SET DEFAULT memory._acting_user(), ALTER COLUMN user_id SET NOT NULL,
        ADD CONSTRAINT frustration_ledger_user_fk FOREIGN KEY (user_id) REFERENCES memory.users ON DELETE CASCADE;
    -- An edge joins two reflexes of one user: the composite keys make that a constraint.
    ALTER TABLE procedural.causal_edges
        ALTER COLUMN user_id SET DEFAULT memory._acting_user(), ALTER COLUMN user_id SET NOT NULL,
        DROP CONSTRAINT causal_edges_source_reflex_id_fkey, DROP CONSTRAINT causal_edges_target_reflex_id_fkey,
        ADD CONSTRAINT causal_edges_source_same_user FOREIGN KEY (source_reflex_id, user_id)
            REFERENCES procedural.procedural_memory (reflex_id, user_id) ON DELETE CASCADE,
        ADD CONSTRAINT causal_edges_target_same_user FOREIGN KEY (target_reflex_id, user_id)
            REFERENCES procedural.procedural_memory (reflex_id, user_id) ON DELETE CASCADE;
    CREATE INDEX idx_procedural_user ON procedural.procedural_memory (user_id);
    CREATE INDEX idx_frustration_user ON procedural.frustration_ledger (user_id);
    CREATE INDEX idx_causal_user ON procedural.causal_edges (user_id);
    CREATE INDEX idx_consolidations_user ON memory.consolidations (user_id);
    CREATE INDEX idx_relationships_user ON memory.block_relationships (user_id);

    GRANT SELECT, INSERT, DELETE ON memory.user_bindings TO psimem_admin;
    REVOKE ALL ON procedural.maintenance_runs FROM psimem_reader;  -- bookkeeping of the daily jobs
    GRANT SELECT, INSERT, UPDATE, DELETE ON procedural.procedural_memory, procedural.causal_edges TO psimem_admin;
    """)
    for table in USER_TABLES:
        op.execute(user_policies(table))
    for table in ADMIN_ONLY_USER_TABLES:
        op.execute(user_policies(table, acting_roles=()))


def downgrade() -> None:
    from psimem.migration_sql import acting_user_policies

    for table in USER_TABLES + ADMIN_ONLY_USER_TABLES:
        short = table.split(".")[-1]
        op.execute(f"DROP POLICY IF EXISTS {short}_acting_user ON {table}; DROP POLICY IF EXISTS {short}_admin ON {table}")
    for table in ("memory.consolidations", "memory.block_relationships", "procedural.procedural_memory",
                  "procedural.causal_edges", "procedural.frustration_ledger", "ops.cycle_runs", "ops.cycle_stage_log"):
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    for table in USER_TABLES[:6] + USER_TABLES[8:12]:
        op.execute(acting_user_policies(table))
    op.execute("""
    ALTER TABLE procedural.causal_edges DROP CONSTRAINT causal_edges_source_same_user,
        DROP CONSTRAINT causal_edges_target_same_user,
        ADD FOREIGN KEY (source_reflex_id) REFERENCES procedural.procedural_memory (reflex_id) ON DELETE CASCADE,
        ADD FOREIGN KEY (target_reflex_id) REFERENCES procedural.procedural_memory (reflex_id) ON DELETE CASCADE,
        DROP COLUMN user_id;
    ALTER TABLE procedural.procedural_memory DROP CONSTRAINT procedural_memory_reflex_user_unique, DROP COLUMN user_id;
    ALTER TABLE procedural.frustration_ledger DROP COLUMN user_id;
    ALTER TABLE memory.block_relationships DROP COLUMN user_id;
    ALTER TABLE memory.consolidations DROP COLUMN user_id;
    ALTER TABLE memory.sessions DROP CONSTRAINT sessions_user_external_ref_unique, ADD UNIQUE (external_ref);
    DELETE FROM memory.users WHERE realm = 'psimem' AND external_ref = 'psimem:unowned';
    ALTER TABLE memory.users DROP CONSTRAINT users_realm_external_ref_unique, ADD UNIQUE (external_ref),
        DROP COLUMN realm;
    DROP TABLE memory.user_bindings;
    DROP FUNCTION memory._acting_user();
    DELETE FROM ops.applied_sql;  -- the code files of this revision go with it: re-apply all on upgrade
    GRANT CREATE ON SCHEMA public TO PUBLIC;
    """)
