-- The journal of the turn protocol (spec 001 sections 1, 2 and 7): one entry of at most 70
-- words per turn with its lifecycle stage, conclusion and the cards reflected on; a meta-layer
-- entry every kernel.meta_every turns; stage transitions that follow the spec's triggers,
-- each recorded; compaction of old entries into one summary per period.

CREATE OR REPLACE FUNCTION kernel._stage(p_user_id uuid)
RETURNS TABLE (stage text, before_retrospective text, turns_since_retrospective int)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    RETURN QUERY WITH t AS (SELECT s.to_stage, s.from_stage, s.turn, s.at, s.id FROM kernel.stage_transition s WHERE s.user_id = p_user_id),
    cur AS (SELECT t.to_stage FROM t ORDER BY t.turn DESC, t.at DESC, t.id DESC LIMIT 1),
    retro AS (SELECT t.from_stage, t.turn FROM t WHERE t.to_stage = 'Retrospective Innovation'
              ORDER BY t.turn DESC, t.at DESC, t.id DESC LIMIT 1),
    last_turn AS (SELECT coalesce(max(j.turn), 0) AS turn FROM kernel.journal j WHERE j.user_id = p_user_id)
    SELECT (SELECT to_stage FROM cur), (SELECT from_stage FROM retro),
           (SELECT turn FROM last_turn) - coalesce((SELECT turn FROM retro), 0);
END
$$;
COMMENT ON FUNCTION kernel._stage(uuid) IS
'Internal. A user''s lifecycle stage now (NULL before the first journal entry), the stage the last Retrospective Innovation came from, and the turns journaled since it (since the start if none).';
REVOKE ALL ON FUNCTION kernel._stage(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._stage(uuid) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._evidence_list(p_evidence jsonb, p_field text, p_need int, p_move text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_items jsonb := p_evidence -> p_field;
    v_got int := CASE WHEN jsonb_typeof(v_items) = 'array'
                      THEN (SELECT count(*) FROM jsonb_array_elements(v_items) x WHERE jsonb_typeof(x) = 'string' AND x #>> '{}' ~ '\S')
                      ELSE 0 END;
BEGIN
    IF v_got < p_need THEN
        RAISE EXCEPTION 'p_evidence: % needs p_evidence.% as a list of at least % non-empty texts, got %', p_move, p_field, p_need, v_got
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION kernel._evidence_list(jsonb, text, int, text) IS
'Internal. Refuses a stage move whose evidence lacks a list of at least p_need non-empty texts under p_field.';
REVOKE ALL ON FUNCTION kernel._evidence_list(jsonb, text, int, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._evidence_list(jsonb, text, int, text) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._stage_trigger(p_user_id uuid, p_to text, p_evidence jsonb)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_order text[] := ARRAY['Ideation', 'Data Acquisition', 'Exploration', 'Synthesis', 'Productionization'];
    v_now record;
    v_base text;
    v_next text;
    v_every int := (ops.setting('kernel.retrospective_every'))::int;
    v_remix text := p_evidence ->> 'remix_of';
BEGIN
    SELECT * INTO v_now FROM kernel._stage(p_user_id);
    IF v_now.stage IS NULL THEN
        IF p_to <> 'Ideation' THEN
            RAISE EXCEPTION 'p_stage: a lifecycle starts at Ideation (spec 001 section 7), got %', p_to
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN 'start';
    ELSIF p_to = v_now.stage THEN
        RETURN NULL;
    ELSIF p_to = 'Retrospective Innovation' THEN
        IF v_now.turns_since_retrospective < v_every THEN
            RAISE EXCEPTION 'p_stage: Retrospective Innovation comes every % turns; % journaled since the last (or the start)',
                v_every, v_now.turns_since_retrospective USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_remix IS NULL OR v_remix !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
           OR NOT (EXISTS (SELECT 1 FROM kernel.card c WHERE c.id = v_remix::uuid AND c.user_id = p_user_id)
                   OR EXISTS (SELECT 1 FROM kernel.journal j WHERE j.id = v_remix::uuid AND j.user_id = p_user_id)) THEN
            RAISE EXCEPTION 'p_evidence: Retrospective Innovation remixes an older summary: give p_evidence.remix_of, the id of one of this user''s cards or journal entries'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN format('every %s turns: remix of %s', v_every, v_remix);
    END IF;
    v_base := CASE WHEN v_now.stage = 'Retrospective Innovation' THEN v_now.before_retrospective ELSE v_now.stage END;
    v_next := v_order[array_position(v_order, v_base) + 1];
    IF p_to = v_base THEN
        RETURN 'back from Retrospective Innovation';
    ELSIF p_to IS DISTINCT FROM v_next THEN
        RAISE EXCEPTION 'p_stage: from % the lifecycle moves on to %Retrospective Innovation (spec 001 section 7), got %',
            v_now.stage, CASE WHEN v_next IS NOT NULL THEN v_next || ' or ' ELSE '' END
                         || CASE WHEN v_now.stage = 'Retrospective Innovation' THEN 'back to ' || v_base || ' or ' ELSE '' END, p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CASE v_next
    WHEN 'Data Acquisition' THEN
        PERFORM kernel._evidence_list(p_evidence, 'unknowns', 2, 'Ideation -> Data Acquisition (once 2 or more unknowns)');
        RETURN 'at least 2 unknowns';
    WHEN 'Exploration' THEN
        PERFORM kernel._evidence_list(p_evidence, 'approaches', 2, 'Data Acquisition -> Exploration (once 2 or more viable approaches)');
        RETURN 'at least 2 viable approaches';
    WHEN 'Synthesis' THEN
        PERFORM kernel._evidence_list(p_evidence, 'compared', 2, 'Exploration -> Synthesis (once variants are compared)');
        RETURN 'variants compared';
    ELSE  -- Productionization
        IF coalesce(p_evidence ->> 'definition_of_done', '') !~ '\S' THEN
            RAISE EXCEPTION 'p_evidence: Synthesis -> Productionization (once a definition of done exists) needs p_evidence.definition_of_done'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN 'a definition of done exists';
    END CASE;
END
$$;
COMMENT ON FUNCTION kernel._stage_trigger(uuid, text, jsonb) IS
'Internal. Whether a user''s lifecycle may move to p_to now, and by which trigger of spec 001 section 7 (NULL: no move). A lifecycle starts at Ideation; then Ideation -> Data Acquisition needs p_evidence.unknowns (2 or more), -> Exploration p_evidence.approaches (2 or more), -> Synthesis p_evidence.compared (2 or more variants), -> Productionization p_evidence.definition_of_done; Retrospective Innovation comes at most every kernel.retrospective_every turns and needs p_evidence.remix_of (a card or journal entry of the user), and returns to the stage it came from (or moves on from it). Anything else is refused naming the allowed moves.';
REVOKE ALL ON FUNCTION kernel._stage_trigger(uuid, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._stage_trigger(uuid, text, jsonb) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel._checked_summary(p_value text, p_field text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_words int := kernel._word_count(p_value);
BEGIN
    IF p_value IS NULL OR p_value !~ '\S' THEN
        RAISE EXCEPTION '%: must not be empty', p_field USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_words > 70 THEN
        RAISE EXCEPTION '%: must be at most 70 words (spec 001), got % words', p_field, v_words
            USING ERRCODE = 'string_data_right_truncation';
    END IF;
    RETURN p_value;
END
$$;
COMMENT ON FUNCTION kernel._checked_summary(text, text) IS
'Internal. A journal summary: not empty, at most 70 words (spec 001); the error names p_field and the count.';
REVOKE ALL ON FUNCTION kernel._checked_summary(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel._checked_summary(text, text) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.journal(
    p_stage text, p_summary text, p_conclusion text DEFAULT '', p_reflected_ids uuid[] DEFAULT '{}',
    p_user_id uuid DEFAULT NULL, p_evidence jsonb DEFAULT NULL, p_at timestamptz DEFAULT NULL)
RETURNS TABLE (journal_id uuid, turn int, stage text, transition text, meta_layer_due boolean,
               retrospective_due boolean, patch text)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user uuid := kernel._user(coalesce(p_user_id, memory._acting_user()));
    v_at timestamptz := kernel._checked_time(p_at, 'p_at');
    v_summary text := kernel._checked_summary(p_summary, 'p_summary');
    v_conclusion text := coalesce(kernel._checked_text(p_conclusion, 'p_conclusion', false), '');
    v_reflected uuid[] := ARRAY(SELECT DISTINCT r FROM unnest(coalesce(p_reflected_ids, '{}')) r WHERE r IS NOT NULL ORDER BY r);
    v_missing uuid;
    v_from text;
    v_trigger text;
    v_since timestamptz;
    v_state record;
    v_turn int;
    v_id uuid;
BEGIN
    IF p_stage IS NULL OR p_stage NOT IN ('Ideation', 'Data Acquisition', 'Exploration', 'Synthesis', 'Productionization',
                                          'Retrospective Innovation') THEN
        RAISE EXCEPTION 'p_stage: must be one of Ideation, Data Acquisition, Exploration, Synthesis, Productionization, Retrospective Innovation (got %)',
            quote_nullable(p_stage) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_evidence IS NOT NULL AND jsonb_typeof(p_evidence) <> 'object' THEN
        RAISE EXCEPTION 'p_evidence: must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT r INTO v_missing FROM unnest(v_reflected) r
    WHERE NOT EXISTS (SELECT 1 FROM kernel.card c WHERE c.id = r AND c.user_id = v_user) LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'p_reflected_ids: unknown card %', v_missing USING ERRCODE = 'foreign_key_violation';
    END IF;

    PERFORM kernel._lock_user(v_user);  -- one turn number per entry, also with two writers at once
    v_from := (SELECT s.stage FROM kernel._stage(v_user) s);
    v_trigger := kernel._stage_trigger(v_user, p_stage, coalesce(p_evidence, '{}'));
    -- The per-turn patch covers what changed since the previous entry was written.
    SELECT coalesce(max(j.changed_at), '-infinity') INTO v_since FROM kernel.journal j WHERE j.user_id = v_user;
    v_turn := coalesce((SELECT max(j.turn) FROM kernel.journal j WHERE j.user_id = v_user), 0) + 1;
    INSERT INTO kernel.journal AS j (user_id, stage, summary, conclusion, created_at, kind, turn, reflected_ids)
    VALUES (v_user, p_stage, v_summary, v_conclusion, v_at, 'turn', v_turn, v_reflected)
    RETURNING j.id INTO v_id;
    IF v_trigger IS NOT NULL THEN
        INSERT INTO kernel.stage_transition (user_id, from_stage, to_stage, turn, journal_id, trigger, evidence, at)
        VALUES (v_user, v_from, p_stage, v_turn, v_id, v_trigger, coalesce(p_evidence, '{}'), v_at);
        transition := concat_ws(' -> ', v_from, p_stage) || ' (' || v_trigger || ')';
    END IF;
    journal_id := v_id;
    turn := v_turn;
    stage := p_stage;
    SELECT * INTO v_state FROM kernel._stage(v_user);
    meta_layer_due := v_turn - coalesce((SELECT max(j.turn) FROM kernel.journal j WHERE j.user_id = v_user AND j.kind = 'meta'), 0)
                      >= (ops.setting('kernel.meta_every'))::int;
    retrospective_due := p_stage <> 'Retrospective Innovation'
                         AND v_state.turns_since_retrospective >= (ops.setting('kernel.retrospective_every'))::int;
    IF (kernel._config(v_user) ->> 'emit_auto_on')::boolean THEN
        patch := kernel.export_patch(v_user, v_since);
    END IF;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION kernel.journal(text, text, text, uuid[], uuid, jsonb, timestamptz) IS
'Appends the journal entry that ends a turn (spec 001 section 1, step 5): its lifecycle stage, a summary of at most 70 words (refused naming p_summary and the count), a conclusion and the cards reflected on (each must be the user''s). The user is p_user_id, else the one this session acts for. A stage other than the current one is a transition, allowed only by the spec''s triggers with p_evidence (see kernel._stage_trigger) and recorded in kernel.stage_transition. Returns the entry, its turn number, the transition if any, whether a meta-layer entry (kernel.write_meta_layer) and a Retrospective Innovation are due, and, when the user''s emit_auto_on is true (the default), the idempotent SQL patch of everything changed since the previous entry.';
REVOKE ALL ON FUNCTION kernel.journal(text, text, text, uuid[], uuid, jsonb, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.journal(text, text, text, uuid[], uuid, jsonb, timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.write_meta_layer(
    p_user_id uuid, p_summary text DEFAULT NULL, p_patterns text[] DEFAULT NULL, p_contradictions text[] DEFAULT NULL,
    p_decisions text[] DEFAULT NULL, p_at timestamptz DEFAULT NULL)
RETURNS TABLE (journal_id uuid, turn int, summary text, detail jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_at timestamptz := kernel._checked_time(p_at, 'p_at');
    v_every int := (ops.setting('kernel.meta_every'))::int;
    v_turn int;
    v_from int;
    v_summary text;
    v_detail jsonb;
    v_id uuid;
BEGIN
    PERFORM kernel._lock_user(v_user);
    v_turn := coalesce((SELECT max(j.turn) FROM kernel.journal j WHERE j.user_id = v_user AND j.kind = 'turn'), 0);
    v_from := coalesce((SELECT max(j.turn) FROM kernel.journal j WHERE j.user_id = v_user AND j.kind = 'meta'), 0) + 1;
    IF v_turn - v_from + 1 < v_every THEN
        RAISE EXCEPTION 'turn: a meta-layer entry comes every % turns; % journaled since the last one', v_every, v_turn - v_from + 1
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- What the caller does not say is synthesised from the turns since the last meta layer:
    -- patterns are the tags most reflected on, contradictions the open ones, decisions the conclusions.
    p_patterns := coalesce(p_patterns, ARRAY(
        SELECT format('%s (%s)', t.tag, count(*)) FROM kernel.journal j, unnest(j.reflected_ids) r(id)
        JOIN kernel.card c ON c.id = r.id, unnest(c.tags) t(tag)
        WHERE j.user_id = v_user AND j.kind = 'turn' AND j.turn BETWEEN v_from AND v_turn
        GROUP BY t.tag ORDER BY count(*) DESC, t.tag LIMIT 5));
    p_contradictions := coalesce(p_contradictions, ARRAY(
        SELECT format('%s <> %s', left(k.summary_a, 80), left(k.summary_b, 80)) FROM kernel.contradictions(v_user) k));
    p_decisions := coalesce(p_decisions, ARRAY(
        SELECT j.conclusion FROM kernel.journal j
        WHERE j.user_id = v_user AND j.kind = 'turn' AND j.turn BETWEEN v_from AND v_turn AND j.conclusion ~ '\S'
        ORDER BY j.turn));
    v_summary := CASE WHEN p_summary IS NOT NULL THEN kernel._checked_summary(p_summary, 'p_summary')
                      ELSE kernel._first_words(format('Turns %s-%s. Patterns: %s. Open contradictions: %s. Decisions: %s',
                               v_from, v_turn, coalesce(nullif(array_to_string(p_patterns, ', '), ''), 'none'),
                               cardinality(p_contradictions), coalesce(nullif(array_to_string(p_decisions, '; '), ''), 'none')), 70) END;
    v_detail := jsonb_build_object('patterns', to_jsonb(p_patterns), 'contradictions', to_jsonb(p_contradictions),
                                   'decisions', to_jsonb(p_decisions), 'turns', jsonb_build_array(v_from, v_turn));
    INSERT INTO kernel.journal AS j (user_id, stage, summary, conclusion, created_at, kind, turn, detail)
    VALUES (v_user, (SELECT s.stage FROM kernel._stage(v_user) s), v_summary, '', v_at, 'meta', v_turn, v_detail)
    RETURNING j.id INTO v_id;
    journal_id := v_id;
    turn := v_turn;
    summary := v_summary;
    detail := v_detail;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION kernel.write_meta_layer(uuid, text, text[], text[], text[], timestamptz) IS
'Writes the meta-layer entry that spec 001 section 2 asks for every kernel.meta_every (4) turns: patterns, contradictions, decisions. Refused until that many turns were journaled since the last one. Parts not given are synthesised from the turns since: the tags of the cards they reflected on most (patterns), the open contradictions, the turns'' conclusions (decisions); so is a summary (at most 70 words). Returns the entry.';
REVOKE ALL ON FUNCTION kernel.write_meta_layer(uuid, text, text[], text[], text[], timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.write_meta_layer(uuid, text, text[], text[], text[], timestamptz) TO psimem_writer, psimem_admin;

CREATE OR REPLACE FUNCTION kernel.compact_journal(p_user_id uuid, p_now timestamptz DEFAULT NULL)
RETURNS TABLE (period_start timestamptz, entries int, journal_id uuid)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_user uuid := kernel._user(p_user_id);
    v_now timestamptz := kernel._clock(p_now);
    v_cutoff timestamptz := v_now - (ops.setting('kernel.journal_keep') #>> '{}')::interval;
    v_period timestamptz;
    v_old kernel.journal;
    v_new kernel.journal;
    v_ids uuid[];
    v_entries int;
BEGIN
    PERFORM kernel._lock_user(v_user);
    FOR v_period IN
        SELECT DISTINCT date_trunc('week', j.created_at) FROM kernel.journal j
        WHERE j.user_id = v_user AND j.kind IN ('turn', 'meta') AND j.created_at < v_cutoff ORDER BY 1
    LOOP
        SELECT * INTO v_old FROM kernel.journal j
        WHERE j.user_id = v_user AND j.kind = 'compaction' AND j.period_start = v_period;
        SELECT array_agg(j.id ORDER BY j.turn, j.created_at) INTO v_ids FROM kernel.journal j
        WHERE j.user_id = v_user AND j.kind IN ('turn', 'meta') AND j.created_at < v_cutoff
          AND date_trunc('week', j.created_at) = v_period;
        v_entries := cardinality(v_ids) + coalesce((v_old.detail ->> 'entries')::int, 0);
        -- The week's entry: a compaction entry already there (late entries are folded in) and the
        -- entries now old enough, in turn order.
        SELECT v_user, (array_agg(x.stage ORDER BY x.o DESC))[1], kernel._summarise(array_agg(x.summary ORDER BY x.o)),
               coalesce(kernel._summarise(array_agg(x.conclusion ORDER BY x.o) FILTER (WHERE x.conclusion ~ '\S')), ''),
               max(x.created_at), max(x.turn),
               ARRAY(SELECT DISTINCT r FROM kernel.journal y, unnest(y.reflected_ids) r WHERE y.id = ANY(v_ids || v_old.id) ORDER BY r),
               jsonb_build_object('entries', v_entries, 'period', 'week', 'period_end', v_period + interval '1 week',
                                  'first_turn', least((v_old.detail ->> 'first_turn')::int, min(x.turn) FILTER (WHERE x.o > 0)),
                                  'last_turn', max(x.turn))
        INTO v_new.user_id, v_new.stage, v_new.summary, v_new.conclusion, v_new.created_at, v_new.turn, v_new.reflected_ids,
             v_new.detail
        FROM (SELECT j.stage, j.summary, j.conclusion, j.created_at, j.turn,
                     CASE WHEN j.kind = 'compaction' THEN 0 ELSE 1 + array_position(v_ids, j.id) END AS o
              FROM kernel.journal j WHERE j.id = ANY(v_ids || v_old.id)) x;
        INSERT INTO kernel.journal AS j (user_id, stage, summary, conclusion, created_at, kind, turn, reflected_ids, detail, period_start)
        VALUES (v_user, v_new.stage, v_new.summary, v_new.conclusion, v_new.created_at, 'compaction', v_new.turn,
                v_new.reflected_ids, v_new.detail, v_period)
        ON CONFLICT (user_id, period_start) WHERE kind = 'compaction' DO UPDATE SET
            stage = EXCLUDED.stage, summary = EXCLUDED.summary, conclusion = EXCLUDED.conclusion,
            created_at = EXCLUDED.created_at, turn = EXCLUDED.turn, reflected_ids = EXCLUDED.reflected_ids,
            detail = EXCLUDED.detail
        RETURNING j.id INTO v_new.id;
        DELETE FROM kernel.journal j WHERE j.id = ANY(v_ids);
        period_start := v_period;
        entries := v_entries;
        journal_id := v_new.id;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION kernel.compact_journal(uuid, timestamptz) IS
'Compacts a user''s journal into periodic summaries (spec 001 section 6): turn and meta-layer entries older than kernel.journal_keep at p_now are replaced, week by week, by one compaction entry (summary and conclusion by the kernel summariser, at most 70 words each; the last stage, the last turn number, every card reflected on; detail: entries, first and last turn). Entries arriving later for a compacted week are folded into its entry. Idempotent: a second run finds nothing to compact. Stage transitions keep their turn but lose their link to a compacted entry. Returns each week compacted, its entry count and entry.';
REVOKE ALL ON FUNCTION kernel.compact_journal(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel.compact_journal(uuid, timestamptz) TO psimem_writer, psimem_admin;
