-- BI views over the Night Cycle, the job queue and procedural memory: metrics, never content.

CREATE OR REPLACE VIEW bi.arcs_daily AS
SELECT a.cycle_date, u.tier,
       count(*) AS arcs,
       count(*) FILTER (WHERE a.resolved) AS resolved_arcs,
       count(*) FILTER (WHERE a.open_at_session_end) AS open_at_session_end,
       count(*) FILTER (WHERE a.continued_by_arc_id IS NOT NULL) AS continued,
       round(avg(a.arc_duration_turns)::numeric, 2) AS mean_duration_turns,
       round(avg(a.flux_reversal_quality)::numeric, 3) AS mean_flux_reversal_quality
FROM memory.flux_arcs a JOIN memory.users u USING (user_id)
GROUP BY 1, 2;
COMMENT ON VIEW bi.arcs_daily IS 'Flux arcs per cycle date and tier: resolved, open at session end, continued, duration, reversal quality.';

-- No block, session or user ids: BI sees every user's metadata, so nothing here names one.
DROP VIEW IF EXISTS bi.blocks;
CREATE VIEW bi.blocks AS
SELECT b.block_kind, b.cycle_date, b.user_tier, b.arc_start_time, b.arc_end_time,
       (b.flux_metrics ->> 'peak_perplexity')::float8 AS peak_perplexity,
       (b.flux_metrics ->> 'baseline_perplexity')::float8 AS baseline_perplexity,
       (b.flux_metrics ->> 'final_perplexity')::float8 AS final_perplexity,
       (b.flux_metrics ->> 'flux_reversal_quality')::float8 AS flux_reversal_quality,
       (b.flux_metrics ->> 'arc_duration_turns')::int AS arc_duration_turns,
       (b.salience_scores ->> 'composite')::float8 AS salience_composite,
       b.coherence_gain, b.ties_merge_weight,
       jsonb_array_length(b.prose -> 'live_zones') AS live_zones,
       jsonb_array_length(b.prose -> 'dead_zone_summaries') AS dead_zones,
       b.session_continuity_flag, b.parent_metablock_id IS NOT NULL AS in_metablock,
       b.cycle_no, b.long_term, b.migrated_at
FROM memory.holographic_blocks b;
COMMENT ON VIEW bi.blocks IS 'Every Holographic Block with its flux metrics, salience, zone counts and where it stands; no prose.';

CREATE OR REPLACE VIEW bi.tier_health AS
SELECT r.tier, r.raw_cycles, r.block_cycles,
       (SELECT count(*) FROM memory.users u WHERE u.tier = r.tier) AS users,
       (SELECT count(*) FROM memory.day_table d JOIN memory.users u USING (user_id) WHERE u.tier = r.tier) AS turns_held,
       (SELECT count(*) FROM memory.holographic_blocks b JOIN memory.users u USING (user_id)
        WHERE u.tier = r.tier AND b.migrated_at IS NULL) AS blocks_in_hippocampus,
       (SELECT count(*) FROM memory.holographic_blocks b JOIN memory.users u USING (user_id)
        WHERE u.tier = r.tier AND b.migrated_at IS NOT NULL) AS blocks_migrated,
       (SELECT coalesce(sum(c.turns_deleted), 0) FROM ops.cleanup_log c WHERE c.tier = r.tier) AS turns_cleaned_total,
       (SELECT max(c.cycle_date) FROM ops.cleanup_log c WHERE c.tier = r.tier) AS last_cleanup_cycle
FROM memory.retention_policy r;
COMMENT ON VIEW bi.tier_health IS 'Per tier: its retention policy, what the Hippocampus holds, and what cleanup has removed.';

CREATE OR REPLACE VIEW bi.cleanup_daily AS
SELECT cycle_date, tier, sum(turns_deleted) AS turns_deleted FROM ops.cleanup_log GROUP BY 1, 2;
COMMENT ON VIEW bi.cleanup_daily IS 'Turns removed from the day table per cycle date and tier.';

CREATE OR REPLACE VIEW bi.cycle_runs AS
SELECT r.run_id, r.cycle_date, r.started_at, r.finished_at, r.status, r.users_done, r.users_failed,
       extract(epoch FROM r.finished_at - r.started_at) AS seconds
FROM ops.cycle_runs r;
COMMENT ON VIEW bi.cycle_runs IS 'Night Cycle runs: status (running until finished: a killed run stays running until the next call resumes it), users consolidated and failed, duration.';

CREATE OR REPLACE VIEW bi.cycle_stages AS
SELECT l.run_id, l.stage, l.stage_name, count(l.user_id) AS users,
       -- a backfill's index build is logged as a run-wide stage 6 row (user_id NULL) counting the blocks again
       coalesce(sum(l.rows) FILTER (WHERE l.user_id IS NOT NULL), sum(l.rows)) AS rows,
       round(sum(l.duration_ms)::numeric, 1) AS duration_ms, count(*) FILTER (WHERE NOT l.ok) AS failures,
       max(l.error) AS an_error
FROM ops.cycle_stage_log l
GROUP BY 1, 2, 3;
COMMENT ON VIEW bi.cycle_stages IS 'Per Night Cycle run and stage: users, rows, total duration (the run-wide index build of a backfill, logged as stage 6, and stage 8 included), failures.';

CREATE OR REPLACE VIEW bi.cron_runs AS
SELECT j.jobname, d.status, count(*) AS runs, max(d.start_time) AS last_start,
       max(d.return_message) FILTER (WHERE d.status = 'failed') AS a_failure
FROM cron.job j LEFT JOIN cron.job_run_details d USING (jobid)
WHERE j.jobname LIKE 'psimem-%'
GROUP BY 1, 2;
COMMENT ON VIEW bi.cron_runs IS 'psimem''s pg_cron jobs: runs by status, last start, a failure message.';

CREATE OR REPLACE VIEW bi.job_queue AS
SELECT kind, state, count(*) AS jobs, max(attempts) AS max_attempts, min(created_at) AS oldest,
       max(last_error) FILTER (WHERE state = 'failed') AS a_failure
FROM ops.jobs GROUP BY 1, 2;
COMMENT ON VIEW bi.job_queue IS 'Jobs for the worker by kind and state, with the oldest and a failure message.';

CREATE OR REPLACE VIEW bi.procedural_success AS
SELECT p.owner_agent_id, p.action_type, count(*) AS reflexes, sum(p.total_count) AS uses,
       round((sum(p.success_count)::float8 / nullif(sum(p.total_count), 0))::numeric, 4) AS success_rate,
       max(p.last_success) AS last_success
FROM procedural.procedural_memory p
GROUP BY 1, 2;
COMMENT ON VIEW bi.procedural_success IS 'Procedural memory by owning agent and action type: reflexes, uses, pooled success rate.';

GRANT SELECT ON bi.arcs_daily, bi.blocks, bi.tier_health, bi.cleanup_daily, bi.cycle_runs, bi.cycle_stages,
                bi.cron_runs, bi.job_queue, bi.procedural_success TO psimem_bi;
