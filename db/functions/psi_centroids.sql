-- Band centroids (spec 003 working memory): full weight for psi.centroid_keep_ms, then an
-- exponential fade with half-life psi.centroid_half_life_ms; pruned below
-- psi.centroid_min_weight. pg_cron runs psi.decay_centroids() (ops.install_cron_jobs).

CREATE OR REPLACE FUNCTION psi.decay_centroids(p_now timestamptz DEFAULT now())
RETURNS TABLE (faded bigint, pruned bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_now_ms bigint := (extract(epoch FROM p_now) * 1000)::bigint;
    v_keep bigint := (ops.setting('psi.centroid_keep_ms'))::bigint;
    v_half double precision := (ops.setting('psi.centroid_half_life_ms'))::float8;
    v_min double precision := (ops.setting('psi.centroid_min_weight'))::float8;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('psimem.psi.decay_centroids')) THEN
        faded := 0; pruned := 0;
        RETURN NEXT;
        RETURN;
    END IF;
    IF v_half <= 0 OR v_min <= 0 OR v_min > 1 OR v_keep < 0 THEN
        RAISE EXCEPTION 'psi.centroid_*: keep_ms >= 0, half_life_ms > 0 and 0 < min_weight <= 1 required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- weight is a function of age alone, so running twice (or late) gives the same rows
    -- weight < min  <=>  half-lives elapsed > log2(1 / min): compared on the exponent, because
    -- 0.5 ^ (half-lives) underflows (an error, not 0) for a centroid left years behind
    DELETE FROM psi.band_centroids c
    WHERE c.ts_epoch_ms < v_now_ms - v_keep
      AND (v_now_ms - v_keep - c.ts_epoch_ms) / v_half > log(2, (1 / v_min)::numeric)::float8;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    UPDATE psi.band_centroids c
    SET weight = power(0.5, (v_now_ms - v_keep - c.ts_epoch_ms) / v_half)
    WHERE c.ts_epoch_ms < v_now_ms - v_keep
      AND c.weight IS DISTINCT FROM power(0.5, (v_now_ms - v_keep - c.ts_epoch_ms) / v_half)::real;
    GET DIAGNOSTICS faded = ROW_COUNT;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION psi.decay_centroids(timestamptz) IS
'Fades band centroids older than psi.centroid_keep_ms: weight = 0.5 ^ ((age - keep) / psi.centroid_half_life_ms), and deletes those below psi.centroid_min_weight. Weight depends only on age at p_now, so the job is idempotent; advisory-locked; pg_cron runs it every minute. Returns rows faded and pruned.';
REVOKE ALL ON FUNCTION psi.decay_centroids(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION psi.decay_centroids(timestamptz) TO psimem_admin;
