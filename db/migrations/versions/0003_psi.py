"""ψ-trajectory memory: schema psi (utterances, psi_frames, surprise events, band centroids).

A psi_frames row holds a run of 1..500 frames of one band of one utterance (the codec
predicts within a run; each row decodes on its own). Its natural key (uttr_hash, band,
ts_epoch_ms) makes a replayed spool idempotent, and a time-range query walks that
index: a run spans at most 10 s (psi_frames_run_span_bounded), so the rows overlapping
[t0, t1] are those with ts_epoch_ms in (t0 - 10 s, t1].

Revision ID: 0003
Revises: 0002
"""
from alembic import op

from psimem.migration_sql import acting_user_policies

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("utterances", "psi_frames", "surprise_events", "band_centroids")


def upgrade() -> None:
    op.execute("""
    CREATE SCHEMA psi;
    COMMENT ON SCHEMA psi IS 'psimem ψ-trajectory memory: how each reply was voiced, as oscillator state';

    CREATE TABLE psi.utterances (
        uttr_hash        bytea PRIMARY KEY,
        user_id          uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        entry_id         uuid REFERENCES memory.day_table ON DELETE SET NULL,
        mode             text NOT NULL,
        oscillator_count smallint NOT NULL,
        codec_version    smallint NOT NULL,
        sample_rate      int NOT NULL,
        frame_ms         smallint NOT NULL DEFAULT 20,
        started_at_ms    bigint NOT NULL,
        created_at       timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT utterances_hash_is_siphash128 CHECK (length(uttr_hash) = 16),
        CONSTRAINT utterances_mode_known CHECK (mode IN ('analysis', 'synthesis')),
        CONSTRAINT utterances_oscillator_count_known CHECK (oscillator_count IN (128, 256, 512)),
        CONSTRAINT utterances_codec_version_known CHECK (codec_version IN (0, 1)),
        CONSTRAINT utterances_sample_rate_positive CHECK (sample_rate BETWEEN 4000 AND 192000),
        CONSTRAINT utterances_frame_ms_positive CHECK (frame_ms > 0),
        CONSTRAINT utterances_hash_user_unique UNIQUE (uttr_hash, user_id)
    );
    CREATE INDEX idx_utterances_entry ON psi.utterances (entry_id);
    CREATE INDEX idx_utterances_user_time ON psi.utterances (user_id, started_at_ms);
    COMMENT ON TABLE psi.utterances IS
      'One voiced reply: the day_table turn it voices, oscillator count, codec, sample rate. uttr_hash is SipHash-2-4-128 of the canonical turn text keyed by the turn''s entry_id (checked on insert).';

    CREATE TABLE psi.psi_frames (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        uttr_hash      bytea NOT NULL,
        user_id        uuid NOT NULL,
        ts_epoch_ms    bigint NOT NULL,
        band           smallint NOT NULL,
        duration_ms    smallint NOT NULL,
        frame_count    smallint NOT NULL DEFAULT 1,
        psi_blob       bytea NOT NULL,
        emo_vec        real[],
        integrity_crc  bigint NOT NULL,
        CONSTRAINT psi_frames_utterance_fk FOREIGN KEY (uttr_hash, user_id)
            REFERENCES psi.utterances (uttr_hash, user_id) ON DELETE CASCADE,
        CONSTRAINT psi_frames_band_known CHECK (band IN (0, 1, 2)),
        CONSTRAINT psi_frames_duration_positive CHECK (duration_ms > 0),
        CONSTRAINT psi_frames_frame_count_range CHECK (frame_count BETWEEN 1 AND 500),
        CONSTRAINT psi_frames_run_span_bounded CHECK (frame_count * duration_ms <= 10000),
        CONSTRAINT psi_frames_emo_vec_three CHECK (emo_vec IS NULL OR cardinality(emo_vec) = 3),
        CONSTRAINT psi_frames_crc_uint32 CHECK (integrity_crc BETWEEN 0 AND 4294967295),
        CONSTRAINT psi_frames_natural_key UNIQUE (uttr_hash, band, ts_epoch_ms)
    );
    -- blobs are already compressed: keep PostgreSQL from trying again
    ALTER TABLE psi.psi_frames ALTER COLUMN psi_blob SET STORAGE EXTERNAL;
    CREATE INDEX idx_psi_frames_user ON psi.psi_frames (user_id);
    COMMENT ON TABLE psi.psi_frames IS
      'ψ frames (spec 000 section 1.2): a run of frame_count frames of one band (0 micro 20 ms, 1 meso 250 ms, 2 macro 2 s) from ts_epoch_ms, duration_ms apart; psi_blob starts with its codec version; integrity_crc is CRC-32C of psi_blob, checked by a trigger.';
    COMMENT ON COLUMN psi.psi_frames.frame_count IS 'frames in this row''s run; frame i starts at ts_epoch_ms + i * duration_ms';

    CREATE TABLE psi.surprise_events (
        uttr_hash    bytea NOT NULL,
        user_id      uuid NOT NULL,
        band         smallint NOT NULL DEFAULT 0,
        ts_epoch_ms  bigint NOT NULL,
        epsilon      real NOT NULL,
        threshold    real NOT NULL,
        PRIMARY KEY (uttr_hash, band, ts_epoch_ms),
        CONSTRAINT surprise_events_utterance_fk FOREIGN KEY (uttr_hash, user_id)
            REFERENCES psi.utterances (uttr_hash, user_id) ON DELETE CASCADE,
        CONSTRAINT surprise_events_band_known CHECK (band IN (0, 1, 2)),
        CONSTRAINT surprise_events_epsilon_over_threshold CHECK (epsilon > threshold AND threshold >= 0)
    );
    CREATE INDEX idx_surprise_events_user ON psi.surprise_events (user_id, ts_epoch_ms);
    COMMENT ON TABLE psi.surprise_events IS
      'N400-style surprise (spec 003): the one-step linear predictor of the micro state missed by epsilon = ||psi_pred - psi_obs|| > threshold';

    CREATE TABLE psi.band_centroids (
        uttr_hash    bytea NOT NULL,
        user_id      uuid NOT NULL,
        band         smallint NOT NULL,
        ts_epoch_ms  bigint NOT NULL,
        centroid     real[] NOT NULL,
        weight       real NOT NULL DEFAULT 1,
        PRIMARY KEY (uttr_hash, band, ts_epoch_ms),
        CONSTRAINT band_centroids_utterance_fk FOREIGN KEY (uttr_hash, user_id)
            REFERENCES psi.utterances (uttr_hash, user_id) ON DELETE CASCADE,
        CONSTRAINT band_centroids_band_known CHECK (band IN (0, 1, 2)),
        CONSTRAINT band_centroids_weight_unit CHECK (weight > 0 AND weight <= 1),
        CONSTRAINT band_centroids_not_empty CHECK (cardinality(centroid) > 0)
    );
    CREATE INDEX idx_band_centroids_time ON psi.band_centroids (ts_epoch_ms);
    CREATE INDEX idx_band_centroids_user ON psi.band_centroids (user_id, band, ts_epoch_ms);
    COMMENT ON TABLE psi.band_centroids IS
      'Mean state of each band every 2 s (spec 003 working memory); psi.decay_centroids() fades rows older than psi.centroid_keep_ms exponentially and prunes them';
    """)
    for table in TABLES:
        op.execute(acting_user_policies(f"psi.{table}"))
    op.execute("""
    GRANT USAGE ON SCHEMA psi TO psimem_writer, psimem_reader, psimem_admin;
    GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA psi TO psimem_writer;
    GRANT DELETE ON psi.utterances TO psimem_writer;
    GRANT SELECT ON ALL TABLES IN SCHEMA psi TO psimem_reader;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA psi TO psimem_admin;

    INSERT INTO ops.settings (key, value, description) VALUES
      ('psi.frames_per_row', '50', 'micro frames per psi_frames row (one codec run; 50 = 1 s)'),
      ('psi.codec_version', '1', 'codec the realtime process writes (0 = the seed''s pipeline, 1 = current)'),
      ('psi.flush_idle_ms', '2000', 'the realtime process flushes an utterance''s buffered micro frames after this much idle time'),
      ('psi.surprise_sigma', '5.0', 'a surprise event fires when epsilon exceeds its running mean by this many running standard deviations'),
      ('psi.centroid_keep_ms', '60000', 'band centroids keep full weight this long'),
      ('psi.centroid_half_life_ms', '30000', 'after psi.centroid_keep_ms a centroid''s weight halves every this many ms'),
      ('psi.centroid_min_weight', '0.05', 'band centroids whose weight decays below this are deleted'),
      ('cron.psi_centroid_decay', '"* * * * *"', 'pg_cron schedule of psi.decay_centroids()');
    """)


def downgrade() -> None:
    op.execute("""
    DO $$ BEGIN
      PERFORM cron.unschedule(jobname) FROM cron.job WHERE jobname = 'psimem-psi-centroid-decay';
    END $$;
    DELETE FROM ops.settings WHERE key LIKE 'psi.%' OR key = 'cron.psi_centroid_decay';
    DELETE FROM ops.applied_sql;  -- ops.install_cron_jobs() lists the psi job: re-apply all code on upgrade
    DROP SCHEMA psi CASCADE;
    """)
