"""The Night Cycle as a restartable procedure; what each turn costs to write.

The Night Cycle (db/functions/night/) becomes CALL memory.night_cycle(), which commits
after each batch of users (night.batch_users). Its state lives in tables keyed by run:

- ops.cycle_runs gains resume_after (the last user whose batch committed: a killed run
  resumes after it) and block_indexes (the blocks' HNSW definitions a backfill dropped,
  rebuilt when the run finishes, also after a crash).
- memory.night_stages lists the stages (number, name, the function of (run, user) that
  does it, and whether it runs per user, per user with sessions taken, or once per run).
  Each stage file registers its own row.
- memory.night_sessions, night_arcs, night_blocks, night_block_turns and night_zones hold
  what the stages hand each other, keyed by run and user, so any stage can be run and read
  alone from psql. They are UNLOGGED: a user's work commits with the user's output, so
  after a crash nothing in them is needed (PostgreSQL empties them), and they cost no WAL.
  They hold turns' text, so only the owner and psimem_admin read them. Their keys begin
  with (run_id, user_id): every stage reads one user's rows by index, however many rows
  the run has written (they are never analysed before the run reads them).

Write amplification of memory.record_turn (measured by bench/write_cost.py): the day_table
trigger aggregated the flux.* and limits.* settings for every turn; ops.turn_rules keeps
them as one row (a trigger on ops.settings rewrites it). The trigger's
UPDATE of the session could never be HOT, because idx_sessions_user_last_turn indexes
last_turn_at and turn_count, both of which every turn changes; without it, and with room
left on each page (fillfactor 70), the UPDATE writes no index entry. recall's bound on its
filter reads the user's sessions through idx_sessions_user instead. Indexes no query uses,
or that another index covers, are dropped (CONCURRENTLY, so a live install keeps taking
turns):
- day_table: idx_day_table_session (day_table_session_turn_unique leads with session_id),
  idx_day_table_time (nothing filters turns by time alone; recall uses user_id, created_at);
- holographic_blocks: idx_blocks_session (idx_blocks_session_turns leads with it),
  idx_blocks_coherence and idx_blocks_centroid (no query filters or orders by them);
- block_relationships: idx_relationships_type (no query filters by type alone) and
  idx_relationships_source (block_relationships_unique leads with source_block_id);
- flux_arcs: idx_flux_arcs_cycle; consolidations: idx_consolidations_cycle (BI views group
  whole tables; retention finds a user's consolidations by user).

A session's last_turn_at is never later than when its last turn was recorded (the trigger
takes the earlier of the turn's created_at and now()), so a turn dated in the future can no
longer keep its session from ever looking idle to the Night Cycle; sessions stamped in the
future before this revision are brought back to now().

Revision ID: 0015
Revises: 0013
"""
from alembic import op

from psimem.migration_sql import user_policies

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None

WORK_TABLES = ("memory.night_sessions", "memory.night_arcs", "memory.night_blocks", "memory.night_block_turns",
               "memory.night_zones")
# (index, table, definition) dropped by this revision; the downgrade builds them again.
DROPPED = (
    ("idx_sessions_user_last_turn", "memory.sessions", "(user_id, last_turn_at) INCLUDE (turn_count)"),
    ("idx_day_table_session", "memory.day_table", "(session_id)"),
    ("idx_day_table_time", "memory.day_table", "(created_at)"),
    ("idx_blocks_session", "memory.holographic_blocks", "(session_id)"),
    ("idx_blocks_coherence", "memory.holographic_blocks", "(coherence_gain DESC)"),
    ("idx_blocks_centroid", "memory.holographic_blocks", "(preoccupation_centroid_id)"),
    ("idx_relationships_type", "memory.block_relationships", "(relationship_type)"),
    ("idx_relationships_source", "memory.block_relationships", "(source_block_id)"),
    ("idx_flux_arcs_cycle", "memory.flux_arcs", "(cycle_date)"),
    ("idx_consolidations_cycle", "memory.consolidations", "(cycle_date)"),
)


def upgrade() -> None:
    # First: the autocommit block commits what ran before it, and a failure after it then
    # rolls back to a state a re-run completes (the drops are IF EXISTS).
    with op.get_context().autocommit_block():
        for name, table, _ in DROPPED:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {table.split('.')[0]}.{name}")
    conn = op.get_bind()
    s = dict(conn.exec_driver_sql("SELECT key, value #>> '{}' FROM ops.settings WHERE key LIKE 'embedding.%%'").fetchall())
    udim, ndim = int(s["embedding.universal_dim"]), int(s["embedding.native_dim"])

    op.execute("""
    ALTER TABLE ops.cycle_runs
        ADD COLUMN resume_after uuid,
        ADD COLUMN block_indexes text[] NOT NULL DEFAULT '{}';
    COMMENT ON COLUMN ops.cycle_runs.resume_after IS
      'the last user (in user_id order) whose batch this run has committed: a killed run resumes after it';
    COMMENT ON COLUMN ops.cycle_runs.block_indexes IS
      'definitions of the holographic_blocks HNSW indexes this run dropped for a backfill; built again when it finishes';
    CREATE INDEX idx_cycle_runs_running ON ops.cycle_runs (run_id) WHERE status = 'running';

    CREATE TABLE memory.night_stages (
        stage     smallint PRIMARY KEY,
        name      text NOT NULL UNIQUE,
        function  regproc NOT NULL,
        scope     text NOT NULL,
        CONSTRAINT night_stages_scope_known CHECK (scope IN ('user', 'taken', 'run')),
        CONSTRAINT night_stages_stage_range CHECK (stage BETWEEN 0 AND 99)
    );
    COMMENT ON TABLE memory.night_stages IS
      'The Night Cycle''s stages in order. function(p_run_id bigint, p_user_id uuid) returns the rows it touched. scope: user = for every user of the run; taken = only for a user whose sessions stage 0 took; run = once when the run finishes, after every user (p_user_id is the run''s user filter). Each db/functions/night/NN_name.sql registers its stage.';

    CREATE UNLOGGED TABLE memory.night_sessions (
        run_id            bigint NOT NULL,
        user_id           uuid NOT NULL,
        session_id        uuid NOT NULL,
        consolidated_turn int NOT NULL,
        first_turn        int NOT NULL,
        last_turn         int NOT NULL,
        turns             int NOT NULL,
        PRIMARY KEY (run_id, user_id, session_id)
    );
    COMMENT ON TABLE memory.night_sessions IS
      'Night Cycle work state, stage 0: the sessions a run took for a user (locked until the user''s batch commits), with the range of their turns it consolidates.';

    CREATE UNLOGGED TABLE memory.night_arcs (
        run_id           bigint NOT NULL,
        user_id          uuid NOT NULL,
        arc_id           uuid NOT NULL,
        session_id       uuid NOT NULL,
        start_turn       int NOT NULL,
        continues_arc_id uuid,
        PRIMARY KEY (run_id, user_id, arc_id)
    );
    COMMENT ON TABLE memory.night_arcs IS
      'Night Cycle work state, stage 1: the flux arcs a run stored for a user; continues_arc_id is the earlier part, stored by an earlier cycle, of an arc that was still open when its session was consolidated.';
    """)
    op.execute(f"""
    CREATE UNLOGGED TABLE memory.night_blocks (
        run_id              bigint NOT NULL,
        user_id             uuid NOT NULL,
        block_id            uuid NOT NULL DEFAULT gen_random_uuid(),
        block_kind          text NOT NULL DEFAULT 'arc',
        arc_id              uuid,
        session_id          uuid NOT NULL,
        start_turn          int NOT NULL,
        peak_turn           int,
        end_turn            int NOT NULL,
        first_turn          int NOT NULL,
        last_turn           int NOT NULL,
        resolved            boolean,
        baseline            double precision,
        peak                double precision,
        final               double precision,
        quality             double precision,
        duration            int,
        start_time          timestamptz,
        end_time            timestamptz,
        prose               jsonb,
        salience_scores     jsonb,
        arrete              double precision,
        coherence_gain      double precision,
        ties_merge_weight   double precision,
        universal_embedding vector({udim}),
        native_embedding    vector({ndim}),
        continues_from      uuid,
        continued_by        uuid,
        parent_metablock_id uuid,
        citations           jsonb,
        chain_root          uuid,
        chain_pos           int,
        PRIMARY KEY (run_id, user_id, block_id)
    );
    COMMENT ON TABLE memory.night_blocks IS
      'Night Cycle work state, stages 2-6: the blocks a run forms for a user, filled in stage by stage (span and flux metrics, salience, prose, embeddings, links) and stored by stage 6. start_turn..end_turn is what the block is about (an arc), first_turn..last_turn what it holds (with margins).';
    """)
    op.execute("""
    CREATE UNLOGGED TABLE memory.night_block_turns (
        run_id                 bigint NOT NULL,
        user_id                uuid NOT NULL,
        block_id               uuid NOT NULL,
        turn_number            int NOT NULL,
        perplexity_score       double precision,
        coherence_prev         double precision,
        interrogative_distance double precision,
        live                   boolean NOT NULL,
        PRIMARY KEY (run_id, user_id, block_id, turn_number)
    );
    COMMENT ON TABLE memory.night_block_turns IS
      'Night Cycle work state, stage 2: what the later stages measure on each turn a block holds (its text and vectors stay in day_table): coherence with the previous turn, Interrogative Distance, whether it is live.';

    CREATE UNLOGGED TABLE memory.night_zones (
        run_id     bigint NOT NULL,
        user_id    uuid NOT NULL,
        block_id   uuid NOT NULL,
        session_id uuid NOT NULL,
        live       boolean NOT NULL,
        first_turn int NOT NULL,
        last_turn  int NOT NULL,
        content    text,
        PRIMARY KEY (run_id, user_id, block_id, first_turn)
    );
    COMMENT ON TABLE memory.night_zones IS
      'Night Cycle work state, stages 2 and 4: the live and dead zones of each block (maximal runs of live or dead turns of its arc), live ones verbatim, dead ones summarised by stage 4.';
    """)
    for table in WORK_TABLES:
        op.execute(user_policies(table, acting_roles=()))
    op.execute("""
    GRANT SELECT, INSERT, UPDATE, DELETE ON memory.night_stages, memory.night_sessions, memory.night_arcs,
          memory.night_blocks, memory.night_block_turns, memory.night_zones TO psimem_admin;

    INSERT INTO ops.settings (key, value, description, value_type, min_value, max_value) VALUES
      ('night.batch_users', '1',
       'users the Night Cycle consolidates per transaction: it commits after each batch, and a writer into a session it took waits at most for that batch (at most 63: a subtransaction per user and one for the batch stay within the 64 PostgreSQL caches per transaction)',
       'integer', 1, 63)
    ON CONFLICT (key) DO NOTHING;
    UPDATE ops.settings SET description = 'pg_cron schedule of CALL memory.night_cycle()' WHERE key = 'cron.night_cycle';

    CREATE TABLE ops.turn_rules (
        singleton boolean PRIMARY KEY DEFAULT true,
        rules     jsonb NOT NULL,
        CONSTRAINT turn_rules_one_row CHECK (singleton)
    );
    COMMENT ON TABLE ops.turn_rules IS
      'The flux.* and limits.* settings as one row, rewritten by a trigger on ops.settings: what the day_table trigger reads for every turn.';
    GRANT SELECT ON ops.turn_rules TO psimem_writer, psimem_admin;

    ALTER TABLE memory.sessions SET (fillfactor = 70);  -- room on each page for the per-turn HOT update
    UPDATE memory.sessions SET last_turn_at = now() WHERE last_turn_at > now();
    """)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, cols in DROPPED:
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {cols}")
    op.execute(f"""
    ALTER TABLE memory.sessions RESET (fillfactor);
    DROP TRIGGER IF EXISTS settings_turn_rules ON ops.settings;
    DROP FUNCTION IF EXISTS ops._refresh_turn_rules();
    DROP TABLE ops.turn_rules;
    DELETE FROM ops.settings WHERE key = 'night.batch_users';
    UPDATE ops.settings SET description = 'pg_cron schedule of memory.run_night_cycle()' WHERE key = 'cron.night_cycle';
    DROP TABLE {', '.join(WORK_TABLES)}, memory.night_stages;
    DROP INDEX ops.idx_cycle_runs_running;
    ALTER TABLE ops.cycle_runs DROP COLUMN resume_after, DROP COLUMN block_indexes;
    DELETE FROM ops.applied_sql;  -- the code files of this revision go with it: re-apply all on upgrade
    """)
