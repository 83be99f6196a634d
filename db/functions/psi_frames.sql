-- Reading ψ frames in SQL: decode a blob, frames of an utterance by band and time,
-- re-check an utterance's integrity. The decoder is the codec module psi._codec_source()
-- returns (realtime/codec_core.py), exec'd once per session.

CREATE OR REPLACE FUNCTION psi.decode_frame(p_blob bytea, p_crc bigint)
RETURNS TABLE (frame_no int, phases real[], amplitudes real[], state real[])
LANGUAGE plpython3u IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
if 'psi_codec_load' not in GD:
    plpy.execute("SELECT psi._codec_install()")
codec = GD['psi_codec_load']()

if p_blob is None or p_crc is None:
    plpy.error('p_blob, p_crc: must not be NULL (every decode checks the CRC-32C)', sqlstate='22004')
try:
    ph, amp, vec = codec['decode'](p_blob, p_crc)
except codec['CodecError'] as e:
    plpy.error(str(e), sqlstate='22P03')
if vec is not None:
    return [(i, None, None, v.tolist()) for i, v in enumerate(vec)]
return [(i, ph[i].tolist(), amp[i].tolist(), None) for i in range(ph.shape[0])]
$$;
COMMENT ON FUNCTION psi.decode_frame(bytea, bigint) IS
'Decodes one psi_blob (any codec version) into its frames: frame_no within the run, and phases and amplitudes (micro) or the state vector (meso: 32-d, macro: tempo and levels). p_crc is the row''s integrity_crc: a blob whose CRC-32C differs, whose header or sections are malformed, or that holds bytes beyond its last section raises invalid_binary_representation naming the rule.';
REVOKE ALL ON FUNCTION psi.decode_frame(bytea, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION psi.decode_frame(bytea, bigint) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION psi.frames(
    p_uttr_hash bytea,
    p_band int DEFAULT 0,
    p_from_ms bigint DEFAULT NULL,
    p_to_ms bigint DEFAULT NULL)
RETURNS TABLE (ts_epoch_ms bigint, duration_ms int, phases real[], amplitudes real[], state real[], emo_vec real[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT f.ts_epoch_ms + d.frame_no * f.duration_ms, f.duration_ms::int, d.phases, d.amplitudes, d.state, f.emo_vec
    FROM psi.psi_frames f
    CROSS JOIN LATERAL psi.decode_frame(f.psi_blob, f.integrity_crc) d
    WHERE f.uttr_hash = p_uttr_hash AND f.band = p_band
      -- a run spans at most 10 s (psi_frames_run_span_bounded): bounds the index scan on both sides
      AND (p_to_ms IS NULL OR f.ts_epoch_ms <= p_to_ms)
      AND (p_from_ms IS NULL OR f.ts_epoch_ms > p_from_ms - 10000)
      AND (p_from_ms IS NULL OR f.ts_epoch_ms + (d.frame_no + 1) * f.duration_ms > p_from_ms)
      AND (p_to_ms IS NULL OR f.ts_epoch_ms + d.frame_no * f.duration_ms <= p_to_ms)
    ORDER BY 1
$$;
COMMENT ON FUNCTION psi.frames(bytea, int, bigint, bigint) IS
'The frames of one utterance and band (0 micro, 1 meso, 2 macro) that overlap [p_from_ms, p_to_ms] (epoch ms; NULL = open), one row per frame with its own start time, decoded. Reads only the runs that can overlap the range, through the (uttr_hash, band, ts_epoch_ms) index.';
REVOKE ALL ON FUNCTION psi.frames(bytea, int, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION psi.frames(bytea, int, bigint, bigint) TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION psi.verify(p_uttr_hash bytea)
RETURNS TABLE (band smallint, ts_epoch_ms bigint, frame_count int, stored_crc bigint, computed_crc bigint,
               ok boolean, problem text)
LANGUAGE plpython3u STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
if 'psi_codec_load' not in GD:
    plpy.execute("SELECT psi._codec_install()")
codec = GD['psi_codec_load']()

plan = plpy.prepare("SELECT band, ts_epoch_ms, frame_count, integrity_crc, psi_blob FROM psi.psi_frames "
                    "WHERE uttr_hash = $1 ORDER BY band, ts_epoch_ms", ["bytea"])
out = []
for r in plpy.cursor(plan, [p_uttr_hash]):
    blob = r['psi_blob']
    crc = codec['crc32c'](blob)
    problem = None
    if crc != r['integrity_crc']:
        problem = 'integrity_crc: stored %d, computed %d' % (r['integrity_crc'], crc)
    else:
        try:
            ph, amp, vec = codec['decode'](blob)
            n = (vec if vec is not None else ph).shape[0]
            if n != r['frame_count']:
                problem = 'frame_count: row says %d, blob holds %d' % (r['frame_count'], n)
        except codec['CodecError'] as e:
            problem = str(e)
    out.append((r['band'], r['ts_epoch_ms'], r['frame_count'], r['integrity_crc'], crc, problem is None, problem))
return out
$$;
COMMENT ON FUNCTION psi.verify(bytea) IS
'Re-checks every psi_frames row of one utterance: recomputes CRC-32C of psi_blob against integrity_crc and decodes the blob (frame count, codec rules). One row per stored run; ok is false with the problem named where a check fails. Sees only rows row-level security lets the caller see.';
REVOKE ALL ON FUNCTION psi.verify(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION psi.verify(bytea) TO psimem_writer, psimem_reader, psimem_admin;
