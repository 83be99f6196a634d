"""Cortex worker state: job attempts, heartbeats and the Cortex bookkeeping in ops.

The worker (psimem worker) registers in ops.workers and heartbeats there; every time it
takes a job an ops.job_attempts row records who ran it, when, and how it ended, so a
job's history survives its retries. Blocks imported from Bifocal Packets get their own
block_kind. The tunables of the worker, the Cortex and RAPTOR clustering are settings.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE ops.workers (
        worker_id      text PRIMARY KEY,
        host           text NOT NULL,
        pid            int NOT NULL,
        code_version   text NOT NULL,
        cortex_uri     text NOT NULL,
        started_at     timestamptz NOT NULL DEFAULT now(),
        heartbeat_at   timestamptz NOT NULL DEFAULT now(),
        stopped_at     timestamptz,
        state          text NOT NULL DEFAULT 'idle',
        current_job_id bigint,
        jobs_done      bigint NOT NULL DEFAULT 0,
        jobs_retried   bigint NOT NULL DEFAULT 0,
        jobs_failed    bigint NOT NULL DEFAULT 0,
        jobs_released  bigint NOT NULL DEFAULT 0,
        CONSTRAINT workers_state_known CHECK (state IN ('idle', 'busy', 'stopped')),
        CONSTRAINT workers_stopped_has_time CHECK ((state = 'stopped') = (stopped_at IS NOT NULL))
    );
    CREATE INDEX idx_workers_heartbeat ON ops.workers (heartbeat_at) WHERE state <> 'stopped';
    COMMENT ON TABLE ops.workers IS
      'One row per worker process (psimem worker): its SQL code version, Cortex location, state and last heartbeat';

    CREATE TABLE ops.job_attempts (
        attempt_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id       bigint NOT NULL REFERENCES ops.jobs ON DELETE CASCADE,
        attempt      int NOT NULL,
        worker_id    text NOT NULL,
        started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at  timestamptz,
        outcome      text NOT NULL DEFAULT 'running',
        error        text,
        result       jsonb,
        CONSTRAINT job_attempts_outcome_known
            CHECK (outcome IN ('running', 'done', 'retry', 'failed', 'released', 'abandoned')),
        CONSTRAINT job_attempts_finished_unless_running CHECK ((outcome = 'running') = (finished_at IS NULL))
    );
    CREATE INDEX idx_job_attempts_job ON ops.job_attempts (job_id);
    CREATE INDEX idx_job_attempts_running ON ops.job_attempts (job_id) WHERE outcome = 'running';
    COMMENT ON TABLE ops.job_attempts IS
      'Every time a worker took a job: which worker, when, and the outcome (done, retry, failed, released on shutdown, abandoned by a worker that stopped heartbeating) with the error or result';

    CREATE INDEX idx_jobs_running ON ops.jobs (heartbeat_at) WHERE state = 'running';
    CREATE INDEX idx_jobs_kind_state ON ops.jobs (kind, state);

    ALTER TABLE memory.holographic_blocks DROP CONSTRAINT holographic_blocks_kind_known;
    ALTER TABLE memory.holographic_blocks ADD CONSTRAINT holographic_blocks_kind_known
        CHECK (block_kind IN ('arc', 'compound', 'imported'));
    CREATE INDEX idx_blocks_migrated ON memory.holographic_blocks (migrated_at) WHERE migrated_at IS NOT NULL;

    GRANT SELECT, INSERT, UPDATE, DELETE ON ops.workers, ops.job_attempts TO psimem_admin;

    INSERT INTO ops.settings (key, value, description) VALUES
      ('worker.poll_interval', '5', 'seconds the worker waits for NOTIFY psimem_jobs before it polls the queue anyway'),
      ('worker.heartbeat_interval', '5', 'seconds between worker heartbeats'),
      ('worker.stale_after', '"2 minutes"', 'a running job whose heartbeat is older than this is taken back from its worker (abandoned)'),
      ('worker.retry_base', '"30 seconds"', 'a failed job waits retry_base * 2^(attempt-1) before its next try'),
      ('worker.retry_max', '"1 hour"', 'longest wait between tries of a failed job'),
      ('worker.batch_size', '256', 'cortex_migrate jobs a worker takes at once and writes to LanceDB in one commit'),
      ('cortex.index_min_rows', '20000', 'cortex_blocks gets a vector index from this many rows: LanceDB''s docs call one unnecessary where ~100 ms brute force is acceptable; brute force measured 486 ms at 100k 768-d rows here (bench/cortex_search.py), so ~100 ms near 20k'),
      ('cortex.index_type', '"IVF_HNSW_SQ"', 'LanceDB vector index type for cortex_blocks, chosen by bench/cortex_search.py'),
      ('cortex.dead_summary_chars', '80', 'a dead-zone summary is condensed to its first sentence and at most this many characters in the Cortex'),
      ('cortex.margin_chars', '160', 'anterior/posterior margins keep the one turn next to the arc, at most this many characters, in the Cortex'),
      ('raptor.min_cluster_size', '5', 'HDBSCAN min_cluster_size at every RAPTOR level'),
      ('raptor.min_samples', '2', 'HDBSCAN min_samples at every RAPTOR level'),
      ('raptor.reduce_dims', '16', 'PCA dimensions the universal embeddings are reduced to before HDBSCAN'),
      ('raptor.max_level', '3', 'highest RAPTOR level: 1 branch, 2 trunk, 3 canopy'),
      ('raptor.summary_members', '3', 'members nearest a cluster centroid whose text makes its extractive summary');
    """)


def downgrade() -> None:
    op.execute("""
    DELETE FROM ops.settings WHERE split_part(key, '.', 1) IN ('worker', 'raptor')
        OR key IN ('cortex.index_min_rows', 'cortex.index_type', 'cortex.dead_summary_chars', 'cortex.margin_chars');
    DROP INDEX memory.idx_blocks_migrated;
    DELETE FROM memory.holographic_blocks WHERE block_kind = 'imported';
    ALTER TABLE memory.holographic_blocks DROP CONSTRAINT holographic_blocks_kind_known;
    ALTER TABLE memory.holographic_blocks ADD CONSTRAINT holographic_blocks_kind_known
        CHECK (block_kind IN ('arc', 'compound'));
    DROP INDEX ops.idx_jobs_kind_state;
    DROP INDEX ops.idx_jobs_running;
    DROP TABLE ops.job_attempts, ops.workers CASCADE;  -- and the bi views on them
    DROP FUNCTION IF EXISTS ops.register_worker(text, text, int, text, text), ops.worker_heartbeat(text),
        ops._reclaim_stale_jobs(), ops.take_jobs(text, int), ops.finish_jobs(text, bigint[], jsonb),
        ops.fail_job(text, bigint, text), ops.release_jobs(text, bigint[], text), ops.stop_worker(text),
        ops.queue_job(text, jsonb, text, int), memory._condense(text, int, boolean),
        memory.compress_prose_for_cortex(jsonb), memory.blocks_for_transfer(uuid[], boolean),
        memory.mark_migrated(uuid[]), memory.recall_hippocampus(real[], uuid, uuid, int),
        memory.import_block(uuid, uuid, jsonb, real[], real[], timestamptz, double precision, double precision,
                            uuid, uuid[], uuid, uuid);
    DELETE FROM ops.applied_sql WHERE path IN ('functions/ops_jobs.sql', 'functions/memory_cortex.sql',
                                               'functions/bi_worker.sql');
    """)
