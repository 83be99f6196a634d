-- Integrity where ψ data enters: every psi_frames row's CRC-32C and blob header, and
-- every utterance's uttr_hash (SipHash-2-4-128 of its turn's canonical text, keyed by
-- the turn's entry_id). A refused row names the utterance and time; a refused COPY or
-- batch leaves nothing written.

CREATE OR REPLACE FUNCTION psi._psi_frames_check()
RETURNS trigger
LANGUAGE plpython3u
SET search_path = pg_catalog, public, pg_temp
AS $$
if 'psi_codec_load' not in GD:
    plpy.execute("SELECT psi._codec_install()")
codec = GD['psi_codec_load']()

import datetime
new = TD['new']
blob = new['psi_blob']
uttr = new['uttr_hash'].hex() if new['uttr_hash'] is not None else 'NULL'
ts = new['ts_epoch_ms']
where = 'utterance %s band %s at ts_epoch_ms %s (%s)' % (
    uttr, new['band'], ts,
    datetime.datetime.fromtimestamp(ts / 1000, datetime.timezone.utc).isoformat(timespec='milliseconds')
    if ts is not None and -62135596800000 < ts < 253402300799000 else 'out of range')
if blob is None or new['integrity_crc'] is None:
    plpy.error('psi_blob, integrity_crc: must not be NULL for %s' % where, sqlstate='23502')
crc = codec['crc32c'](blob)
if crc != new['integrity_crc']:
    plpy.error('psi_blob: corrupt frame refused for %s: integrity_crc is %d but CRC-32C of the blob is %d'
               % (where, new['integrity_crc'], crc), sqlstate='XX001')
try:
    version, kind, n, frames = codec['blob_info'](blob)
except codec['CodecError'] as e:
    plpy.error('psi_blob: %s for %s' % (e, where), sqlstate='22P03')
if frames != new['frame_count']:
    plpy.error('frame_count: row says %s but the blob holds %d frames for %s' % (new['frame_count'], frames, where),
               sqlstate='23514')
return None
$$;
COMMENT ON FUNCTION psi._psi_frames_check() IS
'BEFORE INSERT/UPDATE trigger on psi.psi_frames: refuses a row whose integrity_crc is not the CRC-32C of psi_blob (data_corrupted, naming the utterance, band and time), whose blob header is unreadable or of an unknown codec version, or whose frame_count differs from the blob''s.';
REVOKE ALL ON FUNCTION psi._psi_frames_check() FROM PUBLIC;

DROP TRIGGER IF EXISTS psi_frames_integrity ON psi.psi_frames;
CREATE TRIGGER psi_frames_integrity
    BEFORE INSERT OR UPDATE OF psi_blob, integrity_crc, frame_count ON psi.psi_frames
    FOR EACH ROW EXECUTE FUNCTION psi._psi_frames_check();

CREATE OR REPLACE FUNCTION psi._utterances_check()
RETURNS trigger
LANGUAGE plpython3u
SET search_path = pg_catalog, public, pg_temp
AS $$
if 'psi_codec_load' not in GD:
    plpy.execute("SELECT psi._codec_install()")
codec = GD['psi_codec_load']()

import uuid
new = TD['new']
if new['entry_id'] is None:
    # An utterance whose turn is not here: retention deleted it (ON DELETE SET NULL leaves
    # such rows), or a .psiarc import brought the utterance into a database that never held
    # the turn. There is no text to check the hash against; the realtime writer always names
    # its turn, so its rows are always checked.
    return None
plan = GD.get('psi_turn_plan')
if plan is None:
    plan = GD['psi_turn_plan'] = plpy.prepare(
        "SELECT content, user_id FROM memory.day_table WHERE entry_id = $1", ["uuid"])
rows = plpy.execute(plan, [new['entry_id']])
if not rows:
    plpy.error('entry_id: unknown turn %s' % new['entry_id'], sqlstate='23503')
if str(rows[0]['user_id']) != str(new['user_id']):
    plpy.error('user_id: turn %s belongs to another user' % new['entry_id'], sqlstate='42501')
want = codec['utterance_hash'](uuid.UUID(new['entry_id']).bytes, rows[0]['content'])
if new['uttr_hash'] != want:
    plpy.error('uttr_hash: %s is not SipHash-2-4-128 of turn %s''s canonical text (expected %s)'
               % (new['uttr_hash'].hex() if new['uttr_hash'] else 'NULL', new['entry_id'], want.hex()),
               sqlstate='23514')
return None
$$;
COMMENT ON FUNCTION psi._utterances_check() IS
'BEFORE INSERT trigger on psi.utterances: a named turn must exist and belong to the utterance''s user, and uttr_hash must be SipHash-2-4-128 of the turn''s canonical text keyed by its entry_id. An utterance without entry_id (its turn retired by retention, or imported from a .psiarc into a database without the turn) has nothing to check against and is accepted.';
REVOKE ALL ON FUNCTION psi._utterances_check() FROM PUBLIC;

DROP TRIGGER IF EXISTS utterances_check ON psi.utterances;
CREATE TRIGGER utterances_check
    BEFORE INSERT ON psi.utterances
    FOR EACH ROW EXECUTE FUNCTION psi._utterances_check();
