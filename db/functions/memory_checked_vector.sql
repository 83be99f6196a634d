CREATE OR REPLACE FUNCTION memory._finite_vector(p_value real[], p_field text)
RETURNS vector
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_vector vector;
BEGIN
    BEGIN
        v_vector := p_value::vector;
    EXCEPTION WHEN data_exception OR null_value_not_allowed THEN
        -- pgvector refuses NaN, infinity and NULL elements; say which argument held them.
        RAISE EXCEPTION '%: must hold finite numbers only (%)', p_field, SQLERRM USING ERRCODE = 'data_exception';
    END;
    -- A zero vector has no direction: every cosine distance to it is NaN.
    IF vector_norm(v_vector) = 0 THEN
        RAISE EXCEPTION '%: must not be all zeros (cosine distance to it is undefined)', p_field USING ERRCODE = 'data_exception';
    END IF;
    RETURN v_vector;
END
$$;
COMMENT ON FUNCTION memory._finite_vector(real[], text) IS
'Internal. Turns a one-dimensional real[] of a size already checked into a vector, refusing NaN, infinity and NULL elements and all zeros; errors name p_field.';
REVOKE ALL ON FUNCTION memory._finite_vector(real[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._finite_vector(real[], text) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION memory._checked_vector(p_value real[], p_field text, p_space text)
RETURNS vector
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
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
    RETURN memory._finite_vector(p_value, p_field);
END
$$;
COMMENT ON FUNCTION memory._checked_vector(real[], text, text) IS
'Internal. Turns a real[] into a vector after checking it against the installed size of the universal or native space (p_space) and for NaN, infinity and NULL elements and for all zeros; errors name p_field.';
REVOKE ALL ON FUNCTION memory._checked_vector(real[], text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory._checked_vector(real[], text, text) TO psimem_writer, psimem_reader, psimem_admin;
