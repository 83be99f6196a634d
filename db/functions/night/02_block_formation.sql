-- Night Cycle stage 2: blocks from arcs and from the stretches between them, the measures
-- later stages need on their turns, and their live and dead zones (spec 004 section 3.3).

CREATE OR REPLACE FUNCTION memory.night_02_block_formation(p_run_id bigint, p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_cutoff timestamptz := (memory._night_cycle_date(p_run_id) + 1)::timestamptz;
    v_margin int := (ops.setting('night.margin_turns'))::int;
    v_live_sigma float8 := (ops.setting('night.live_spike_sigma'))::float8;
    v_live_arrete float8 := (ops.setting('night.live_arrete'))::float8;
    v_live_id float8 := (ops.setting('night.live_interrogative_distance'))::float8;
    v_markers text := ops.setting('night.insight_markers') #>> '{}';
    v_gap_max int := (ops.setting('night.gap_max_turns'))::int;
    v_n bigint;
BEGIN
    -- Each new arc becomes a block with margins within the turns this run took.
    INSERT INTO memory.night_blocks (run_id, user_id, block_kind, arc_id, session_id, start_turn, peak_turn, end_turn,
                                     first_turn, last_turn, resolved, baseline, peak, final, quality, duration,
                                     start_time, end_time)
    SELECT p_run_id, p_user_id, 'arc', f.arc_id, f.session_id, f.start_turn, f.peak_turn, f.end_turn,
           greatest(f.start_turn - v_margin, s.first_turn), least(f.end_turn + v_margin, s.last_turn), f.resolved,
           f.baseline_perplexity, f.peak_perplexity, f.final_perplexity, f.flux_reversal_quality,
           f.arc_duration_turns, f.start_time, f.end_time
    FROM memory.night_arcs a
    JOIN memory.flux_arcs f ON f.arc_id = a.arc_id AND f.user_id = a.user_id
    JOIN memory.night_sessions s ON s.run_id = a.run_id AND s.user_id = a.user_id AND s.session_id = a.session_id
    WHERE a.run_id = p_run_id AND a.user_id = p_user_id;

    -- The stretches of the taken turns that no arc block holds become gap blocks (at most
    -- night.gap_max_turns turns each), so every turn the run consolidates lies in a block
    -- and retention never deletes a turn nothing keeps.
    WITH free AS (
        SELECT n.session_id, d.turn_number, d.perplexity_score, d.flux_baseline_mean, d.created_at
        FROM memory.night_sessions n
        JOIN memory.day_table d ON d.session_id = n.session_id AND d.user_id = n.user_id
             AND d.turn_number BETWEEN n.first_turn AND n.last_turn
        WHERE n.run_id = p_run_id AND n.user_id = p_user_id
          AND NOT EXISTS (SELECT 1 FROM memory.night_blocks b
                          WHERE b.run_id = p_run_id AND b.user_id = p_user_id AND b.session_id = n.session_id
                            AND d.turn_number BETWEEN b.first_turn AND b.last_turn)),
    stretches AS (
        SELECT f.*, f.turn_number - row_number() OVER (PARTITION BY f.session_id ORDER BY f.turn_number) AS stretch
        FROM free f),
    pieces AS (
        SELECT s.*, (row_number() OVER (PARTITION BY s.session_id, s.stretch ORDER BY s.turn_number) - 1) / v_gap_max AS piece
        FROM stretches s)
    INSERT INTO memory.night_blocks (run_id, user_id, block_kind, session_id, start_turn, peak_turn, end_turn,
                                     first_turn, last_turn, resolved, baseline, peak, final, duration, start_time, end_time)
    SELECT p_run_id, p_user_id, 'gap', p.session_id, min(p.turn_number),
           (array_agg(p.turn_number ORDER BY p.perplexity_score DESC NULLS LAST, p.turn_number))[1], max(p.turn_number),
           min(p.turn_number), max(p.turn_number), true, avg(coalesce(p.flux_baseline_mean, p.perplexity_score)),
           max(p.perplexity_score), (array_agg(p.perplexity_score ORDER BY p.turn_number DESC))[1], count(*),
           min(p.created_at), max(p.created_at)
    FROM pieces p
    GROUP BY p.session_id, p.stretch, p.piece;
    SELECT count(*) INTO v_n FROM memory.night_blocks b WHERE b.run_id = p_run_id AND b.user_id = p_user_id;
    IF v_n = 0 THEN
        RETURN 0;
    END IF;
    PERFORM memory.refresh_preoccupation_centroid(p_user_id, least(v_cutoff, now()));

    -- What stages 3-5 measure on each turn a block holds: coherence with the previous turn,
    -- Interrogative Distance to the Preoccupation Centroid, and whether it is live.
    INSERT INTO memory.night_block_turns (run_id, user_id, block_id, turn_number, perplexity_score, coherence_prev,
                                          interrogative_distance, live)
    SELECT p_run_id, p_user_id, b.block_id, d.turn_number, d.perplexity_score,
           greatest(0, 1 - (d.universal_embedding <=> lag(d.universal_embedding) OVER o)),
           least(1, d.universal_embedding <=> c.universal_centroid),
           (d.turn_number BETWEEN b.start_turn AND b.end_turn
             -- a spike and an Arreté are an arc's; a gap block's turns are live only by ID or a marker
             AND ((b.block_kind = 'arc' AND (d.perplexity_score > d.flux_baseline_mean + v_live_sigma * d.flux_baseline_sd
                       OR (lag(d.perplexity_score) OVER o - d.perplexity_score) / nullif(lag(d.perplexity_score) OVER o, 0) > v_live_arrete))
                  OR least(1, d.universal_embedding <=> c.universal_centroid) < v_live_id
                  OR d.content ~* v_markers)) IS TRUE
    FROM memory.night_blocks b
    JOIN memory.day_table d ON d.session_id = b.session_id AND d.user_id = b.user_id
         AND d.turn_number BETWEEN b.first_turn AND b.last_turn
    LEFT JOIN memory.preoccupation_centroids c ON c.user_id = p_user_id
    WHERE b.run_id = p_run_id AND b.user_id = p_user_id
    WINDOW o AS (PARTITION BY b.block_id ORDER BY d.turn_number);

    -- Zones over the arc's own turns (a gap block's are all its own): maximal runs of live or
    -- of dead turns; live ones verbatim. LATERAL ... OFFSET 0 (not flattened into a join): each
    -- block's turns by key. The work tables have no statistics for this run's users, and a
    -- planned join scanned all of the user's turns for every block.
    WITH runs AS (
        SELECT b.block_id, b.session_id, t.turn_number, t.live,
               t.turn_number - row_number() OVER (PARTITION BY b.block_id, t.live ORDER BY t.turn_number) AS run
        FROM memory.night_blocks b
        CROSS JOIN LATERAL (SELECT x.turn_number, x.live FROM memory.night_block_turns x
                            WHERE x.run_id = b.run_id AND x.user_id = b.user_id AND x.block_id = b.block_id
                              AND x.turn_number BETWEEN b.start_turn AND b.end_turn OFFSET 0) t
        WHERE b.run_id = p_run_id AND b.user_id = p_user_id)
    INSERT INTO memory.night_zones (run_id, user_id, block_id, session_id, live, first_turn, last_turn, content)
    SELECT p_run_id, p_user_id, r.block_id, r.session_id, r.live, min(r.turn_number), max(r.turn_number),
           string_agg(d.role || ': ' || d.content, E'\n' ORDER BY r.turn_number)
    FROM runs r
    LEFT JOIN memory.day_table d ON r.live AND d.session_id = r.session_id AND d.user_id = p_user_id
         AND d.turn_number = r.turn_number
    GROUP BY r.block_id, r.session_id, r.live, r.run;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION memory.night_02_block_formation(bigint, uuid) IS
'Night Cycle stage 2, block formation, for one user of a run. Each arc stage 1 stored becomes a block (memory.night_blocks) spanning night.margin_turns turns before its spike and after its resolution (within the turns the run took); each stretch of taken turns that no arc block holds becomes a gap block (block_kind gap, at most night.gap_max_turns turns, its own span start..end, peak = its most perplexing turn, baseline = its turns'' mean live baseline), so that every consolidated turn lies in a block. The user''s Preoccupation Centroid is refreshed as of the cycle''s end. For each turn a block holds, memory.night_block_turns gets its coherence with the previous turn, its Interrogative Distance to the centroid and whether it is live. The arc''s own turns are split into zones (memory.night_zones): live zones, kept verbatim ("role: content" lines), are maximal runs of turns meeting any of: (arc blocks only) perplexity above the local baseline mean + night.live_spike_sigma standard deviations; Arreté within the exchange, (previous perplexity - perplexity) / previous perplexity, above night.live_arrete; (every block) Interrogative Distance below night.live_interrogative_distance; an insight marker (night.insight_markers). The other runs are dead zones, summarised in stage 4. Returns the number of blocks formed (arc and gap).';
REVOKE ALL ON FUNCTION memory.night_02_block_formation(bigint, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.night_02_block_formation(bigint, uuid) TO psimem_admin;

SELECT memory._night_register_stage(2::smallint, 'block formation', 'memory.night_02_block_formation(bigint, uuid)', 'taken');
