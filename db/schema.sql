-- psimem schema (pg_dump --schema-only, normalised). Regenerate: make schema

CREATE SCHEMA bi;

COMMENT ON SCHEMA bi IS 'read-only views for BI tools; no raw private content';

CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA public;

COMMENT ON EXTENSION pg_cron IS 'Job scheduler for PostgreSQL';

CREATE SCHEMA memory;

COMMENT ON SCHEMA memory IS 'psimem Hippocampus: users, sessions, the day table and recall';

CREATE SCHEMA ops;

COMMENT ON SCHEMA ops IS 'psimem operations: settings, applied SQL code, job queue and run logs';

CREATE EXTENSION IF NOT EXISTS plpython3u WITH SCHEMA pg_catalog;

COMMENT ON EXTENSION plpython3u IS 'PL/Python3U untrusted procedural language';

CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;

COMMENT ON EXTENSION pgcrypto IS 'cryptographic functions';

CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;

COMMENT ON EXTENSION vector IS 'vector data type and ivfflat and hnsw access methods';

CREATE FUNCTION memory._checked_vector(p_value real[], p_field text, p_space text) RETURNS public.vector
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    v_dim int := (ops.setting('embedding.' || p_space || '_dim'))::int;
BEGIN
    IF p_value IS NULL THEN
        RETURN NULL;
    END IF;
    IF array_ndims(p_value) IS DISTINCT FROM 1 OR cardinality(p_value) <> v_dim THEN
        RAISE EXCEPTION '%: must have % dimensions (the installed % size), got %',
            p_field, v_dim, p_space, coalesce(cardinality(p_value), 0)
            USING ERRCODE = 'data_exception';
    END IF;
    BEGIN
        RETURN p_value::vector;
    EXCEPTION WHEN data_exception OR null_value_not_allowed THEN
        -- pgvector refuses NaN, infinity and NULL elements; say which argument held them.
        RAISE EXCEPTION '%: must hold finite numbers only (%)', p_field, SQLERRM USING ERRCODE = 'data_exception';
    END;
END
$$;

COMMENT ON FUNCTION memory._checked_vector(p_value real[], p_field text, p_space text) IS 'Internal. Turns a real[] into a vector after checking it against the installed size of the universal or native space (p_space) and for NaN, infinity and NULL elements; errors name p_field.';

CREATE FUNCTION memory._day_table_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_session memory.sessions%ROWTYPE;
    v_cfg jsonb;
    v_recent real[];
    v_n int;
    v_mean double precision;
    v_sd double precision;
    v_prev double precision;
    v_p double precision := NEW.perplexity_score;
    v_window int;
BEGIN
    SELECT jsonb_object_agg(s.key, s.value) INTO v_cfg
    FROM ops.settings s WHERE s.key LIKE 'flux.%' OR s.key = 'limits.content_max_chars';

    IF NEW.role IS NULL OR NEW.role NOT IN ('user', 'assistant', 'system') THEN
        RAISE EXCEPTION 'role: must be one of user, assistant, system (got %)', quote_nullable(NEW.role)
            USING ERRCODE = 'check_violation', COLUMN = 'role';
    END IF;
    IF NEW.content IS NULL OR NEW.content !~ '\S' THEN
        RAISE EXCEPTION 'content: must not be empty' USING ERRCODE = 'check_violation', COLUMN = 'content';
    END IF;
    IF length(NEW.content) > (v_cfg->>'limits.content_max_chars')::int THEN
        RAISE EXCEPTION 'content: must be at most % characters (limits.content_max_chars), got %',
            v_cfg->>'limits.content_max_chars', length(NEW.content)
            USING ERRCODE = 'check_violation', COLUMN = 'content';
    END IF;
    IF v_p IS NOT NULL AND (v_p < 0 OR v_p = 'NaN' OR v_p = 'Infinity') THEN
        RAISE EXCEPTION 'perplexity_score: must be a finite number >= 0, got %', v_p
            USING ERRCODE = 'check_violation', COLUMN = 'perplexity_score';
    END IF;
    IF NEW.token_count < 0 THEN
        RAISE EXCEPTION 'token_count: must be >= 0, got %', NEW.token_count
            USING ERRCODE = 'check_violation', COLUMN = 'token_count';
    END IF;
    IF NEW.turn_number < 1 THEN
        RAISE EXCEPTION 'turn_number: must be >= 1, got %', NEW.turn_number
            USING ERRCODE = 'check_violation', COLUMN = 'turn_number';
    END IF;

    -- The row lock orders concurrent writers of one session (turn numbers, flux state).
    SELECT * INTO v_session FROM memory.sessions s WHERE s.session_id = NEW.session_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session_id: unknown session %', quote_nullable(NEW.session_id)
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'session_id';
    END IF;
    IF NEW.user_id IS NOT NULL AND NEW.user_id <> v_session.user_id THEN
        RAISE EXCEPTION 'user_id: session % acts for user %, not %', NEW.session_id, v_session.user_id, NEW.user_id
            USING ERRCODE = 'check_violation', COLUMN = 'user_id';
    END IF;
    NEW.user_id := v_session.user_id;
    SELECT u.tier INTO NEW.user_tier FROM memory.users u WHERE u.user_id = v_session.user_id;
    NEW.turn_number := coalesce(NEW.turn_number, v_session.turn_count + 1);
    NEW.created_at := coalesce(NEW.created_at, now());
    NEW.flux_state := NULL;

    IF v_p IS NOT NULL THEN
        v_recent := v_session.flux_recent;
        v_n := coalesce(cardinality(v_recent), 0);
        SELECT avg(x), coalesce(stddev_samp(x), 0) INTO v_mean, v_sd FROM unnest(v_recent) AS x;
        v_prev := v_recent[v_n];
        IF NOT v_session.flux_window_open THEN
            IF v_n >= (v_cfg->>'flux.min_baseline_turns')::int
               AND v_p > v_mean + (v_cfg->>'flux.spike_sigma')::float8 * v_sd THEN
                NEW.flux_state := 'spike';
                v_session.flux_window_open := true;
                v_session.flux_baseline := v_mean;
                v_session.flux_peak := v_p;
                v_session.flux_stable_count := 0;
            ELSE
                NEW.flux_state := 'baseline';
            END IF;
        ELSE
            IF abs(v_p - v_prev) < (v_cfg->>'flux.stable_derivative')::float8 * v_session.flux_baseline THEN
                v_session.flux_stable_count := v_session.flux_stable_count + 1;
            ELSE
                v_session.flux_stable_count := 0;
            END IF;
            v_session.flux_peak := greatest(v_session.flux_peak, v_p);
            IF v_session.flux_stable_count >= (v_cfg->>'flux.stabilization_count')::int THEN
                NEW.flux_state := 'stable';
                v_session.flux_window_open := false;
                v_session.flux_stable_count := 0;
            ELSIF v_p > v_prev THEN
                NEW.flux_state := 'spike';
            ELSE
                NEW.flux_state := 'resolution';
            END IF;
        END IF;
        v_window := (v_cfg->>'flux.baseline_window')::int;
        v_recent := v_recent || v_p::real;
        v_session.flux_recent := v_recent[greatest(1, cardinality(v_recent) - v_window + 1):];
    END IF;

    UPDATE memory.sessions s SET
        turn_count = greatest(s.turn_count, NEW.turn_number),
        last_turn_at = greatest(s.last_turn_at, NEW.created_at),
        flux_recent = v_session.flux_recent,
        flux_window_open = v_session.flux_window_open,
        flux_stable_count = v_session.flux_stable_count,
        flux_baseline = v_session.flux_baseline,
        flux_peak = v_session.flux_peak
    WHERE s.session_id = NEW.session_id;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION memory._day_table_before_insert() IS 'Trigger on memory.day_table, before each insert (record_turn and bulk COPY alike). Refuses bad rows with errors naming the column and rule (role, content empty or over limits.content_max_chars, perplexity negative or not finite, unknown session, user mismatch). Fills user_id and user_tier from the session, numbers the turn when none is given, and sets flux_state from the session''s rolling perplexity: with the window closed, a turn above mean + flux.spike_sigma x stddev of the previous flux.baseline_window turns (at least flux.min_baseline_turns of them) is a spike and opens the window; with it open, a turn whose |change| from the previous turn is below flux.stable_derivative x the baseline mean counts as stable, flux.stabilization_count consecutive stable turns close the window (state stable), and other turns are spike (rising) or resolution (falling). Turns without perplexity get no flux_state.';

CREATE FUNCTION memory._recall_recent(p_space text, p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) RETURNS TABLE(entry_id uuid, session_id uuid, user_id uuid, role text, content text, created_at timestamp with time zone, turn_number integer, distance double precision, reason text)
    LANGUAGE plpgsql STABLE
    SET "hnsw.iterative_scan" TO 'relaxed_order'
    SET "hnsw.ef_search" TO '40'
    AS $_$
DECLARE
    v_col text := p_space || '_embedding';
    v_kind text := ops.setting('embedding.' || p_space || '_index') #>> '{}';
    v_dim int := (ops.setting('embedding.' || p_space || '_dim'))::int;
    v_window interval := (ops.setting('recall.window') #>> '{}')::interval;
    v_query vector;
    v_order text;
    v_fetch int := p_k;
BEGIN
    IF p_k IS NULL OR p_k < 1 OR p_k > 1000 THEN
        RAISE EXCEPTION 'p_k: must be between 1 and 1000, got %', coalesce(p_k::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_session_id IS NULL AND p_user_id IS NULL THEN
        RAISE EXCEPTION 'p_session_id, p_user_id: give at least one' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_session_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.sessions s WHERE s.session_id = p_session_id) THEN
        RAISE EXCEPTION 'p_session_id: unknown session %', p_session_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', p_user_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF p_query_vector IS NULL THEN
        RAISE EXCEPTION 'p_query_vector: must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_query := memory._checked_vector(p_query_vector, 'p_query_vector', p_space);
    PERFORM set_config('hnsw.ef_search', ops.setting('recall.ef_search')::text, true);

    -- The ORDER BY expression must match the index expression chosen at install time.
    IF v_kind = 'vector' THEN
        v_order := format('d.%I <=> $1', v_col);
    ELSIF v_kind = 'halfvec' THEN
        v_order := format('d.%I::halfvec(%s) <=> $1::halfvec(%s)', v_col, v_dim, v_dim);
        v_fetch := p_k * 2;
    ELSE
        v_order := format('binary_quantize(d.%I)::bit(%s) <~> binary_quantize($1)', v_col, v_dim);
        v_fetch := p_k * (ops.setting('recall.binary_overfetch'))::int;
    END IF;

    -- Candidates from the index (iterative scans keep going until the filter yields
    -- enough rows), then exact cosine distance decides the order.
    RETURN QUERY EXECUTE format($q$
        WITH candidates AS MATERIALIZED (
            SELECT d.entry_id
            FROM memory.day_table d
            WHERE d.session_id = $2 OR (d.user_id = $3 AND d.created_at > now() - $5)
            ORDER BY %2$s
            LIMIT $4)
        SELECT d.entry_id, d.session_id, d.user_id, d.role, d.content, d.created_at, d.turn_number,
               (d.%1$I <=> $1)::double precision AS distance,
               CASE WHEN d.session_id = $2 THEN 'current session'
                    ELSE 'same user, within ' || $5::text END AS reason
        FROM candidates c JOIN memory.day_table d ON d.entry_id = c.entry_id
        WHERE d.%1$I IS NOT NULL
        ORDER BY distance, d.entry_id
        LIMIT $6 $q$, v_col, v_order)
    USING v_query, p_session_id, p_user_id, v_fetch, v_window, p_k;
END
$_$;

COMMENT ON FUNCTION memory._recall_recent(p_space text, p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) IS 'Internal. Nearest turns in one embedding space (universal or native) among the current session and the user''s turns within recall.window, using the HNSW index form chosen at install (vector, halfvec, or binary quantization with recall.binary_overfetch candidates per row) and pgvector iterative scans, then exact cosine re-rank.';

CREATE FUNCTION memory.act_for(p_user_id uuid) RETURNS uuid
    LANGUAGE sql
    AS $$
    SELECT set_config('psimem.user_id', coalesce(p_user_id::text, ''), false)::uuid
$$;

COMMENT ON FUNCTION memory.act_for(p_user_id uuid) IS 'Makes this database session act for one user (sets psimem.user_id). Row-level security shows psimem_writer and psimem_reader only that user''s users, sessions and turns; with no user set they see nothing.';

CREATE FUNCTION memory.ensure_user(p_external_ref text, p_tier text DEFAULT 'normal'::text, p_display_name text DEFAULT NULL::text) RETURNS uuid
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_user_id uuid;
BEGIN
    IF p_external_ref IS NULL OR btrim(p_external_ref) = '' THEN
        RAISE EXCEPTION 'p_external_ref: must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_tier NOT IN ('normal', 'meso', 'elder') THEN
        RAISE EXCEPTION 'p_tier: must be one of normal, meso, elder (got %)', quote_nullable(p_tier)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO memory.users (external_ref, tier, display_name)
    VALUES (p_external_ref, p_tier, p_display_name)
    ON CONFLICT (external_ref) DO NOTHING
    RETURNING user_id INTO v_user_id;
    IF v_user_id IS NULL THEN
        SELECT u.user_id INTO v_user_id FROM memory.users u WHERE u.external_ref = p_external_ref;
    END IF;
    RETURN v_user_id;
END
$$;

COMMENT ON FUNCTION memory.ensure_user(p_external_ref text, p_tier text, p_display_name text) IS 'Returns the user with this external reference, creating it with the given tier (normal, meso or elder) if it does not exist. Idempotent; an existing user keeps its tier.';

CREATE FUNCTION memory.recall_recent(p_query_vector real[], p_session_id uuid DEFAULT NULL::uuid, p_user_id uuid DEFAULT NULL::uuid, p_k integer DEFAULT 10) RETURNS TABLE(entry_id uuid, session_id uuid, user_id uuid, role text, content text, created_at timestamp with time zone, turn_number integer, distance double precision, reason text)
    LANGUAGE sql STABLE
    AS $$
    SELECT * FROM memory._recall_recent('universal', p_query_vector, p_session_id, p_user_id, p_k)
$$;

COMMENT ON FUNCTION memory.recall_recent(p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) IS 'Spec 004 section 2.4 real-time retrieval on universal embeddings: the p_k turns nearest to p_query_vector (cosine distance) from the current session OR the user''s turns within recall.window (7 days by default). Returns p_k rows whenever that many match, however selective the filter (pgvector 0.8 iterative index scans). Each row says why it came back: current session, or same user within the window.';

CREATE FUNCTION memory.recall_recent_native(p_query_vector real[], p_session_id uuid DEFAULT NULL::uuid, p_user_id uuid DEFAULT NULL::uuid, p_k integer DEFAULT 10) RETURNS TABLE(entry_id uuid, session_id uuid, user_id uuid, role text, content text, created_at timestamp with time zone, turn_number integer, distance double precision, reason text)
    LANGUAGE sql STABLE
    AS $$
    SELECT * FROM memory._recall_recent('native', p_query_vector, p_session_id, p_user_id, p_k)
$$;

COMMENT ON FUNCTION memory.recall_recent_native(p_query_vector real[], p_session_id uuid, p_user_id uuid, p_k integer) IS 'recall_recent on native embeddings. Native vectors over 2,000 dimensions are indexed by binary quantization (bit Hamming HNSW); the function over-fetches recall.binary_overfetch candidates per wanted row and re-ranks them by exact cosine distance.';

CREATE FUNCTION memory.record_turn(p_session_id uuid, p_role text, p_content text, p_universal_embedding real[] DEFAULT NULL::real[], p_native_embedding real[] DEFAULT NULL::real[], p_perplexity_score double precision DEFAULT NULL::double precision, p_token_count integer DEFAULT NULL::integer, p_turn_number integer DEFAULT NULL::integer, p_created_at timestamp with time zone DEFAULT now()) RETURNS uuid
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_entry_id uuid;
BEGIN
    INSERT INTO memory.day_table (session_id, role, content, universal_embedding, native_embedding,
                                  perplexity_score, token_count, turn_number, created_at)
    VALUES (p_session_id, p_role, p_content,
            memory._checked_vector(p_universal_embedding, 'p_universal_embedding', 'universal'),
            memory._checked_vector(p_native_embedding, 'p_native_embedding', 'native'),
            p_perplexity_score, p_token_count, p_turn_number, coalesce(p_created_at, now()))
    RETURNING entry_id INTO v_entry_id;
    RETURN v_entry_id;
END
$$;

COMMENT ON FUNCTION memory.record_turn(p_session_id uuid, p_role text, p_content text, p_universal_embedding real[], p_native_embedding real[], p_perplexity_score double precision, p_token_count integer, p_turn_number integer, p_created_at timestamp with time zone) IS 'Records one turn of a session in the day table and returns its entry_id. Embeddings are real[] (a vector argument casts implicitly) of the installed universal and native sizes; perplexity is the agent''s own per-turn score. The day_table trigger checks the row, numbers the turn when p_turn_number is null, fills user and tier from the session, and sets flux_state live. Errors name the argument and the rule.';

CREATE FUNCTION memory.start_session(p_user_id uuid, p_external_ref text DEFAULT NULL::text, p_started_at timestamp with time zone DEFAULT now()) RETURNS uuid
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_session_id uuid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM memory.users u WHERE u.user_id = p_user_id) THEN
        RAISE EXCEPTION 'p_user_id: unknown user %', p_user_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO memory.sessions (user_id, external_ref, started_at)
    VALUES (p_user_id, p_external_ref, p_started_at)
    ON CONFLICT (external_ref) DO NOTHING
    RETURNING session_id INTO v_session_id;
    IF v_session_id IS NULL THEN
        SELECT s.session_id INTO v_session_id FROM memory.sessions s
        WHERE s.external_ref = p_external_ref AND s.user_id = p_user_id;
        IF v_session_id IS NULL THEN
            RAISE EXCEPTION 'p_external_ref: session % belongs to another user', quote_literal(p_external_ref)
                USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    RETURN v_session_id;
END
$$;

COMMENT ON FUNCTION memory.start_session(p_user_id uuid, p_external_ref text, p_started_at timestamp with time zone) IS 'Opens a conversation session for a user and returns its id. With an external reference it is idempotent: the same reference returns the same session.';

CREATE FUNCTION ops.set_setting(p_key text, p_value jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_old jsonb;
BEGIN
    IF p_key LIKE 'embedding.%' THEN
        RAISE EXCEPTION 'p_key: % is fixed at install time (it shapes columns and indexes)', p_key
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_old := ops.setting(p_key);
    IF jsonb_typeof(v_old) <> jsonb_typeof(p_value) THEN
        RAISE EXCEPTION 'p_value: % must be a JSON %, got %', p_key, jsonb_typeof(v_old), jsonb_typeof(p_value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE ops.settings SET value = p_value, updated_at = now() WHERE key = p_key;
    RETURN v_old;
END
$$;

COMMENT ON FUNCTION ops.set_setting(p_key text, p_value jsonb) IS 'Changes an existing setting and returns its previous value. The new value must have the same JSON type as the old one; embedding.* settings are fixed at install time and refused.';

CREATE FUNCTION ops.setting(p_key text) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    v_value jsonb;
BEGIN
    SELECT s.value INTO v_value FROM ops.settings s WHERE s.key = p_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'p_key: setting % is not defined in ops.settings', quote_literal(p_key)
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN v_value;
END
$$;

COMMENT ON FUNCTION ops.setting(p_key text) IS 'Returns the jsonb value of one ops.settings row, or raises undefined_object naming the key. Functions read their parameters through it so a missing setting fails loudly instead of defaulting silently.';

CREATE TABLE memory.day_table (
    entry_id uuid DEFAULT gen_random_uuid() NOT NULL,
    session_id uuid NOT NULL,
    role text NOT NULL,
    content text NOT NULL,
    native_embedding public.vector(4096),
    universal_embedding public.vector(768),
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    perplexity_score double precision,
    flux_state text,
    user_id uuid NOT NULL,
    user_tier text,
    turn_number integer NOT NULL,
    token_count integer,
    CONSTRAINT day_table_content_not_blank CHECK ((content ~ '\S'::text)),
    CONSTRAINT day_table_flux_state_known CHECK ((flux_state = ANY (ARRAY['baseline'::text, 'spike'::text, 'resolution'::text, 'stable'::text]))),
    CONSTRAINT day_table_perplexity_nonnegative CHECK ((perplexity_score >= (0)::double precision)),
    CONSTRAINT day_table_role_known CHECK ((role = ANY (ARRAY['user'::text, 'assistant'::text, 'system'::text]))),
    CONSTRAINT day_table_token_count_nonnegative CHECK ((token_count >= 0)),
    CONSTRAINT day_table_turn_number_positive CHECK ((turn_number > 0)),
    CONSTRAINT day_table_user_tier_known CHECK ((user_tier = ANY (ARRAY['normal'::text, 'meso'::text, 'elder'::text])))
);

COMMENT ON TABLE memory.day_table IS 'The Hippocampus day table (spec 004 section 2.2): every turn with its embeddings and perplexity';

CREATE VIEW bi.hippocampus_daily AS
 SELECT (date_trunc('day'::text, d.created_at))::date AS day,
    d.user_tier,
    count(DISTINCT d.user_id) AS users,
    count(DISTINCT d.session_id) AS sessions,
    count(*) AS turns,
    count(*) FILTER (WHERE (d.flux_state = 'spike'::text)) AS spike_turns,
    round((avg(d.perplexity_score))::numeric, 3) AS mean_perplexity
   FROM memory.day_table d
  GROUP BY ((date_trunc('day'::text, d.created_at))::date), d.user_tier;

COMMENT ON VIEW bi.hippocampus_daily IS 'Turns, sessions, users, spike turns and mean perplexity per day and user tier in the day table.';

CREATE TABLE memory.sessions (
    session_id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    external_ref text,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    last_turn_at timestamp with time zone,
    turn_count integer DEFAULT 0 NOT NULL,
    flux_recent real[] DEFAULT '{}'::real[] NOT NULL,
    flux_window_open boolean DEFAULT false NOT NULL,
    flux_stable_count integer DEFAULT 0 NOT NULL,
    flux_baseline real,
    flux_peak real,
    CONSTRAINT sessions_turn_count_nonnegative CHECK ((turn_count >= 0))
);

COMMENT ON TABLE memory.sessions IS 'Conversations; each acts for one user';

CREATE TABLE memory.users (
    user_id uuid DEFAULT gen_random_uuid() NOT NULL,
    external_ref text,
    display_name text,
    tier text DEFAULT 'normal'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT users_tier_known CHECK ((tier = ANY (ARRAY['normal'::text, 'meso'::text, 'elder'::text])))
);

COMMENT ON TABLE memory.users IS 'People the agent talks to; tier sets how long the Hippocampus keeps their memories';

CREATE TABLE ops.applied_sql (
    path text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE ops.applied_sql IS 'Checksums of db/functions and db/triggers files as last applied';

CREATE TABLE ops.settings (
    key text NOT NULL,
    value jsonb NOT NULL,
    description text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT settings_key_dotted CHECK ((key ~ '^[a-z_]+(\.[a-z_0-9]+)+$'::text))
);

COMMENT ON TABLE ops.settings IS 'Tunable parameters read by psimem functions; change with UPDATE or ops.set_setting()';

CREATE TABLE public.alembic_version (
    version_num character varying(32) NOT NULL
);

ALTER TABLE ONLY memory.day_table
    ADD CONSTRAINT day_table_pkey PRIMARY KEY (entry_id);

ALTER TABLE ONLY memory.day_table
    ADD CONSTRAINT day_table_session_turn_unique UNIQUE (session_id, turn_number);

ALTER TABLE ONLY memory.sessions
    ADD CONSTRAINT sessions_external_ref_key UNIQUE (external_ref);

ALTER TABLE ONLY memory.sessions
    ADD CONSTRAINT sessions_pkey PRIMARY KEY (session_id);

ALTER TABLE ONLY memory.users
    ADD CONSTRAINT users_external_ref_key UNIQUE (external_ref);

ALTER TABLE ONLY memory.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (user_id);

ALTER TABLE ONLY ops.applied_sql
    ADD CONSTRAINT applied_sql_pkey PRIMARY KEY (path);

ALTER TABLE ONLY ops.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (key);

ALTER TABLE ONLY public.alembic_version
    ADD CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num);

CREATE INDEX idx_day_table_native_embedding ON memory.day_table USING hnsw (((public.binary_quantize(native_embedding))::bit(4096)) public.bit_hamming_ops);

CREATE INDEX idx_day_table_session ON memory.day_table USING btree (session_id);

CREATE INDEX idx_day_table_time ON memory.day_table USING btree (created_at);

CREATE INDEX idx_day_table_universal_embedding ON memory.day_table USING hnsw (universal_embedding public.vector_cosine_ops);

CREATE INDEX idx_day_table_user_time ON memory.day_table USING btree (user_id, created_at);

CREATE INDEX idx_sessions_user ON memory.sessions USING btree (user_id, started_at);

CREATE TRIGGER day_table_before_insert BEFORE INSERT ON memory.day_table FOR EACH ROW EXECUTE FUNCTION memory._day_table_before_insert();

ALTER TABLE ONLY memory.day_table
    ADD CONSTRAINT day_table_session_id_fkey FOREIGN KEY (session_id) REFERENCES memory.sessions(session_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.day_table
    ADD CONSTRAINT day_table_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE ONLY memory.sessions
    ADD CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES memory.users(user_id) ON DELETE CASCADE;

ALTER TABLE memory.day_table ENABLE ROW LEVEL SECURITY;

CREATE POLICY day_table_acting_user ON memory.day_table TO psimem_writer, psimem_reader USING ((user_id = (NULLIF(current_setting('psimem.user_id'::text, true), ''::text))::uuid)) WITH CHECK ((user_id = (NULLIF(current_setting('psimem.user_id'::text, true), ''::text))::uuid));

CREATE POLICY day_table_admin ON memory.day_table TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.sessions ENABLE ROW LEVEL SECURITY;

CREATE POLICY sessions_acting_user ON memory.sessions TO psimem_writer, psimem_reader USING ((user_id = (NULLIF(current_setting('psimem.user_id'::text, true), ''::text))::uuid)) WITH CHECK ((user_id = (NULLIF(current_setting('psimem.user_id'::text, true), ''::text))::uuid));

CREATE POLICY sessions_admin ON memory.sessions TO psimem_admin USING (true) WITH CHECK (true);

ALTER TABLE memory.users ENABLE ROW LEVEL SECURITY;

CREATE POLICY users_acting_user ON memory.users TO psimem_writer, psimem_reader USING ((user_id = (NULLIF(current_setting('psimem.user_id'::text, true), ''::text))::uuid)) WITH CHECK ((user_id = (NULLIF(current_setting('psimem.user_id'::text, true), ''::text))::uuid));

CREATE POLICY users_admin ON memory.users TO psimem_admin USING (true) WITH CHECK (true);

GRANT USAGE ON SCHEMA bi TO psimem_bi;
GRANT USAGE ON SCHEMA bi TO psimem_admin;

GRANT USAGE ON SCHEMA memory TO psimem_writer;
GRANT USAGE ON SCHEMA memory TO psimem_reader;
GRANT USAGE ON SCHEMA memory TO psimem_admin;

GRANT USAGE ON SCHEMA ops TO psimem_writer;
GRANT USAGE ON SCHEMA ops TO psimem_reader;
GRANT USAGE ON SCHEMA ops TO psimem_admin;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.day_table TO psimem_admin;
GRANT SELECT ON TABLE memory.day_table TO psimem_reader;
GRANT SELECT,INSERT,DELETE ON TABLE memory.day_table TO psimem_writer;

GRANT SELECT ON TABLE bi.hippocampus_daily TO psimem_bi;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.sessions TO psimem_admin;
GRANT SELECT,INSERT,UPDATE ON TABLE memory.sessions TO psimem_writer;
GRANT SELECT ON TABLE memory.sessions TO psimem_reader;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE memory.users TO psimem_admin;
GRANT SELECT ON TABLE memory.users TO psimem_writer;
GRANT SELECT ON TABLE memory.users TO psimem_reader;

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.applied_sql TO psimem_admin;

GRANT SELECT ON TABLE ops.settings TO psimem_writer;
GRANT SELECT ON TABLE ops.settings TO psimem_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE ops.settings TO psimem_admin;
