"""Base: extensions, schemas, roles, ops settings, the Hippocampus tables and RLS.

Embedding sizes are chosen here, once, at install time (alembic -x universal_dim=N
-x native_dim=N, or PSIMEM_UNIVERSAL_DIM / PSIMEM_NATIVE_DIM; defaults 768 and 4096),
and recorded in ops.settings. The index type follows the size, because pgvector's
HNSW takes `vector` up to 2,000 dimensions and `halfvec` up to 4,000: larger vectors
are indexed through binary quantization (a stored bit(n) code column) and re-ranked
exactly at query time.

Revision ID: 0001
Revises:
"""
import os

from alembic import context, op

from psimem.migration_sql import acting_user_policies, binary_code_column, hnsw_index, index_kind

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROLES = ("psimem_writer", "psimem_reader", "psimem_bi", "psimem_admin")


def _dim(name: str, default: int) -> int:
    raw = context.get_x_argument(as_dictionary=True).get(name) or os.environ.get(f"PSIMEM_{name.upper()}")
    value = int(raw) if raw else default
    if not 1 <= value <= 16000:
        raise ValueError(f"{name}: must be between 1 and 16000 (pgvector's limit), got {value}")
    return value


def upgrade() -> None:
    udim, ndim = _dim("universal_dim", 768), _dim("native_dim", 4096)
    op.execute("""
    DO $$ BEGIN
      IF coalesce(current_setting('cron.database_name', true), '') <> current_database() THEN
        RAISE EXCEPTION 'pg_cron: cron.database_name is %, but psimem is being installed in database %',
          coalesce(current_setting('cron.database_name', true), '(unset)'), current_database()
          USING HINT = 'set shared_preload_libraries=pg_cron and cron.database_name to this database (psimem db up does)';
      END IF;
    END $$;
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE EXTENSION IF NOT EXISTS pg_cron;
    CREATE EXTENSION IF NOT EXISTS plpython3u;
    CREATE EXTENSION IF NOT EXISTS pgcrypto;
    """)
    # Roles are cluster-wide: another psimem database on the same server may have made them.
    for role in ROLES:
        op.execute(f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    op.execute("GRANT psimem_writer, psimem_reader TO psimem_admin")

    op.execute("""
    CREATE SCHEMA ops;
    COMMENT ON SCHEMA ops IS 'psimem operations: settings, applied SQL code, job queue and run logs';
    CREATE SCHEMA memory;
    COMMENT ON SCHEMA memory IS 'psimem Hippocampus: users, sessions, the day table and recall';
    CREATE SCHEMA bi;
    COMMENT ON SCHEMA bi IS 'read-only views for BI tools; no raw private content';

    CREATE TABLE ops.settings (
        key         text PRIMARY KEY,
        value       jsonb NOT NULL,
        description text NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT settings_key_dotted CHECK (key ~ '^[a-z_]+(\\.[a-z_0-9]+)+$')
    );
    COMMENT ON TABLE ops.settings IS 'Tunable parameters read by psimem functions; change with UPDATE or ops.set_setting()';

    CREATE TABLE ops.applied_sql (
        path       text PRIMARY KEY,
        checksum   text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE ops.applied_sql IS 'Checksums of db/functions and db/triggers files as last applied';

    CREATE TABLE memory.users (
        user_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        external_ref text UNIQUE,
        display_name text,
        tier         text NOT NULL DEFAULT 'normal',
        created_at   timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT users_tier_known CHECK (tier IN ('normal', 'meso', 'elder'))
    );
    COMMENT ON TABLE memory.users IS 'People the agent talks to; tier sets how long the Hippocampus keeps their memories';

    CREATE TABLE memory.sessions (
        session_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        user_id           uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        external_ref      text UNIQUE,
        started_at        timestamptz NOT NULL DEFAULT now(),
        last_turn_at      timestamptz,
        turn_count        int NOT NULL DEFAULT 0,
        -- live flux state, kept by the day_table trigger (the per-turn half of flux detection)
        flux_recent       real[] NOT NULL DEFAULT '{}',
        flux_window_open  boolean NOT NULL DEFAULT false,
        flux_stable_count int NOT NULL DEFAULT 0,
        flux_baseline     real,
        flux_peak         real,
        CONSTRAINT sessions_turn_count_nonnegative CHECK (turn_count >= 0)
    );
    CREATE INDEX idx_sessions_user ON memory.sessions (user_id, started_at);
    COMMENT ON TABLE memory.sessions IS 'Conversations; each acts for one user';
    """)
    op.execute(f"""
    CREATE TABLE memory.day_table (
        entry_id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        session_id          uuid NOT NULL REFERENCES memory.sessions ON DELETE CASCADE,
        role                text NOT NULL,
        content             text NOT NULL,
        native_embedding    vector({ndim}),
        universal_embedding vector({udim}),
        created_at          timestamptz NOT NULL DEFAULT now(),
        perplexity_score    double precision,
        flux_state          text,
        user_id             uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        user_tier           text,
        turn_number         int NOT NULL,
        token_count         int,
        CONSTRAINT day_table_role_known CHECK (role IN ('user', 'assistant', 'system')),
        CONSTRAINT day_table_content_not_blank CHECK (content ~ '\\S'),
        CONSTRAINT day_table_perplexity_nonnegative CHECK (perplexity_score >= 0),
        CONSTRAINT day_table_flux_state_known CHECK (flux_state IN ('baseline', 'spike', 'resolution', 'stable')),
        CONSTRAINT day_table_user_tier_known CHECK (user_tier IN ('normal', 'meso', 'elder')),
        CONSTRAINT day_table_turn_number_positive CHECK (turn_number > 0),
        CONSTRAINT day_table_token_count_nonnegative CHECK (token_count >= 0),
        CONSTRAINT day_table_session_turn_unique UNIQUE (session_id, turn_number)
    );
    COMMENT ON TABLE memory.day_table IS 'The Hippocampus day table (spec 004 section 2.2): every turn with its embeddings and perplexity';
    CREATE INDEX idx_day_table_session ON memory.day_table (session_id);
    CREATE INDEX idx_day_table_time ON memory.day_table (created_at);
    CREATE INDEX idx_day_table_user_time ON memory.day_table (user_id, created_at);
    {binary_code_column('memory.day_table', 'universal_embedding', udim)}
    {binary_code_column('memory.day_table', 'native_embedding', ndim)}
    {hnsw_index('idx_day_table_universal_embedding', 'memory.day_table', 'universal_embedding', udim)};
    {hnsw_index('idx_day_table_native_embedding', 'memory.day_table', 'native_embedding', ndim)};
    """)

    # Row-level security: writers and readers see only the user their session acts for
    # (SET psimem.user_id, or memory.act_for()); unset means nothing is visible.
    for table in ("users", "sessions", "day_table"):
        op.execute(acting_user_policies(f"memory.{table}"))
    op.execute("""
    GRANT USAGE ON SCHEMA memory TO psimem_writer, psimem_reader, psimem_admin;
    GRANT USAGE ON SCHEMA ops TO psimem_writer, psimem_reader, psimem_admin;
    GRANT USAGE ON SCHEMA bi TO psimem_bi, psimem_admin;
    GRANT SELECT ON ops.settings TO psimem_writer, psimem_reader;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA memory, ops TO psimem_admin;
    GRANT SELECT ON memory.users TO psimem_writer, psimem_reader;
    GRANT SELECT, INSERT, UPDATE ON memory.sessions TO psimem_writer;
    GRANT SELECT ON memory.sessions, memory.day_table TO psimem_reader;
    GRANT SELECT, INSERT, DELETE ON memory.day_table TO psimem_writer;
    """)

    op.execute(f"""
    INSERT INTO ops.settings (key, value, description) VALUES
      ('embedding.universal_dim', '{udim}', 'dimensions of universal embeddings (chosen at install)'),
      ('embedding.native_dim', '{ndim}', 'dimensions of native embeddings (chosen at install)'),
      ('embedding.universal_index', '"{index_kind(udim)}"', 'HNSW index form for universal embeddings: vector, halfvec or binary'),
      ('embedding.native_index', '"{index_kind(ndim)}"', 'HNSW index form for native embeddings: vector, halfvec or binary'),
      ('flux.baseline_window', '20', 'turns in the rolling perplexity baseline'),
      ('flux.spike_sigma', '1.5', 'a turn is a spike when perplexity > baseline mean + this many standard deviations'),
      ('flux.stable_derivative', '0.1', 'a turn is stable when |perplexity change| / baseline mean is below this'),
      ('flux.stabilization_count', '2', 'consecutive stable turns that close an open flux window'),
      ('flux.min_baseline_turns', '3', 'turns with perplexity needed before a spike can be detected'),
      ('limits.content_max_chars', '100000', 'longest turn content accepted, in characters'),
      ('recall.window', '"7 days"', 'how far back recall_recent looks across the user''s sessions'),
      ('recall.ef_search', '100', 'hnsw.ef_search used by recall functions'),
      ('recall.binary_overfetch', '10', 'candidates fetched per wanted row on binary-quantized indexes, before exact re-rank'),
      ('recall.binary_overfetch_selective', '40', 'the same when the filter keeps fewer than recall.selective_rows rows'),
      ('recall.selective_rows', '5000', 'below this many rows a recall filter counts as selective');
    """)


def downgrade() -> None:
    op.execute("""
    DROP SCHEMA IF EXISTS bi CASCADE;
    DROP SCHEMA IF EXISTS memory CASCADE;
    DROP SCHEMA IF EXISTS ops CASCADE;
    DROP EXTENSION IF EXISTS pg_cron;
    DROP EXTENSION IF EXISTS plpython3u;
    DROP EXTENSION IF EXISTS vector;
    DROP EXTENSION IF EXISTS pgcrypto;
    """)
    # Roles may still own or hold grants in another psimem database on this server.
    for role in ROLES:
        op.execute(f"""
        DO $$ BEGIN
          REVOKE ALL ON SCHEMA public FROM {role};
          DROP ROLE IF EXISTS {role};
        EXCEPTION WHEN dependent_objects_still_exist THEN
          RAISE NOTICE 'role {role} kept: still used elsewhere on this server';
        END $$""")
