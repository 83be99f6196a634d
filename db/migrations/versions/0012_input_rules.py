"""Input rules: every setting has a type and a range; turns take a client reference.

- ops.settings gains value_type, min_value, max_value and allowed. A trigger
  (db/triggers/ops_settings_check.sql) checks every insert and update against them, so
  ops.set_setting and a plain UPDATE alike refuse flux.baseline_window = 0 or
  limits.content_max_chars = -1 with an error naming the key and its rule. Intervals are
  ranged in seconds. A setting added by a later revision must state its type.
- New limits: limits.future_skew (how far ahead of now() a timestamp may lie),
  limits.turn_number_max, limits.perplexity_max.
- day_table.external_ref: the agent's own id for a turn, unique within its session
  (a partial unique index, built CONCURRENTLY so a live install keeps taking turns).
  record_turn with a reference already recorded returns that turn instead of a duplicate,
  which makes a client's retry of an unacknowledged commit harmless.

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DAY = 86400
I, N, T, IV, RX, FN, CRON, EN = "integer", "number", "text", "interval", "regex", "function", "cron", "enum"
# key: (type, min, max) or (enum, allowed values)
RULES = {
    "continuity.closing_turns": (I, 1, 1000), "continuity.opening_turns": (I, 1, 1000),
    "continuity.similarity": (N, -1, 1), "continuity.window": (IV, 0, 365 * DAY),
    "cortex.coherence_gain_threshold": (N, -1, 1), "cortex.dead_summary_chars": (I, 1, 100000),
    "cortex.index_min_rows": (I, 1, 10**9), "cortex.margin_chars": (I, 0, 100000),
    "cortex.index_type": (EN, ["IVF_FLAT", "IVF_PQ", "IVF_HNSW_SQ", "IVF_HNSW_PQ"]),
    "cortex.max_block_age": (IV, 0, 3650 * DAY),
    "cron.night_cycle": (CRON,), "cron.procedural_maintenance": (CRON,), "cron.trim_history": (CRON,),
    "cron.psi_centroid_decay": (CRON,),
    "embedding.universal_dim": (I, 1, 16000), "embedding.native_dim": (I, 1, 16000),
    "embedding.universal_index": (EN, ["vector", "halfvec", "binary"]),
    "embedding.native_index": (EN, ["vector", "halfvec", "binary"]),
    "flux.baseline_window": (I, 2, 1000), "flux.min_baseline_turns": (I, 2, 1000),
    "flux.spike_sigma": (N, 0, 100), "flux.stabilization_count": (I, 1, 1000), "flux.stable_derivative": (N, 0, 10),
    "limits.content_max_chars": (I, 1, 10_000_000),
    "night.index_rebuild_min_blocks": (I, 0, 10**9), "night.index_rebuild_ratio": (N, 0, 1000),
    "night.insight_markers": (RX,), "night.live_arrete": (N, 0, 1), "night.live_interrogative_distance": (N, -1, 2),
    "night.live_spike_sigma": (N, 0, 100), "night.margin_turns": (I, 0, 100),
    "night.session_idle": (IV, 0, 30 * DAY), "night.summariser": (FN,), "night.summary_sentences": (I, 1, 100),
    "night.thematic_similarity": (N, -1, 1),
    "ops.keep_history": (IV, 3600, 3650 * DAY), "preoccupation.window": (IV, 3600, 365 * DAY),
    "procedural.decay_after": (IV, 0, 3650 * DAY), "procedural.decay_factor": (N, 0, 1),
    "procedural.edge_learning_rate": (N, 0, 1), "procedural.min_strength": (N, 0, 1),
    "procedural.prune_min_successes": (I, 0, 10**9), "procedural.prune_unused": (IV, DAY, 3650 * DAY),
    "psi.centroid_half_life_ms": (I, 1, 86_400_000), "psi.centroid_keep_ms": (I, 0, 86_400_000),
    "psi.centroid_min_weight": (N, 1e-6, 1), "psi.codec_version": (I, 0, 1), "psi.flush_idle_ms": (I, 10, 600_000),
    "psi.frames_per_row": (I, 1, 500), "psi.surprise_sigma": (N, 0, 1000),
    "raptor.max_level": (I, 1, 3), "raptor.min_cluster_size": (I, 2, 100000), "raptor.min_samples": (I, 1, 100000),
    "raptor.reduce_dims": (I, 1, 4096), "raptor.summary_members": (I, 1, 100),
    "recall.binary_overfetch": (I, 1, 1000), "recall.binary_overfetch_selective": (I, 1, 10000),
    "recall.ef_search": (I, 1, 1000), "recall.selective_rows": (I, 0, 10**9), "recall.window": (IV, 0, 3650 * DAY),
    "worker.batch_size": (I, 1, 100000), "worker.heartbeat_interval": (N, 0.1, 3600),
    "worker.poll_interval": (N, 0.1, 3600), "worker.retry_base": (IV, 0, DAY), "worker.retry_max": (IV, 1, 30 * DAY),
    "worker.stale_after": (IV, 1, DAY),
    "sql.code_version": (T,),
}
NEW = {
    "limits.future_skew": ('"1 hour"', "timestamps (created_at, started_at) may lie at most this far after now()", (IV, 0, 7 * DAY)),
    "limits.turn_number_max": ("1000000", "largest turn number a session may hold", (I, 1, 2_000_000_000)),
    "limits.perplexity_max": ("1000000000", "largest perplexity_score accepted", (N, 1, 1e30)),
}


def _rule_sql(key: str, rule: tuple) -> str:
    kind, rest = rule[0], rule[1:]
    lo, hi, allowed = "NULL", "NULL", "NULL"
    if kind == EN:
        allowed = "ARRAY[" + ", ".join(f"'{a}'" for a in rest[0]) + "]"
    elif rest:
        lo, hi = repr(rest[0]), repr(rest[1])
    return (f"UPDATE ops.settings SET value_type = '{kind}', min_value = {lo}, max_value = {hi}, allowed = {allowed} "
            f"WHERE key = '{key}';")


def upgrade() -> None:
    op.execute("""
    ALTER TABLE ops.settings
        ADD COLUMN value_type text, ADD COLUMN min_value numeric, ADD COLUMN max_value numeric, ADD COLUMN allowed text[],
        ADD CONSTRAINT settings_value_type_known
            CHECK (value_type IN ('integer', 'number', 'text', 'interval', 'regex', 'function', 'cron', 'enum')),
        ADD CONSTRAINT settings_range_ordered CHECK (min_value <= max_value),
        ADD CONSTRAINT settings_enum_has_values CHECK ((value_type = 'enum') = (allowed IS NOT NULL));
    COMMENT ON COLUMN ops.settings.value_type IS
      'integer, number, text, interval, regex (a valid regular expression), function (a regproc), cron (a pg_cron schedule) or enum (one of allowed)';
    COMMENT ON COLUMN ops.settings.min_value IS 'smallest value accepted (for an interval: in seconds)';
    COMMENT ON COLUMN ops.settings.max_value IS 'largest value accepted (for an interval: in seconds)';
    ALTER TABLE ops.applied_sql ADD COLUMN objects text[];
    COMMENT ON COLUMN ops.applied_sql.objects IS 'functions and procedures the file defined when last applied (regprocedure)';
    """)
    for key, (value, description, rule) in NEW.items():
        op.execute(f"INSERT INTO ops.settings (key, value, description) VALUES ('{key}', '{value}', '{description}') "
                   "ON CONFLICT (key) DO NOTHING")
        op.execute(_rule_sql(key, rule))
    op.execute("\n".join(_rule_sql(k, r) for k, r in RULES.items()))
    # A setting some earlier install added by hand keeps working as free text.
    op.execute("UPDATE ops.settings SET value_type = 'text' WHERE value_type IS NULL AND jsonb_typeof(value) = 'string'")
    op.execute("ALTER TABLE ops.settings ALTER COLUMN value_type SET NOT NULL")

    op.execute("ALTER TABLE memory.day_table ADD COLUMN external_ref text")
    op.execute("COMMENT ON COLUMN memory.day_table.external_ref IS 'the agent''s own id for this turn, unique within the session'")
    with op.get_context().autocommit_block():
        op.execute("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_day_table_session_external_ref "
                   "ON memory.day_table (session_id, external_ref) WHERE external_ref IS NOT NULL")


def downgrade() -> None:
    op.execute("""
    DROP INDEX IF EXISTS memory.idx_day_table_session_external_ref;
    ALTER TABLE memory.day_table DROP COLUMN external_ref;
    DROP TRIGGER IF EXISTS settings_check ON ops.settings;
    DELETE FROM ops.settings WHERE key IN ('limits.future_skew', 'limits.turn_number_max', 'limits.perplexity_max');
    ALTER TABLE ops.settings DROP COLUMN value_type, DROP COLUMN min_value, DROP COLUMN max_value, DROP COLUMN allowed;
    ALTER TABLE ops.applied_sql DROP COLUMN objects;
    DELETE FROM ops.applied_sql;
    """)
