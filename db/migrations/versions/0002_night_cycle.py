"""Night Cycle state: flux arcs, Holographic Blocks, relationships, preoccupation
centroids, the tier retention policy, cycle run logs, the job queue, procedural memory.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

from psimem.migration_sql import acting_user_policies, binary_code_column, hnsw_index

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    s = dict(conn.exec_driver_sql("SELECT key, value #>> '{}' FROM ops.settings WHERE key LIKE 'embedding.%%'").fetchall())
    udim, ndim = int(s["embedding.universal_dim"]), int(s["embedding.native_dim"])
    ukind, nkind = s["embedding.universal_index"], s["embedding.native_index"]

    op.execute("""
    -- Consolidation is tracked per session, never by updating day_table: an UPDATE there
    -- would re-insert the row into both HNSW indexes.
    ALTER TABLE memory.sessions
        ADD COLUMN consolidated_turn int NOT NULL DEFAULT 0,
        ADD COLUMN continues_session_id uuid REFERENCES memory.sessions ON DELETE SET NULL;
    COMMENT ON COLUMN memory.sessions.consolidated_turn IS 'turns up to this number have been consolidated by a Night Cycle';

    CREATE TABLE memory.consolidations (
        session_id  uuid NOT NULL REFERENCES memory.sessions ON DELETE CASCADE,
        first_turn  int NOT NULL,
        last_turn   int NOT NULL,
        cycle_date  date NOT NULL,
        PRIMARY KEY (session_id, first_turn),
        CONSTRAINT consolidations_turns_ordered CHECK (first_turn <= last_turn)
    );
    CREATE INDEX idx_consolidations_cycle ON memory.consolidations (cycle_date);
    COMMENT ON TABLE memory.consolidations IS 'Which turns of a session which Night Cycle consolidated; retention counts cycles from here';

    CREATE TABLE memory.retention_policy (
        tier             text PRIMARY KEY,
        raw_cycles       int NOT NULL,
        block_cycles     int NOT NULL,
        CONSTRAINT retention_policy_tier_known CHECK (tier IN ('normal', 'meso', 'elder')),
        CONSTRAINT retention_policy_cycles_nonnegative CHECK (raw_cycles >= 1 AND block_cycles >= 0)
    );
    COMMENT ON TABLE memory.retention_policy IS
      'Per tier: cycles raw turns stay (raw_cycles) and further cycles blocks stay in the Hippocampus before the Cortex (block_cycles). A turn no kept block covers goes after raw_cycles + block_cycles.';
    INSERT INTO memory.retention_policy VALUES ('normal', 1, 0), ('meso', 1, 2), ('elder', 1, 6);

    CREATE TABLE memory.preoccupation_centroids (
        centroid_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        user_id      uuid NOT NULL UNIQUE REFERENCES memory.users ON DELETE CASCADE,
        turn_count   int NOT NULL,
        window_start timestamptz NOT NULL,
        updated_at   timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE memory.preoccupation_centroids IS
      'Each user''s active Preoccupation Centroid: the normalised mean of their own recent turns, refreshed by the Night Cycle';
    """)
    op.execute(f"""
    ALTER TABLE memory.preoccupation_centroids
        ADD COLUMN universal_centroid vector({udim}), ADD COLUMN native_centroid vector({ndim});

    CREATE TABLE memory.flux_arcs (
        arc_id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        session_id             uuid NOT NULL REFERENCES memory.sessions ON DELETE CASCADE,
        user_id                uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        cycle_date             date NOT NULL,
        start_turn             int NOT NULL,
        peak_turn              int NOT NULL,
        end_turn               int NOT NULL,
        resolved               boolean NOT NULL,
        open_at_session_end    boolean NOT NULL,
        baseline_perplexity    double precision NOT NULL,
        baseline_sigma         double precision NOT NULL,
        peak_perplexity        double precision NOT NULL,
        final_perplexity       double precision NOT NULL,
        flux_reversal_quality  double precision NOT NULL,
        arc_duration_turns     int NOT NULL,
        start_time             timestamptz NOT NULL,
        end_time               timestamptz NOT NULL,
        open_arc_embedding     vector({udim}),
        continued_by_arc_id    uuid REFERENCES memory.flux_arcs ON DELETE SET NULL,
        CONSTRAINT flux_arcs_turns_ordered CHECK (start_turn <= peak_turn AND peak_turn <= end_turn),
        CONSTRAINT flux_arcs_session_start_unique UNIQUE (session_id, start_turn)
    );
    CREATE INDEX idx_flux_arcs_user_open ON memory.flux_arcs (user_id, end_time) WHERE open_at_session_end;
    CREATE INDEX idx_flux_arcs_cycle ON memory.flux_arcs (cycle_date);
    CREATE INDEX idx_flux_arcs_continued_by ON memory.flux_arcs (continued_by_arc_id) WHERE continued_by_arc_id IS NOT NULL;
    COMMENT ON TABLE memory.flux_arcs IS
      'Flux arcs found by Night Cycle stage 1: spike to resolution (or to session end, unresolved), with the spec''s metrics';

    CREATE TABLE memory.holographic_blocks (
        block_id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        prose                     jsonb NOT NULL,
        native_embedding          vector({ndim}),
        universal_embedding       vector({udim}),
        flux_metrics              jsonb NOT NULL,
        salience_scores           jsonb NOT NULL,
        coherence_gain            double precision NOT NULL,
        ties_merge_weight         double precision NOT NULL,
        session_id                uuid NOT NULL REFERENCES memory.sessions ON DELETE CASCADE,
        user_id                   uuid REFERENCES memory.users ON DELETE CASCADE,
        user_tier                 text,
        arc_start_time            timestamptz NOT NULL,
        arc_end_time              timestamptz NOT NULL,
        created_at                timestamptz DEFAULT now(),
        parent_metablock_id       uuid REFERENCES memory.holographic_blocks(block_id) ON DELETE SET NULL,
        session_continuity_flag   boolean DEFAULT false,
        continues_from            uuid REFERENCES memory.holographic_blocks(block_id) ON DELETE SET NULL,
        continued_by              uuid REFERENCES memory.holographic_blocks(block_id) ON DELETE SET NULL,
        citations                 jsonb,
        preoccupation_centroid_id uuid,
        derived_from              uuid REFERENCES memory.holographic_blocks(block_id) ON DELETE SET NULL,
        -- psimem's own bookkeeping
        block_kind                text NOT NULL DEFAULT 'arc',
        arc_id                    uuid REFERENCES memory.flux_arcs ON DELETE SET NULL,
        cycle_date                date NOT NULL,
        first_turn                int NOT NULL,
        last_turn                 int NOT NULL,
        hippocampus_until         date NOT NULL,
        long_term                 boolean NOT NULL DEFAULT false,
        migrated_at               timestamptz,
        CONSTRAINT holographic_blocks_kind_known CHECK (block_kind IN ('arc', 'compound')),
        CONSTRAINT holographic_blocks_user_tier_known CHECK (user_tier IN ('normal', 'meso', 'elder')),
        CONSTRAINT holographic_blocks_turns_ordered CHECK (first_turn <= last_turn),
        CONSTRAINT holographic_blocks_times_ordered CHECK (arc_start_time <= arc_end_time),
        CONSTRAINT holographic_blocks_prose_shape CHECK (prose ?& ARRAY['anterior_margin', 'live_zones', 'dead_zone_summaries', 'posterior_margin'])
    ) WITH (fillfactor = 90);  -- room for HOT updates (migrated_at) that leave the HNSW indexes alone
    {binary_code_column('memory.holographic_blocks', 'native_embedding', ndim, nkind)}
    {binary_code_column('memory.holographic_blocks', 'universal_embedding', udim, ukind)}
    CREATE UNIQUE INDEX idx_blocks_arc_unique ON memory.holographic_blocks (arc_id) WHERE block_kind = 'arc';
    {hnsw_index('idx_blocks_native', 'memory.holographic_blocks', 'native_embedding', ndim, nkind)};
    {hnsw_index('idx_blocks_universal', 'memory.holographic_blocks', 'universal_embedding', udim, ukind)};
    CREATE INDEX idx_blocks_session ON memory.holographic_blocks (session_id);
    CREATE INDEX idx_blocks_user ON memory.holographic_blocks (user_id);
    CREATE INDEX idx_blocks_coherence ON memory.holographic_blocks (coherence_gain DESC);
    CREATE INDEX idx_blocks_centroid ON memory.holographic_blocks (preoccupation_centroid_id);
    CREATE INDEX idx_blocks_session_turns ON memory.holographic_blocks (session_id, first_turn, last_turn);
    COMMENT ON TABLE memory.holographic_blocks IS
      'Holographic Blocks (spec 004 section 3.4): a flux arc with margins, live zones verbatim and dead zones summarised, dual embeddings and salience';
    """)
    op.execute("""
    CREATE TABLE memory.block_relationships (
        relationship_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        source_block_id   uuid NOT NULL REFERENCES memory.holographic_blocks(block_id) ON DELETE CASCADE,
        target_block_id   uuid NOT NULL REFERENCES memory.holographic_blocks(block_id) ON DELETE CASCADE,
        relationship_type text NOT NULL,
        strength          double precision,
        created_at        timestamptz DEFAULT now(),
        CONSTRAINT block_relationships_type_known CHECK (relationship_type IN ('cites', 'continues', 'derived_from', 'thematic')),
        CONSTRAINT block_relationships_unique UNIQUE (source_block_id, target_block_id, relationship_type)
    );
    CREATE INDEX idx_relationships_source ON memory.block_relationships (source_block_id);
    CREATE INDEX idx_relationships_target ON memory.block_relationships (target_block_id);
    CREATE INDEX idx_relationships_type ON memory.block_relationships (relationship_type);

    CREATE TABLE ops.cycle_runs (
        run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        cycle_date  date NOT NULL,
        user_id     uuid,
        started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at timestamptz,
        status      text NOT NULL DEFAULT 'running',
        users_done  int NOT NULL DEFAULT 0,
        users_failed int NOT NULL DEFAULT 0,
        CONSTRAINT cycle_runs_status_known CHECK (status IN ('running', 'ok', 'failed', 'partial'))
    );
    CREATE TABLE ops.cycle_stage_log (
        run_id      bigint NOT NULL REFERENCES ops.cycle_runs ON DELETE CASCADE,
        user_id     uuid,
        stage       int NOT NULL,
        stage_name  text NOT NULL,
        rows        bigint NOT NULL DEFAULT 0,
        duration_ms double precision NOT NULL,
        ok          boolean NOT NULL,
        error       text,
        logged_at   timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX idx_cycle_stage_log_run ON ops.cycle_stage_log (run_id);
    COMMENT ON TABLE ops.cycle_stage_log IS 'One row per Night Cycle stage and user: rows touched, duration, failure';

    CREATE TABLE ops.cleanup_log (
        cycle_date     date NOT NULL,
        tier           text NOT NULL,
        turns_deleted  bigint NOT NULL,
        logged_at      timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX idx_cleanup_log_date ON ops.cleanup_log (cycle_date);

    CREATE TABLE ops.jobs (
        job_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind         text NOT NULL,
        payload      jsonb NOT NULL DEFAULT '{}',
        dedupe_key   text UNIQUE,
        state        text NOT NULL DEFAULT 'queued',
        attempts     int NOT NULL DEFAULT 0,
        max_attempts int NOT NULL DEFAULT 5,
        run_after    timestamptz NOT NULL DEFAULT now(),
        locked_by    text,
        locked_at    timestamptz,
        heartbeat_at timestamptz,
        last_error   text,
        result       jsonb,
        created_at   timestamptz NOT NULL DEFAULT now(),
        finished_at  timestamptz,
        CONSTRAINT jobs_kind_known CHECK (kind IN ('cortex_migrate', 'cluster_update')),
        CONSTRAINT jobs_state_known CHECK (state IN ('queued', 'running', 'done', 'failed'))
    );
    CREATE INDEX idx_jobs_ready ON ops.jobs (run_after, job_id) WHERE state = 'queued';
    COMMENT ON TABLE ops.jobs IS 'Work for the Python worker (psimem worker), queued by the Night Cycle; taken with FOR UPDATE SKIP LOCKED';

    CREATE SCHEMA procedural;
    COMMENT ON SCHEMA procedural IS 'psimem procedural memory: reflexes, causal edges, the frustration ledger';
    """)
    op.execute(f"""
    CREATE TABLE procedural.procedural_memory (
        reflex_id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        context_embedding   vector({udim}),
        context_description text,
        action              text NOT NULL,
        action_type         text,
        success_count       int NOT NULL DEFAULT 0,
        failure_count       int NOT NULL DEFAULT 0,
        total_count         int NOT NULL DEFAULT 0,
        success_rate        double precision GENERATED ALWAYS AS
            (CASE WHEN total_count > 0 THEN success_count::float / total_count ELSE 0 END) STORED,
        last_accessed       timestamptz,
        last_success        timestamptz,
        created_at          timestamptz DEFAULT now(),
        owner_agent_id      uuid,
        CONSTRAINT procedural_memory_action_type_known CHECK (action_type IN ('tool_call', 'response_pattern', 'delegation')),
        CONSTRAINT procedural_memory_counts_consistent CHECK (success_count >= 0 AND failure_count >= 0
                                                              AND total_count = success_count + failure_count)
    );
    {binary_code_column('procedural.procedural_memory', 'context_embedding', udim, ukind)}
    {hnsw_index('idx_procedural_context', 'procedural.procedural_memory', 'context_embedding', udim, ukind)};
    CREATE INDEX idx_procedural_owner ON procedural.procedural_memory (owner_agent_id);
    CREATE INDEX idx_procedural_success ON procedural.procedural_memory (success_rate DESC);

    CREATE TABLE procedural.causal_edges (
        edge_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        source_reflex_id uuid REFERENCES procedural.procedural_memory(reflex_id) ON DELETE CASCADE,
        target_reflex_id uuid REFERENCES procedural.procedural_memory(reflex_id) ON DELETE CASCADE,
        causal_strength  double precision,
        temporal_gap_avg double precision,
        observation_count int DEFAULT 1,
        last_observed    timestamptz DEFAULT now(),
        CONSTRAINT causal_edges_pair_unique UNIQUE (source_reflex_id, target_reflex_id),
        CONSTRAINT causal_edges_strength_range CHECK (causal_strength BETWEEN 0 AND 1)
    );
    CREATE INDEX idx_causal_source ON procedural.causal_edges (source_reflex_id);
    CREATE INDEX idx_causal_target ON procedural.causal_edges (target_reflex_id);

    CREATE TABLE procedural.frustration_ledger (
        entry_id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        lieutenant_id        uuid NOT NULL,
        task_description     text NOT NULL,
        task_embedding       vector({udim}),
        worker_generation    int NOT NULL,
        worker_mutation_id   uuid,
        parent_mutation_id   uuid,
        success              boolean NOT NULL,
        failure_mode         text,
        execution_turns      int,
        mutation_description text,
        propagated           boolean DEFAULT false,
        created_at           timestamptz DEFAULT now(),
        CONSTRAINT frustration_ledger_failure_mode_known
            CHECK (failure_mode IN ('timeout', 'error', 'wrong_output', 'resource_exceeded')),
        CONSTRAINT frustration_ledger_failure_has_mode CHECK (success OR failure_mode IS NOT NULL)
    );
    CREATE INDEX idx_frustration_lieutenant ON procedural.frustration_ledger (lieutenant_id);
    CREATE INDEX idx_frustration_success ON procedural.frustration_ledger (success);
    {binary_code_column('procedural.frustration_ledger', 'task_embedding', udim, ukind)}
    {hnsw_index('idx_frustration_task', 'procedural.frustration_ledger', 'task_embedding', udim, ukind)};

    CREATE TABLE procedural.maintenance_runs (
        job       text NOT NULL,
        run_date  date NOT NULL,
        rows      bigint NOT NULL,
        ran_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (job, run_date)
    );
    COMMENT ON TABLE procedural.maintenance_runs IS 'Which daily procedural job ran for which date: makes decay and pruning idempotent per day';
    """)

    # Row-level security on the new per-user memory tables, as on day_table.
    for table in ("flux_arcs", "holographic_blocks", "preoccupation_centroids"):
        op.execute(acting_user_policies(f"memory.{table}"))
    op.execute("""
    GRANT USAGE ON SCHEMA procedural TO psimem_writer, psimem_reader, psimem_admin;
    GRANT SELECT ON memory.flux_arcs, memory.holographic_blocks, memory.preoccupation_centroids,
                    memory.block_relationships, memory.retention_policy, memory.consolidations
          TO psimem_reader, psimem_writer;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA memory, ops, procedural TO psimem_admin;
    GRANT SELECT, INSERT, UPDATE ON procedural.procedural_memory, procedural.causal_edges TO psimem_writer;
    GRANT SELECT, INSERT ON procedural.frustration_ledger TO psimem_writer;
    GRANT SELECT ON ALL TABLES IN SCHEMA procedural TO psimem_reader;

    INSERT INTO ops.settings (key, value, description) VALUES
      ('night.session_idle', '"30 minutes"', 'a session is consolidated only after this long without a turn'),
      ('night.margin_turns', '2', 'turns kept before the spike and after the resolution of an arc'),
      ('night.live_spike_sigma', '2.0', 'live zone: perplexity above local baseline mean + this many standard deviations'),
      ('night.live_arrete', '0.3', 'live zone: perplexity falls by more than this fraction from the previous turn'),
      ('night.live_interrogative_distance', '0.2', 'live zone: cosine distance to the preoccupation centroid below this'),
      ('night.insight_markers', '"\\\\m(i see|got it|that makes sense|makes sense now|now i (get|understand)|aha|eureka|exactly|breakthrough|i reali[sz]e)\\\\M"',
       'live zone: case-insensitive regular expression for explicit insight markers'),
      ('night.summariser', '"memory.summarise_extractive"', 'function(jsonb) returning text that summarises a dead zone'),
      ('night.summary_sentences', '1', 'sentences an extractive dead-zone summary keeps'),
      ('night.thematic_similarity', '0.8', 'blocks of one user in one cycle whose embeddings are this similar get a thematic edge'),
      ('continuity.window', '"24 hours"', 'a session can continue an open arc that ended at most this long before it started'),
      ('continuity.similarity', '0.75', 'cosine similarity of opening turns to an open arc that links them'),
      ('continuity.opening_turns', '3', 'opening turns of a session compared with open arcs'),
      ('continuity.closing_turns', '5', 'closing turns of a session that make an open arc''s embedding'),
      ('preoccupation.window', '"7 days"', 'turns of the user in this window form their Preoccupation Centroid'),
      ('cortex.coherence_gain_threshold', '0.3', 'blocks with at least this coherence_gain qualify for the Cortex'),
      ('cortex.max_block_age', '"7 days"', 'blocks older than this qualify for the Cortex regardless of tier'),
      ('procedural.prune_unused', '"30 days"', 'reflexes not accessed for this long are pruned when they have few successes'),
      ('procedural.prune_min_successes', '2', 'reflexes with fewer successes than this may be pruned'),
      ('procedural.decay_after', '"7 days"', 'causal edges not observed for this long decay'),
      ('procedural.decay_factor', '0.9', 'multiplier applied to an unobserved causal edge once per day'),
      ('procedural.min_strength', '0.1', 'causal edges weaker than this are deleted'),
      ('procedural.edge_learning_rate', '0.3', 'weight of a new observation in a causal edge''s strength'),
      ('cron.night_cycle', '"0 3 * * *"', 'pg_cron schedule of memory.run_night_cycle()'),
      ('cron.procedural_maintenance', '"30 3 * * *"', 'pg_cron schedule of procedural decay and pruning'),
      ('cron.trim_history', '"0 4 * * *"', 'pg_cron schedule of run-log and cron.job_run_details trimming'),
      ('ops.keep_history', '"30 days"', 'how long cron.job_run_details and cycle run logs are kept');
    """)


def downgrade() -> None:
    op.execute("""
    DO $$ BEGIN
      PERFORM cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'psimem-%';
    END $$;
    DROP SCHEMA procedural CASCADE;
    DROP TABLE ops.jobs, ops.cleanup_log, ops.cycle_stage_log, ops.cycle_runs CASCADE;  -- and the bi views on them
    DROP TABLE memory.block_relationships, memory.holographic_blocks, memory.flux_arcs,
               memory.preoccupation_centroids, memory.retention_policy CASCADE;
    DROP TABLE memory.consolidations;
    ALTER TABLE memory.sessions DROP COLUMN continues_session_id, DROP COLUMN consolidated_turn;
    DELETE FROM ops.settings WHERE split_part(key, '.', 1) IN
      ('night', 'continuity', 'preoccupation', 'cortex', 'procedural', 'cron') OR key = 'ops.keep_history';
    DELETE FROM ops.applied_sql;
    """)
