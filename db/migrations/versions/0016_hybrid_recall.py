"""Consolidation that keeps what was said; hybrid recall over the whole history.

- day_table.content_tsv: the turn's text as a tsvector (text search configuration
  'english'), a stored generated column with a GIN index, for the text leg of recall.
- memory.text_stats / memory.text_totals: per user, in how many turns each lexeme occurs
  and how many turns (and lexemes) there are in all, kept by a statement trigger on
  day_table (db/triggers/day_table_text_stats.sql). The text leg scores BM25 with them: a
  word that half of a user's turns contain (their name, say) says little about which turn
  answers a question, a rare one says a lot. PostgreSQL's ts_rank has no such weight.
  The counts are of every turn ever recorded (retention does not subtract), which is the
  history that recall searches.
- memory.block_turns: what a Holographic Block keeps of each turn it covers, one row per
  turn: the whole turn for live zones and margins (verbatim), the sentences the dead-zone
  summary kept from it otherwise, with the turn's role, time, external reference and
  universal embedding. Recall finds consolidated turns here after retention has deleted
  them from day_table, and returns a turn (one turn of a caller's budget) instead of a
  whole block. No native embedding is kept: that is most of what consolidation saves.
- Consolidation: the Night Cycle's work table night_block_turns gains kept (what stage 4
  keeps of the turn for memory.block_turns). The default summariser becomes
  memory.summarise_facts (per-turn sentences, facts first, within night.summary_ratio of
  the zone's text), replacing night.summary_sentences; stretches between arcs become 'gap'
  blocks of at most night.gap_max_turns turns.
- Retention counts cycles, not calendar days: users.cycles counts the cycle dates the Night
  Cycle has run for the user (a second run for a date adds nothing), and consolidations and
  blocks record the user's cycle (cycle_no) they were made in. holographic_blocks'
  hippocampus_until (a date) goes: a block leaves for the Cortex once the user's cycles
  since its own reach the tier's block_cycles. Existing rows get their cycle numbers from
  their cycle dates.
- Settings for recall's fusion (recall.rrf_k, recall.weight_*, recall.leg_candidates,
  recall.text_candidate_docs, recall.bm25_k1, recall.bm25_b, recall.neighbour_weight,
  recall.weight_cortex for the chain across tiers).

Revision ID: 0016
Revises: 0015
"""
from alembic import op

from psimem.migration_sql import hnsw_index, user_policies

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

DAY = 86400
SETTINGS = {  # key: (value, description, type, min, max)
    "recall.rrf_k": ("10", "reciprocal rank fusion: an item scores, from each leg, is weight / (rrf_k + rank)", "integer", 1, 1000),
    "recall.weight_text": ("1.0", "weight of the full-text leg (BM25 over turns kept in day_table and in blocks)", "number", 0, 100),
    "recall.weight_vector": ("1.0", "weight of the vector leg (cosine over the same turns)", "number", 0, 100),
    "recall.weight_recent": ("0.0", "weight of the recent leg (recall_recent: the session and the user's last recall.window)", "number", 0, 100),
    "recall.weight_cortex": ("0.3", "weight of the Cortex leg in the retrieval chain (LanceDB hybrid search over blocks; 0.3 chosen on LoCoMo's development split)", "number", 0, 100),
    "night.summary_ratio": ("0.5", "share of a dead zone's characters its summary keeps (memory.summarise_facts)", "number", 0.01, 1),
    "night.gap_max_turns": ("12", "longest stretch of turns between arcs that becomes one gap block", "integer", 1, 1000),
    "recall.leg_candidates": ("50", "candidates each leg ranks before fusion", "integer", 1, 10000),
    "recall.text_candidate_docs": ("1000", "the text leg takes candidates from the rarest query words while together they occur in at most this many turns (the rarest word always; bench/recall_latency.py)", "integer", 1, 10**9),
    "recall.bm25_k1": ("1.2", "BM25 term-frequency saturation", "number", 0, 10),
    "recall.bm25_b": ("0.75", "BM25 length normalisation", "number", 0, 1),
    "recall.neighbour_weight": ("0.0", "a turn next to a recalled turn competes with this share of its score (structural expansion)", "number", 0, 1),
}


def upgrade() -> None:
    conn = op.get_bind()
    s = dict(conn.exec_driver_sql("SELECT key, value #>> '{}' FROM ops.settings WHERE key LIKE 'embedding.%%'").fetchall())
    udim, ukind = int(s["embedding.universal_dim"]), s["embedding.universal_index"]

    op.execute("""
    ALTER TABLE memory.day_table ADD COLUMN content_tsv tsvector
        GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED;
    COMMENT ON COLUMN memory.day_table.content_tsv IS 'the content as a tsvector (configuration english), for the text leg of memory.recall';
    CREATE INDEX idx_day_table_content_tsv ON memory.day_table USING gin (content_tsv);

    CREATE TABLE memory.text_stats (
        user_id uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        lexeme  text NOT NULL,
        turns   bigint NOT NULL,
        PRIMARY KEY (user_id, lexeme),
        CONSTRAINT text_stats_turns_positive CHECK (turns > 0)
    );
    COMMENT ON TABLE memory.text_stats IS
      'Per user: in how many of their turns (ever recorded) each lexeme occurs; the document frequencies of BM25 in memory.recall';
    CREATE TABLE memory.text_totals (
        user_id uuid PRIMARY KEY REFERENCES memory.users ON DELETE CASCADE,
        turns   bigint NOT NULL,
        lexemes bigint NOT NULL,
        CONSTRAINT text_totals_counts_nonnegative CHECK (turns >= 0 AND lexemes >= 0)
    );
    COMMENT ON TABLE memory.text_totals IS
      'Per user: how many turns were ever recorded and how many lexemes they held in all (BM25''s collection size and mean length)';

    -- The turns already recorded count too.
    INSERT INTO memory.text_stats (user_id, lexeme, turns)
    SELECT d.user_id, l.lexeme, count(*) FROM memory.day_table d CROSS JOIN LATERAL unnest(d.content_tsv) l
    GROUP BY d.user_id, l.lexeme;
    INSERT INTO memory.text_totals (user_id, turns, lexemes)
    SELECT d.user_id, count(*), sum(length(d.content_tsv)) FROM memory.day_table d GROUP BY d.user_id;
    """)
    op.execute(f"""
    CREATE TABLE memory.block_turns (
        block_id    uuid NOT NULL REFERENCES memory.holographic_blocks ON DELETE CASCADE,
        turn_number int NOT NULL,
        user_id     uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        session_id  uuid NOT NULL REFERENCES memory.sessions ON DELETE CASCADE,
        zone_no     smallint NOT NULL,
        role        text NOT NULL,
        kept        text NOT NULL,
        verbatim    boolean NOT NULL,
        created_at  timestamptz NOT NULL,
        external_ref text,
        universal_embedding vector({udim}),
        kept_tsv    tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, kept)) STORED,
        PRIMARY KEY (user_id, block_id, turn_number),
        CONSTRAINT block_turns_kept_not_blank CHECK (kept ~ '\\S'),
        CONSTRAINT block_turns_role_known CHECK (role IN ('user', 'assistant', 'system')),
        CONSTRAINT block_turns_turn_number_positive CHECK (turn_number > 0)
    );
    COMMENT ON TABLE memory.block_turns IS
      'What a Holographic Block keeps of each turn it covers: the turn verbatim (live zone or margin) or the sentences its dead-zone summary kept, with the turn''s role, time, external reference and universal embedding. Recall reaches consolidated turns here once retention has deleted them from day_table.';
    CREATE INDEX idx_block_turns_user_time ON memory.block_turns (user_id, created_at);
    CREATE INDEX idx_block_turns_session_turn ON memory.block_turns (session_id, turn_number);
    CREATE INDEX idx_block_turns_kept_tsv ON memory.block_turns USING gin (kept_tsv);
    {hnsw_index("idx_block_turns_universal", "memory.block_turns", "universal_embedding", udim, ukind)};
    GRANT SELECT ON memory.block_turns, memory.text_stats, memory.text_totals TO psimem_reader, psimem_writer;
    GRANT SELECT, INSERT, UPDATE, DELETE ON memory.block_turns, memory.text_stats, memory.text_totals TO psimem_admin;
    """)
    op.execute("""
    ALTER TABLE memory.night_block_turns ADD COLUMN kept text;
    COMMENT ON COLUMN memory.night_block_turns.kept IS
      'stage 4: what the block keeps of the turn (the turn for a live zone or a margin, its kept sentences for a dead zone; null: nothing)';

    ALTER TABLE memory.users ADD COLUMN cycles int NOT NULL DEFAULT 0, ADD COLUMN last_cycle_date date,
        ADD CONSTRAINT users_cycles_nonnegative CHECK (cycles >= 0);
    COMMENT ON COLUMN memory.users.cycles IS 'Night Cycles run for the user: the cycle dates counted (retention counts in these)';
    COMMENT ON COLUMN memory.users.last_cycle_date IS 'the latest cycle date counted in cycles';
    ALTER TABLE memory.consolidations ADD COLUMN cycle_no int NOT NULL DEFAULT 0;
    COMMENT ON COLUMN memory.consolidations.cycle_no IS 'the user''s cycle (users.cycles) that consolidated these turns';
    ALTER TABLE memory.holographic_blocks ADD COLUMN cycle_no int NOT NULL DEFAULT 0;
    COMMENT ON COLUMN memory.holographic_blocks.cycle_no IS 'the user''s cycle (users.cycles) that stored the block';
    WITH n AS (SELECT c.user_id, c.cycle_date, dense_rank() OVER (PARTITION BY c.user_id ORDER BY c.cycle_date) AS no
               FROM (SELECT DISTINCT user_id, cycle_date FROM memory.consolidations) c)
    UPDATE memory.consolidations c SET cycle_no = n.no FROM n WHERE n.user_id = c.user_id AND n.cycle_date = c.cycle_date;
    UPDATE memory.holographic_blocks b SET cycle_no = coalesce((
        SELECT max(c.cycle_no) FROM memory.consolidations c WHERE c.user_id = b.user_id AND c.cycle_date <= b.cycle_date), 0);
    UPDATE memory.users u SET cycles = x.n, last_cycle_date = x.last
    FROM (SELECT user_id, max(cycle_no) AS n, max(cycle_date) AS last FROM memory.consolidations GROUP BY user_id) x
    WHERE x.user_id = u.user_id;
    DROP VIEW IF EXISTS bi.blocks;  -- db/functions/bi_night_cycle.sql defines it again without the column
    ALTER TABLE memory.holographic_blocks DROP COLUMN hippocampus_until;

    -- The new summariser is code (db/functions), applied after the revisions: the check that
    -- a function setting names an existing function would refuse it until then.
    ALTER TABLE ops.settings DISABLE TRIGGER USER;
    UPDATE ops.settings SET value = '"memory.summarise_facts"',
        description = 'function (session_id, first_turn, last_turn) -> table (turn_number, sentence) summarising a dead zone'
    WHERE key = 'night.summariser' AND value = '"memory.summarise_extractive"';
    ALTER TABLE ops.settings ENABLE TRIGGER USER;
    DELETE FROM ops.settings WHERE key = 'night.summary_sentences';
    """)
    for table in ("memory.block_turns", "memory.text_stats", "memory.text_totals"):
        op.execute(user_policies(table))
    for key, (value, description, kind, lo, hi) in SETTINGS.items():
        description = description.replace("'", "''")
        op.execute(f"INSERT INTO ops.settings (key, value, description, value_type, min_value, max_value) "
                   f"VALUES ('{key}', '{value}', '{description}', '{kind}', {lo}, {hi}) "
                   "ON CONFLICT (key) DO NOTHING")


def downgrade() -> None:
    op.execute(f"""
    DELETE FROM ops.settings WHERE key IN ({", ".join(f"'{k}'" for k in SETTINGS)});
    INSERT INTO ops.settings (key, value, description, value_type, min_value, max_value) VALUES
      ('night.summary_sentences', '1', 'sentences an extractive dead-zone summary keeps', 'integer', 1, 100) ON CONFLICT DO NOTHING;
    ALTER TABLE ops.settings DISABLE TRIGGER USER;  -- the old summariser returns with the old code files
    UPDATE ops.settings SET value = '"memory.summarise_extractive"' WHERE key = 'night.summariser';
    ALTER TABLE ops.settings ENABLE TRIGGER USER;
    DROP VIEW IF EXISTS bi.blocks;
    ALTER TABLE memory.holographic_blocks ADD COLUMN hippocampus_until date NOT NULL DEFAULT current_date,
        DROP COLUMN cycle_no;
    ALTER TABLE memory.consolidations DROP COLUMN cycle_no;
    ALTER TABLE memory.users DROP COLUMN cycles, DROP COLUMN last_cycle_date;
    ALTER TABLE memory.night_block_turns DROP COLUMN kept;
    DELETE FROM ops.applied_sql;  -- re-apply every code file on the next upgrade
    DROP TRIGGER IF EXISTS day_table_text_stats ON memory.day_table;
    DROP TABLE memory.block_turns, memory.text_stats, memory.text_totals;
    ALTER TABLE memory.day_table DROP COLUMN content_tsv;
    """)
