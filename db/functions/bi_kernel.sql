-- BI views over the Core Memory Kernel: sizes and maintenance runs, never a card's content
-- or a user's id.

CREATE OR REPLACE VIEW bi.kernel_runs AS
SELECT r.run_id, r.as_of, r.started_at, r.finished_at, r.status, r.users_done, r.users_failed, r.users_left,
       extract(epoch FROM r.finished_at - r.started_at) AS seconds,
       coalesce(sum(l.rows) FILTER (WHERE l.step = 'prune stale'), 0) AS cards_stale_deleted,
       coalesce(sum(l.rows) FILTER (WHERE l.step = 'trim to max_cards'), 0) AS cards_trimmed,
       coalesce(sum(l.rows) FILTER (WHERE l.step = 'compress'), 0) AS notes_rolled_up,
       coalesce(sum(l.rows) FILTER (WHERE l.step = 'compact journal'), 0) AS journal_entries_compacted,
       coalesce(sum(l.rows) FILTER (WHERE l.step = 'vector indexes'), 0) AS vector_indexes_built,
       coalesce(sum(l.rows) FILTER (WHERE l.step = 'trim tombstones'), 0) AS tombstones_trimmed,
       max(l.error) AS an_error
FROM ops.kernel_runs r
LEFT JOIN ops.kernel_run_log l USING (run_id)
GROUP BY r.run_id;
COMMENT ON VIEW bi.kernel_runs IS 'Kernel maintenance runs (kernel.run_maintenance): users maintained, failed and still due, cards pruned, notes rolled up, journal entries compacted, indexes built.';
GRANT SELECT ON bi.kernel_runs TO psimem_bi, psimem_admin;

CREATE OR REPLACE VIEW bi.kernel_health AS
SELECT (SELECT count(DISTINCT c.user_id) FROM kernel.card c) AS users_with_cards,
       (SELECT count(*) FROM kernel.card c WHERE c.kind = 'note') AS notes,
       (SELECT count(*) FROM kernel.card c WHERE c.kind = 'note' AND c.rolled_into IS NOT NULL) AS notes_rolled_up,
       (SELECT count(*) FROM kernel.card c WHERE c.kind = 'summary') AS summary_cards,
       (SELECT count(*) FROM kernel.embedding) AS embeddings,
       (SELECT count(*) FROM kernel.contradiction k WHERE k.resolved_at IS NULL) AS open_contradictions,
       (SELECT count(*) FROM kernel.journal) AS journal_entries,
       (SELECT count(*) FROM kernel.tombstone) AS tombstones;
COMMENT ON VIEW bi.kernel_health IS 'Kernel totals across all users: cards by kind, embeddings, open contradictions, journal entries, tombstones.';
GRANT SELECT ON bi.kernel_health TO psimem_bi, psimem_admin;
