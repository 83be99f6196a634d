"""The Core Memory Kernel (spec 001) as schema kernel.

Spec 001's tables keep its names and fields (MemoryCard -> kernel.card, MemoryEdge ->
kernel.edge, Journal -> kernel.journal, MemoryConfig -> kernel.config, MemoryUsage ->
kernel.usage, MemoryAttachment -> kernel.attachment, MemoryEmbedding -> kernel.embedding),
with its enums as named CHECK constraints and tags as text[]. psimem adds:

- user_id on every row, under the same row-level security as the rest of psimem
  (psimem.migration_sql.user_policies); composite foreign keys (id, user_id) so that an
  edge, usage row, attachment, embedding or contradiction never joins two people's cards.
- card.content_key: a hash of the normalised summary, unique per user. The same fact
  written twice, or by two writers at once, is one card because INSERT ... ON CONFLICT
  on this constraint decides, not a read before the write.
- card.kind (note | summary), subject and rolled_into: compression rolls older notes on
  one subject into a summary card; card.ts_config and tsv (kept by a trigger) for full
  text search with a GIN index.
- kernel.contradiction: two cards that conflict, both kept until an explicit resolution.
- kernel.stage_transition: every lifecycle stage change, with its trigger and evidence.
- kernel.tombstone: what was deleted and when, so an exported patch can replay deletes.
- changed_at on every table: what kernel.export_patch selects by.
- kernel.text_stats: derived word statistics (the words common among a user's cards), which
  keep the full-text leg from scoring every tenth card for a common query word.
- ops.kernel_runs / ops.kernel_run_log: the maintenance job's run log.

Embeddings of any size are stored as untyped `vector` with their dim; an HNSW index per
dimension in use is a partial expression index built by kernel.ensure_vector_indexes()
once some user holds kernel.vector_exact_below embeddings of that size (below that an
exact scan of the user's rows is faster: bench/kernel.py measures it).

Revision ID: 0017
Revises: 0016
"""
from alembic import op

from psimem.migration_sql import user_policies

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

STAGES = ("'Ideation', 'Data Acquisition', 'Exploration', 'Synthesis', 'Productionization', "
          "'Retrospective Innovation'")
KERNEL_TABLES = ("card", "edge", "journal", "config", "usage", "attachment", "embedding", "contradiction",
                 "stage_transition", "tombstone")
DAY = 86400
# key: (value as JSON, description, value_type, min, max)
SETTINGS = {
    "kernel.recall_top_k": ("5", "cards kernel.recall returns when neither p_k nor the user's recall_top_k says", "integer", 1, 100),
    "kernel.recall_weight_text": ("1.0", "default RRF weight of the full-text leg (a user's recall_weights overrides)", "number", 0, 100),
    "kernel.recall_weight_vector": ("1.0", "default RRF weight of the vector leg (a user's recall_weights overrides)", "number", 0, 100),
    "kernel.recall_weight_recency": ("0.3", "default RRF weight of the usage-aware recency leg (a user's recall_weights overrides)", "number", 0, 100),
    "kernel.prune_stale_after_days": ("365", "default prune_policy.stale_after_days: cards untouched this long are pruned", "integer", 1, 36500),
    "kernel.prune_max_cards": ("100000", "default prune_policy.max_cards: a user's cards beyond this are trimmed by usage-aware score", "integer", 1, 100_000_000),
    "kernel.recall_candidates": ("20", "cards each recall leg fetches before fusion", "integer", 1, 1000),
    "kernel.rrf_k": ("60", "reciprocal rank fusion constant: a leg adds weight / (rrf_k + rank)", "number", 0, 100000),
    "kernel.mmr_lambda": ("0.5", "MMR trade-off: 1 ranks by relevance only, 0 by diversity only", "number", 0, 1),
    "kernel.recency_half_life": ('"30 days"', "usage-aware recency halves every this long since a card was last updated or recalled", "interval", 3600, 3650 * DAY),
    "kernel.contradiction_similarity": ("0.97", "cosine similarity above which two cards with different content on one model contradict", "number", 0, 1),
    "kernel.compress_after": ("5", "a subject with this many live notes rolls all but the newest into its summary card", "integer", 2, 1000),
    "kernel.summariser": ('"kernel.summarise_extractive"', "function(text[], int) returning text that summarises notes and journal entries in at most that many words", "function", None, None),
    "kernel.summary_max_words": ("70", "words a summary card's or compacted journal's extract keeps", "integer", 1, 70),
    "kernel.card_max_chars": ("2000", "longest card summary, journal conclusion, recall query or reference accepted", "integer", 1, 100000),
    "kernel.vector_exact_below": ("5000", "a user's embeddings of one size below this are searched exactly; from this many on, by the HNSW index of that size", "integer", 0, 1_000_000_000),
    "kernel.ef_search": ("40", "hnsw.ef_search for kernel recall's indexed vector leg", "integer", 1, 1000),
    "kernel.meta_every": ("4", "turns between meta-layer journal entries (spec 001 section 2)", "integer", 1, 1000),
    "kernel.retrospective_every": ("5", "turns between Retrospective Innovation stages (spec 001 section 7)", "integer", 1, 1000),
    "kernel.journal_keep": ('"30 days"', "journal entries older than this are compacted into one summary per period", "interval", DAY, 3650 * DAY),
    "kernel.tombstone_keep": ('"90 days"', "deletions older than this are forgotten (a patch since an older point cannot replay them)", "interval", DAY, 3650 * DAY),
    "kernel.text_common_cards": ("500", "a word more of a user's cards than this contain does not make a card a recall candidate by itself (it bounds the cards one query word makes the full-text leg score)", "integer", 1, 1_000_000_000),
    "kernel.maintenance_batch_users": ("500", "users one kernel.run_maintenance() call maintains (each call commits)", "integer", 1, 1_000_000),
    "cron.kernel_maintenance": ('"40 * * * *"', "pg_cron schedule of kernel.run_maintenance() (each call maintains a batch of users)", "cron", None, None),
}


def _setting_sql(key: str, spec: tuple) -> str:
    value, description, kind, lo, hi = spec
    lo_sql, hi_sql = ("NULL", "NULL") if lo is None else (repr(lo), repr(hi))
    description = description.replace("'", "''")
    return (f"INSERT INTO ops.settings (key, value, description, value_type, min_value, max_value) VALUES "
            f"('{key}', '{value}', '{description}', '{kind}', {lo_sql}, {hi_sql}) ON CONFLICT (key) DO NOTHING;")


def upgrade() -> None:
    op.execute(r"""
    CREATE SCHEMA kernel;
    COMMENT ON SCHEMA kernel IS 'psimem Core Memory Kernel (spec 001): short user-facing memory cards, journal, hybrid recall';
    GRANT USAGE ON SCHEMA kernel TO psimem_writer, psimem_reader, psimem_admin;

    CREATE TABLE kernel.card (
        id          uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
        user_id     uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        summary     text NOT NULL,
        tags        text[] NOT NULL DEFAULT '{}',
        source      text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        kind        text NOT NULL DEFAULT 'note',
        subject     text,
        rolled_into uuid,
        content_key text NOT NULL,
        ts_config   regconfig NOT NULL,
        tsv         tsvector NOT NULL,
        changed_at  timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT card_source_known CHECK (source IN ('msc', 'bio', 'export', 'journal')),
        CONSTRAINT card_kind_known CHECK (kind IN ('note', 'summary')),
        CONSTRAINT card_summary_not_blank CHECK (summary ~ '\S'),
        CONSTRAINT card_tags_not_null CHECK (array_position(tags, NULL) IS NULL),
        CONSTRAINT card_updated_not_before_created CHECK (updated_at >= created_at),
        CONSTRAINT card_not_rolled_into_itself CHECK (rolled_into <> id),
        CONSTRAINT card_user_content_key_unique UNIQUE (user_id, content_key),
        CONSTRAINT card_id_user_unique UNIQUE (id, user_id),
        CONSTRAINT card_rolled_into_same_user FOREIGN KEY (rolled_into, user_id)
            REFERENCES kernel.card (id, user_id) ON DELETE SET NULL (rolled_into)
    );
    CREATE INDEX idx_kernel_card_tsv ON kernel.card USING gin (tsv);
    CREATE INDEX idx_kernel_card_tags ON kernel.card USING gin (tags);
    CREATE INDEX idx_kernel_card_subject ON kernel.card (user_id, subject) WHERE subject IS NOT NULL;
    CREATE INDEX idx_kernel_card_rolled_into ON kernel.card (rolled_into) WHERE rolled_into IS NOT NULL;
    CREATE INDEX idx_kernel_card_changed ON kernel.card (user_id, changed_at);
    COMMENT ON TABLE kernel.card IS 'MemoryCard (spec 001 section 3): one short fact, preference or decision about a user. Written by kernel.upsert_card; versioning is off, so a card is overwritten in place.';
    COMMENT ON COLUMN kernel.card.content_key IS 'sha-256 of the normalised summary (NFKC where the database is UTF-8, lower case, whitespace collapsed, leading and trailing punctuation dropped); unique per user, so the same fact is one card';
    COMMENT ON COLUMN kernel.card.kind IS 'note: written by a caller; summary: made by compression from the notes rolled into it';
    COMMENT ON COLUMN kernel.card.subject IS 'what the card is about (p_subject, else its first tag that is not a key: tag); compression groups notes by it';
    COMMENT ON COLUMN kernel.card.rolled_into IS 'the summary card this note was rolled into by compression; recall returns the summary instead';
    COMMENT ON COLUMN kernel.card.tsv IS 'summary (weight A) and tags (weight B) under ts_config; kept by a trigger';
    COMMENT ON COLUMN kernel.card.changed_at IS 'when this row last changed (transaction time); kernel.export_patch selects by it';

    CREATE TABLE kernel.edge (
        id         uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
        user_id    uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        src_id     uuid NOT NULL,
        dst_id     uuid NOT NULL,
        type       text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        changed_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT edge_type_known CHECK (type IN ('reflects_on', 'relates_to')),
        CONSTRAINT edge_not_a_loop CHECK (src_id <> dst_id),
        CONSTRAINT edge_unique UNIQUE (src_id, dst_id, type),
        CONSTRAINT edge_src_same_user FOREIGN KEY (src_id, user_id) REFERENCES kernel.card (id, user_id) ON DELETE CASCADE,
        CONSTRAINT edge_dst_same_user FOREIGN KEY (dst_id, user_id) REFERENCES kernel.card (id, user_id) ON DELETE CASCADE
    );
    CREATE INDEX idx_kernel_edge_dst ON kernel.edge (dst_id);
    CREATE INDEX idx_kernel_edge_changed ON kernel.edge (user_id, changed_at);
    COMMENT ON TABLE kernel.edge IS 'MemoryEdge: reflects_on (a summary to the notes it stands for) or relates_to (kernel.link, and the two cards of a contradiction)';

    CREATE TABLE kernel.journal (
        id            uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
        user_id       uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        stage         text NOT NULL,
        summary       text NOT NULL,
        conclusion    text NOT NULL DEFAULT '',
        created_at    timestamptz NOT NULL DEFAULT now(),
        kind          text NOT NULL DEFAULT 'turn',
        turn          int NOT NULL,
        reflected_ids uuid[] NOT NULL DEFAULT '{}',
        detail        jsonb NOT NULL DEFAULT '{}',
        period_start  timestamptz,
        changed_at    timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT journal_stage_known CHECK (stage IN (""" + STAGES + r""")),
        CONSTRAINT journal_kind_known CHECK (kind IN ('turn', 'meta', 'compaction')),
        CONSTRAINT journal_summary_not_blank CHECK (summary ~ '\S'),
        CONSTRAINT journal_summary_at_most_70_words
            CHECK (length(regexp_replace(summary, '\S+', 'x', 'g')) - length(regexp_replace(summary, '\S+', '', 'g')) <= 70),
        CONSTRAINT journal_turn_positive CHECK (turn >= 1),
        CONSTRAINT journal_period_iff_compaction CHECK ((kind = 'compaction') = (period_start IS NOT NULL)),
        CONSTRAINT journal_id_user_unique UNIQUE (id, user_id)
    );
    CREATE UNIQUE INDEX idx_kernel_journal_turn ON kernel.journal (user_id, turn) WHERE kind = 'turn';
    CREATE UNIQUE INDEX idx_kernel_journal_meta_turn ON kernel.journal (user_id, turn) WHERE kind = 'meta';
    CREATE UNIQUE INDEX idx_kernel_journal_period ON kernel.journal (user_id, period_start) WHERE kind = 'compaction';
    CREATE INDEX idx_kernel_journal_created ON kernel.journal (user_id, created_at);
    CREATE INDEX idx_kernel_journal_changed ON kernel.journal (user_id, changed_at);
    COMMENT ON TABLE kernel.journal IS 'Journal (spec 001 section 3): turn entries (at most 70 words of summary, with stage, conclusion and the cards reflected on), meta-layer entries every kernel.meta_every turns, and compaction entries that replace a period''s old entries';

    CREATE TABLE kernel.config (
        user_id    uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        key        text NOT NULL,
        value      jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        changed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, key),
        CONSTRAINT config_key_known CHECK (key IN ('emit_auto_on', 'versioning', 'prune_policy', 'recall_top_k', 'recall_weights'))
    );
    COMMENT ON TABLE kernel.config IS 'MemoryConfig: a user''s overrides of the kernel defaults (ops.settings kernel.*); values are JSON, checked per key by a trigger. Set with kernel.set_config.';

    CREATE TABLE kernel.usage (
        mem_id       uuid NOT NULL PRIMARY KEY,
        user_id      uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        used_count   int NOT NULL DEFAULT 0,
        last_used_at timestamptz,
        changed_at   timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT usage_count_nonnegative CHECK (used_count >= 0),
        CONSTRAINT usage_card_same_user FOREIGN KEY (mem_id, user_id) REFERENCES kernel.card (id, user_id) ON DELETE CASCADE
    );
    CREATE INDEX idx_kernel_usage_changed ON kernel.usage (user_id, changed_at);
    COMMENT ON TABLE kernel.usage IS 'MemoryUsage: how often and when kernel.recall last returned a card (bumped in the recall''s transaction, except on a hot standby)';

    CREATE TABLE kernel.attachment (
        id         uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
        user_id    uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        mem_id     uuid NOT NULL,
        kind       text NOT NULL,
        ref        text NOT NULL,
        title      text,
        created_at timestamptz NOT NULL DEFAULT now(),
        changed_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT attachment_kind_known CHECK (kind IN ('url', 'file', 'ref')),
        CONSTRAINT attachment_ref_not_blank CHECK (ref ~ '\S'),
        CONSTRAINT attachment_card_same_user FOREIGN KEY (mem_id, user_id) REFERENCES kernel.card (id, user_id) ON DELETE CASCADE
    );
    CREATE UNIQUE INDEX idx_kernel_attachment_unique ON kernel.attachment (mem_id, kind, md5(ref));
    CREATE INDEX idx_kernel_attachment_changed ON kernel.attachment (user_id, changed_at);
    COMMENT ON TABLE kernel.attachment IS 'MemoryAttachment: a URL, file path or other reference a card points to';

    CREATE TABLE kernel.embedding (
        id         uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
        user_id    uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        mem_id     uuid NOT NULL,
        provider   text NOT NULL,
        model      text NOT NULL,
        dim        int NOT NULL,
        embedding  vector NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        changed_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT embedding_dim_range CHECK (dim BETWEEN 1 AND 16000),
        CONSTRAINT embedding_dim_matches_vector CHECK (vector_dims(embedding) = dim),
        CONSTRAINT embedding_provider_named CHECK (provider ~ '\S' AND length(provider) <= 200),
        CONSTRAINT embedding_model_named CHECK (model ~ '\S' AND length(model) <= 200),
        CONSTRAINT embedding_one_per_model UNIQUE (mem_id, provider, model),
        CONSTRAINT embedding_card_same_user FOREIGN KEY (mem_id, user_id) REFERENCES kernel.card (id, user_id) ON DELETE CASCADE
    );
    -- Up to 2,000 dimensions a vector (8 kB) stays in the heap row: exact scans then read no TOAST.
    ALTER TABLE kernel.embedding ALTER COLUMN embedding SET STORAGE MAIN;
    CREATE INDEX idx_kernel_embedding_user_dim ON kernel.embedding (user_id, dim);
    CREATE INDEX idx_kernel_embedding_user_model ON kernel.embedding (user_id, model, provider);
    CREATE INDEX idx_kernel_embedding_changed ON kernel.embedding (user_id, changed_at);
    COMMENT ON TABLE kernel.embedding IS 'MemoryEmbedding: one row per card and provider/model, any size (dim); an HNSW index per size in use (kernel.ensure_vector_indexes)';

    CREATE TABLE kernel.contradiction (
        id          uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
        user_id     uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        card_a      uuid NOT NULL,
        card_b      uuid NOT NULL,
        reason      text NOT NULL,
        detected_at timestamptz NOT NULL DEFAULT now(),
        resolved_at timestamptz,
        kept_id     uuid,
        changed_at  timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT contradiction_pair_ordered CHECK (card_a < card_b),
        CONSTRAINT contradiction_kept_is_one_of_pair CHECK (kept_id IS NULL OR kept_id IN (card_a, card_b)),
        CONSTRAINT contradiction_kept_only_when_resolved CHECK (kept_id IS NULL OR resolved_at IS NOT NULL),
        CONSTRAINT contradiction_pair_unique UNIQUE (card_a, card_b),
        CONSTRAINT contradiction_a_same_user FOREIGN KEY (card_a, user_id) REFERENCES kernel.card (id, user_id) ON DELETE CASCADE,
        CONSTRAINT contradiction_b_same_user FOREIGN KEY (card_b, user_id) REFERENCES kernel.card (id, user_id) ON DELETE CASCADE
    );
    CREATE INDEX idx_kernel_contradiction_b ON kernel.contradiction (card_b);
    CREATE INDEX idx_kernel_contradiction_open ON kernel.contradiction (user_id) WHERE resolved_at IS NULL;
    COMMENT ON TABLE kernel.contradiction IS 'Two cards of one user that conflict (same key: tag, or near-identical embedding with different content). Both cards are kept and linked; kernel.contradictions lists the pair until kernel.resolve_contradiction resolves it.';

    CREATE TABLE kernel.stage_transition (
        id         uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
        user_id    uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        from_stage text,
        to_stage   text NOT NULL,
        turn       int NOT NULL,
        journal_id uuid,
        trigger    text NOT NULL,
        evidence   jsonb NOT NULL DEFAULT '{}',
        at         timestamptz NOT NULL,
        changed_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT stage_transition_stages_known CHECK (
            (from_stage IS NULL OR from_stage IN (""" + STAGES + r""")) AND to_stage IN (""" + STAGES + r""")),
        CONSTRAINT stage_transition_moves CHECK (from_stage IS DISTINCT FROM to_stage),
        CONSTRAINT stage_transition_journal_same_user FOREIGN KEY (journal_id, user_id)
            REFERENCES kernel.journal (id, user_id) ON DELETE SET NULL (journal_id)
    );
    CREATE INDEX idx_kernel_stage_transition_user ON kernel.stage_transition (user_id, turn);
    CREATE INDEX idx_kernel_stage_transition_journal ON kernel.stage_transition (journal_id);
    COMMENT ON TABLE kernel.stage_transition IS 'Every lifecycle stage change of a user (spec 001 section 7), from the start at Ideation on: the turn, the journal entry that made it, the trigger and its evidence';

    CREATE TABLE kernel.tombstone (
        id         uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
        user_id    uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        table_name text NOT NULL,
        row_key    text NOT NULL,
        deleted_at timestamptz NOT NULL DEFAULT now(),
        changed_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT tombstone_table_known CHECK (table_name IN ('card', 'edge', 'journal', 'config', 'usage',
            'attachment', 'embedding', 'contradiction', 'stage_transition'))
    );
    CREATE INDEX idx_kernel_tombstone_changed ON kernel.tombstone (user_id, changed_at);
    CREATE INDEX idx_kernel_tombstone_deleted ON kernel.tombstone (deleted_at);
    COMMENT ON TABLE kernel.tombstone IS 'One row per deleted kernel row (its table and key: id, mem_id for usage, key for config), written by a trigger, so kernel.export_patch can replay deletes; kept kernel.tombstone_keep';

    CREATE TABLE kernel.text_stats (
        user_id      uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        lexeme       text NOT NULL,
        ndoc         int NOT NULL,
        cards        int NOT NULL,
        refreshed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, lexeme),
        CONSTRAINT text_stats_ndoc_within_cards CHECK (ndoc BETWEEN 1 AND cards)
    );
    COMMENT ON TABLE kernel.text_stats IS 'Derived, not kernel state: the words (lexemes) more than kernel.text_common_cards of a user''s cards contain, counted by kernel.refresh_text_stats. In kernel.recall such a word alone does not make a card a candidate (a word in a tenth of 100,000 cards would make 10,000, each to be scored); it still counts in the ranking.';

    CREATE TABLE ops.kernel_runs (
        run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        as_of       timestamptz NOT NULL,
        started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at timestamptz,
        status      text NOT NULL DEFAULT 'running',
        users_done  int NOT NULL DEFAULT 0,
        users_failed int NOT NULL DEFAULT 0,
        users_left  int,
        CONSTRAINT kernel_runs_status_known CHECK (status IN ('running', 'ok', 'partial', 'failed'))
    );
    COMMENT ON TABLE ops.kernel_runs IS 'One row per kernel.run_maintenance() call: the clock it ran for, users maintained, failed and still due';
    CREATE TABLE ops.kernel_run_log (
        run_id         bigint NOT NULL REFERENCES ops.kernel_runs ON DELETE CASCADE,
        user_id        uuid REFERENCES memory.users ON DELETE CASCADE,
        maintained_for date NOT NULL,
        step           text NOT NULL,
        rows           bigint NOT NULL DEFAULT 0,
        duration_ms    double precision NOT NULL,
        ok             boolean NOT NULL,
        error          text,
        logged_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
        CONSTRAINT kernel_run_log_step_known CHECK (step IN ('vector indexes', 'prune stale', 'trim to max_cards',
            'compress', 'compact journal', 'text stats', 'trim tombstones', 'done', 'failed'))
    );
    CREATE INDEX idx_kernel_run_log_run ON ops.kernel_run_log (run_id);
    CREATE INDEX idx_kernel_run_log_user_day ON ops.kernel_run_log (user_id, maintained_for) WHERE step IN ('done', 'failed');
    COMMENT ON TABLE ops.kernel_run_log IS 'One row per maintenance step and user (user_id NULL for the global steps): rows touched, duration, failure. A done row marks the user maintained for that day.';

    GRANT SELECT, INSERT, UPDATE, DELETE ON kernel.card, kernel.edge, kernel.journal, kernel.config, kernel.usage,
        kernel.attachment, kernel.embedding, kernel.contradiction, kernel.stage_transition TO psimem_writer;
    GRANT SELECT ON kernel.card, kernel.edge, kernel.journal, kernel.config, kernel.usage, kernel.attachment,
        kernel.embedding, kernel.contradiction, kernel.stage_transition, kernel.tombstone TO psimem_reader, psimem_writer;
    GRANT INSERT, UPDATE ON kernel.usage TO psimem_reader;  -- recall bumps usage
    GRANT SELECT ON kernel.text_stats TO psimem_reader;
    GRANT SELECT, INSERT, DELETE ON kernel.text_stats TO psimem_writer;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA kernel TO psimem_admin;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ops.kernel_runs, ops.kernel_run_log TO psimem_admin;

    -- Replaced by db/functions/kernel_compress.sql; here so that the kernel.summariser
    -- setting names an existing function when the settings trigger checks it.
    CREATE FUNCTION kernel.summarise_extractive(p_texts text[], p_max_words int) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT NULL::text $$;
    REVOKE ALL ON FUNCTION kernel.summarise_extractive(text[], int) FROM PUBLIC;
    """)
    for table in KERNEL_TABLES + ("text_stats",):
        op.execute(user_policies(f"kernel.{table}"))
    op.execute(user_policies("ops.kernel_run_log", acting_roles=()))
    op.execute("\n".join(_setting_sql(k, v) for k, v in SETTINGS.items()))
    # The text search configurations this server has: the setting may name any of them.
    op.execute("""
    INSERT INTO ops.settings (key, value, description, value_type, allowed)
    SELECT 'kernel.text_search_config', '"english"',
           'text search configuration of new cards and of kernel.recall''s query (cards keep the one they were written with)',
           'enum', array_agg(cfgname::text ORDER BY cfgname)
    FROM pg_ts_config WHERE cfgnamespace = 'pg_catalog'::regnamespace
    ON CONFLICT (key) DO NOTHING;
    """)


def downgrade() -> None:
    op.execute("""
    DO $$ BEGIN
      PERFORM cron.unschedule(jobname) FROM cron.job WHERE jobname = 'psimem-kernel-maintenance';
    END $$;
    DROP SCHEMA kernel CASCADE;
    DROP TABLE ops.kernel_run_log, ops.kernel_runs CASCADE;  -- and the bi view on them
    DELETE FROM ops.settings WHERE key LIKE 'kernel.%' OR key = 'cron.kernel_maintenance';
    DELETE FROM ops.applied_sql;  -- ops.install_cron_jobs() lists the kernel job: re-apply all code on upgrade
    """)
