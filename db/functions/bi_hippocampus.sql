-- BI views over the Hippocampus: counts and flux, never content or vectors.

CREATE OR REPLACE VIEW bi.hippocampus_daily AS
SELECT date_trunc('day', d.created_at)::date AS day,
       d.user_tier,
       count(DISTINCT d.user_id) AS users,
       count(DISTINCT d.session_id) AS sessions,
       count(*) AS turns,
       count(*) FILTER (WHERE d.flux_state = 'spike') AS spike_turns,
       round(avg(d.perplexity_score)::numeric, 3) AS mean_perplexity
FROM memory.day_table d
GROUP BY 1, 2;
COMMENT ON VIEW bi.hippocampus_daily IS 'Turns, sessions, users, spike turns and mean perplexity per day and user tier in the day table.';
GRANT SELECT ON bi.hippocampus_daily TO psimem_bi;
