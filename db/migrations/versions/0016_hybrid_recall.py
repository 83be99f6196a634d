"""Hybrid recall over the whole history: full text next to vectors, and what blocks keep of each turn.

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
- Settings for recall's fusion (recall.rrf_k, recall.weight_*, recall.leg_candidates,
  recall.text_candidate_docs, recall.bm25_k1, recall.bm25_b, recall.neighbour_weight,
  recall.weight_cortex for the chain across tiers).

Revision ID: 0016
Revises: 0013
"""
from alembic import op

from psimem.migration_sql import hnsw_index, user_policies

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None

DAY = 86400
SETTINGS = {  # key: (value, description, type, min, max)
    "recall.rrf_k": ("10", "reciprocal rank fusion: an item scores, from each leg, is weight / (rrf_k + rank)", "integer", 1, 1000),
    "recall.weight_text": ("1.0", "weight of the full-text leg (BM25 over turns kept in day_table and in blocks)", "number", 0, 100),
    "recall.weight_vector": ("1.0", "weight of the vector leg (cosine over the same turns)", "number", 0, 100),
    "recall.weight_recent": ("0.0", "weight of the recent leg (recall_recent: the session and the user's last recall.window)", "number", 0, 100),
    "recall.weight_cortex": ("1.0", "weight of the Cortex leg in the retrieval chain (LanceDB hybrid search over blocks)", "number", 0, 100),
    "recall.leg_candidates": ("50", "candidates each leg ranks before fusion", "integer", 1, 10000),
    "recall.text_candidate_docs": ("5000", "the text leg takes candidates from the rarest query words until they occur in this many turns", "integer", 1, 10**9),
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
    DROP TRIGGER IF EXISTS day_table_text_stats ON memory.day_table;
    DROP TABLE memory.block_turns, memory.text_stats, memory.text_totals;
    ALTER TABLE memory.day_table DROP COLUMN content_tsv;
    """)
