-- Procedural memory (spec 004 section 10): reflex outcomes, causal edges, worker attempts,
-- and the daily self-pruning and decay jobs pg_cron runs.

CREATE OR REPLACE FUNCTION procedural.learn_reflex(
    p_action text, p_action_type text, p_context_description text DEFAULT NULL,
    p_context_embedding real[] DEFAULT NULL, p_owner_agent_id uuid DEFAULT NULL, p_at timestamptz DEFAULT now())
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user uuid := memory._acting_user();
    v_reflex_id uuid;
BEGIN
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'user: this session acts for no user; call memory.act_for() first' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_action IS NULL OR p_action !~ '\S' OR length(p_action) > 10000 THEN
        RAISE EXCEPTION 'p_action: must be 1 to 10000 characters, not blank' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_action_type IS NULL OR p_action_type NOT IN ('tool_call', 'response_pattern', 'delegation') THEN
        RAISE EXCEPTION 'p_action_type: must be one of tool_call, response_pattern, delegation (got %)', quote_nullable(p_action_type)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO procedural.procedural_memory (user_id, action, action_type, context_description, context_embedding,
                                              owner_agent_id, created_at, last_accessed)
    VALUES (v_user, p_action, p_action_type, p_context_description,
            memory._checked_vector(p_context_embedding, 'p_context_embedding', 'universal'), p_owner_agent_id,
            coalesce(p_at, now()), coalesce(p_at, now()))
    RETURNING reflex_id INTO v_reflex_id;
    RETURN v_reflex_id;
END
$$;
COMMENT ON FUNCTION procedural.learn_reflex(text, text, text, real[], uuid, timestamptz) IS
'Stores a new reflex (an action of type tool_call, response_pattern or delegation, with its context) for the user this session acts for, learnt at p_at, with no uses yet, and returns its reflex_id. procedural.record_outcome then counts its successes and failures.';
REVOKE ALL ON FUNCTION procedural.learn_reflex(text, text, text, real[], uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION procedural.learn_reflex(text, text, text, real[], uuid, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION procedural.record_outcome(p_reflex_id uuid, p_success boolean, p_at timestamptz DEFAULT now())
RETURNS double precision
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_rate double precision;
BEGIN
    IF p_success IS NULL THEN
        RAISE EXCEPTION 'p_success: must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE procedural.procedural_memory SET
        success_count = success_count + p_success::int,
        failure_count = failure_count + (NOT p_success)::int,
        total_count = total_count + 1,
        last_accessed = greatest(last_accessed, p_at),
        last_success = CASE WHEN p_success THEN greatest(last_success, p_at) ELSE last_success END
    WHERE reflex_id = p_reflex_id
    RETURNING success_rate INTO v_rate;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_reflex_id: unknown reflex %', p_reflex_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN v_rate;
END
$$;
COMMENT ON FUNCTION procedural.record_outcome(uuid, boolean, timestamptz) IS
'Records one use of a reflex: success or failure counts, total_count, last_accessed and (on success) last_success. Returns the new success_rate.';
REVOKE ALL ON FUNCTION procedural.record_outcome(uuid, boolean, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION procedural.record_outcome(uuid, boolean, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION procedural.observe_causal_edge(
    p_source_reflex_id uuid, p_target_reflex_id uuid, p_gap_seconds double precision,
    p_observed_strength double precision DEFAULT 1.0, p_at timestamptz DEFAULT now())
RETURNS double precision
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_rate double precision := (ops.setting('procedural.edge_learning_rate'))::float8;
    v_strength double precision;
    v_user uuid;
BEGIN
    IF p_gap_seconds IS NULL OR p_gap_seconds < 0 OR p_gap_seconds = 'Infinity' OR p_gap_seconds = 'NaN' THEN
        RAISE EXCEPTION 'p_gap_seconds: must be a finite number >= 0, got %', p_gap_seconds USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_observed_strength IS NULL OR NOT (p_observed_strength BETWEEN 0 AND 1) THEN
        RAISE EXCEPTION 'p_observed_strength: must be between 0 and 1, got %', p_observed_strength USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Both reflexes must be visible and belong to one user (an edge never joins two people).
    SELECT min(m.user_id::text)::uuid INTO v_user FROM procedural.procedural_memory m
    WHERE m.reflex_id IN (p_source_reflex_id, p_target_reflex_id)
    HAVING count(*) = (CASE WHEN p_source_reflex_id = p_target_reflex_id THEN 1 ELSE 2 END)
       AND count(DISTINCT m.user_id) = 1;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'p_source_reflex_id, p_target_reflex_id: unknown reflex' USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO procedural.causal_edges AS e (user_id, source_reflex_id, target_reflex_id, causal_strength, temporal_gap_avg,
                                              observation_count, last_observed)
    VALUES (v_user, p_source_reflex_id, p_target_reflex_id, p_observed_strength, p_gap_seconds, 1, p_at)
    ON CONFLICT (source_reflex_id, target_reflex_id, user_id) DO UPDATE SET
        causal_strength = e.causal_strength + v_rate * (EXCLUDED.causal_strength - e.causal_strength),
        temporal_gap_avg = e.temporal_gap_avg + (EXCLUDED.temporal_gap_avg - e.temporal_gap_avg) / (e.observation_count + 1),
        observation_count = e.observation_count + 1,
        last_observed = greatest(e.last_observed, EXCLUDED.last_observed)
    RETURNING e.causal_strength INTO v_strength;
    RETURN v_strength;
END
$$;
COMMENT ON FUNCTION procedural.observe_causal_edge(uuid, uuid, double precision, double precision, timestamptz) IS
'Observes that the source reflex led to the target after p_gap_seconds. A new edge starts at the observed strength; an existing one moves towards it by procedural.edge_learning_rate (strength += rate x (observed - strength)), temporal_gap_avg is the running mean of the gaps, observation_count counts, last_observed advances. Returns the new strength.';
REVOKE ALL ON FUNCTION procedural.observe_causal_edge(uuid, uuid, double precision, double precision, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION procedural.observe_causal_edge(uuid, uuid, double precision, double precision, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION procedural.log_attempt(
    p_lieutenant_id uuid, p_task_description text, p_worker_generation int, p_success boolean,
    p_failure_mode text DEFAULT NULL, p_task_embedding real[] DEFAULT NULL, p_worker_mutation_id uuid DEFAULT NULL,
    p_parent_mutation_id uuid DEFAULT NULL, p_execution_turns int DEFAULT NULL, p_mutation_description text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_entry_id uuid;
    v_user uuid := memory._acting_user();
BEGIN
    IF p_task_description IS NULL OR p_task_description !~ '\S' THEN
        RAISE EXCEPTION 'p_task_description: must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT p_success AND p_failure_mode IS NULL THEN
        RAISE EXCEPTION 'p_failure_mode: a failed attempt needs one of timeout, error, wrong_output, resource_exceeded'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_failure_mode NOT IN ('timeout', 'error', 'wrong_output', 'resource_exceeded') THEN
        RAISE EXCEPTION 'p_failure_mode: must be one of timeout, error, wrong_output, resource_exceeded (got %)',
            quote_literal(p_failure_mode) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_user IS NULL THEN
        RAISE EXCEPTION 'user: this session acts for no user; call memory.act_for() first' USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO procedural.frustration_ledger (user_id, lieutenant_id, task_description, task_embedding, worker_generation,
        worker_mutation_id, parent_mutation_id, success, failure_mode, execution_turns, mutation_description)
    VALUES (v_user, p_lieutenant_id, p_task_description,
            memory._checked_vector(p_task_embedding, 'p_task_embedding', 'universal'), p_worker_generation,
            p_worker_mutation_id, p_parent_mutation_id, p_success, p_failure_mode, p_execution_turns, p_mutation_description)
    RETURNING entry_id INTO v_entry_id;
    RETURN v_entry_id;
END
$$;
COMMENT ON FUNCTION procedural.log_attempt(uuid, text, int, boolean, text, real[], uuid, uuid, int, text) IS
'Logs one worker attempt in the Frustration Ledger (spec 004 section 10.6.3). A failed attempt must say its failure mode.';
REVOKE ALL ON FUNCTION procedural.log_attempt(uuid, text, int, boolean, text, real[], uuid, uuid, int, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION procedural.log_attempt(uuid, text, int, boolean, text, real[], uuid, uuid, int, text) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION procedural.prune_reflexes(p_as_of timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.procedural.prune')) THEN
        RAISE NOTICE 'prune_reflexes: another run holds the lock';
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM procedural.maintenance_runs WHERE job = 'prune' AND run_date = p_as_of::date) THEN
        RETURN 0;
    END IF;
    DELETE FROM procedural.procedural_memory
    WHERE coalesce(last_accessed, created_at) < p_as_of - (ops.setting('procedural.prune_unused') #>> '{}')::interval
      AND success_count < (ops.setting('procedural.prune_min_successes'))::int;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    INSERT INTO procedural.maintenance_runs (job, run_date, rows) VALUES ('prune', p_as_of::date, v_n);
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION procedural.prune_reflexes(timestamptz) IS
'Self-pruning (spec 004 section 10.5): deletes reflexes not accessed within procedural.prune_unused (30 days) before p_as_of that have fewer than procedural.prune_min_successes successes. Once per day of p_as_of (procedural.maintenance_runs), under an advisory lock; returns the number deleted.';
REVOKE ALL ON FUNCTION procedural.prune_reflexes(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION procedural.prune_reflexes(timestamptz) TO psimem_admin;

CREATE OR REPLACE FUNCTION procedural.decay_causal_edges(p_as_of timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n bigint;
    v_deleted bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.procedural.decay')) THEN
        RAISE NOTICE 'decay_causal_edges: another run holds the lock';
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM procedural.maintenance_runs WHERE job = 'decay' AND run_date = p_as_of::date) THEN
        RETURN 0;
    END IF;
    UPDATE procedural.causal_edges
    SET causal_strength = causal_strength * (ops.setting('procedural.decay_factor'))::float8
    WHERE last_observed < p_as_of - (ops.setting('procedural.decay_after') #>> '{}')::interval;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    DELETE FROM procedural.causal_edges WHERE causal_strength < (ops.setting('procedural.min_strength'))::float8;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    INSERT INTO procedural.maintenance_runs (job, run_date, rows) VALUES ('decay', p_as_of::date, v_n + v_deleted);
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION procedural.decay_causal_edges(timestamptz) IS
'Causal-edge decay (spec 004 section 10.5): edges not observed within procedural.decay_after (7 days) before p_as_of are multiplied by procedural.decay_factor (0.9), then edges below procedural.min_strength (0.1) are deleted. Runs at most once per day of p_as_of (procedural.maintenance_runs), so running it twice in a day does not decay twice; advisory-locked. Returns the number of edges decayed.';
REVOKE ALL ON FUNCTION procedural.decay_causal_edges(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION procedural.decay_causal_edges(timestamptz) TO psimem_admin;
