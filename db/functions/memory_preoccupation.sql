CREATE OR REPLACE FUNCTION memory.refresh_preoccupation_centroid(p_user_id uuid, p_as_of timestamptz DEFAULT now())
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_window interval := (ops.setting('preoccupation.window') #>> '{}')::interval;
    v_centroid_id uuid;
BEGIN
    INSERT INTO memory.preoccupation_centroids AS c
        (user_id, universal_centroid, native_centroid, turn_count, window_start, updated_at)
    SELECT p_user_id, l2_normalize(avg(d.universal_embedding)), l2_normalize(avg(d.native_embedding)),
           count(*), p_as_of - v_window, now()
    FROM memory.day_table d
    WHERE d.user_id = p_user_id AND d.role = 'user'
      AND d.created_at > p_as_of - v_window AND d.created_at <= p_as_of
      AND d.universal_embedding IS NOT NULL
    HAVING count(*) > 0
    ON CONFLICT (user_id) DO UPDATE SET
        universal_centroid = EXCLUDED.universal_centroid, native_centroid = EXCLUDED.native_centroid,
        turn_count = EXCLUDED.turn_count, window_start = EXCLUDED.window_start, updated_at = now()
    RETURNING c.centroid_id INTO v_centroid_id;
    IF v_centroid_id IS NULL THEN
        SELECT c.centroid_id INTO v_centroid_id FROM memory.preoccupation_centroids c WHERE c.user_id = p_user_id;
    END IF;
    RETURN v_centroid_id;
END
$$;
COMMENT ON FUNCTION memory.refresh_preoccupation_centroid(uuid, timestamptz) IS
'Recomputes a user''s Preoccupation Centroid: the normalised mean (universal and native) of the user''s own turns (role user) within preoccupation.window before p_as_of. Keeps the previous centroid when the window holds no turns. Returns the centroid id. Interrogative Distance (ID) is the cosine distance of a turn or block to this centroid.';
REVOKE ALL ON FUNCTION memory.refresh_preoccupation_centroid(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory.refresh_preoccupation_centroid(uuid, timestamptz) TO psimem_admin;
