"""ψ frames in SQL: CRC refusal, SQL decode equals Python decode, time-range reads, RLS."""
import uuid

import numpy as np
import psycopg
import pytest

from helpers import new_session, new_user, record
from realtime import codec_core as cc


def utterance(conn, text="Hello there, how was your day?", n=256, ref=None):
    user = new_user(conn, ref or f"psi-{uuid.uuid4()}")
    session = new_session(conn, user)
    entry = record(conn, session, content=text, role="assistant")
    h = cc.utterance_hash(uuid.UUID(str(entry)).bytes, text)
    conn.execute("INSERT INTO psi.utterances (uttr_hash, user_id, entry_id, mode, oscillator_count, codec_version, "
                 "sample_rate, started_at_ms) VALUES (%s, %s, %s, 'analysis', %s, 1, 16000, 1700000000000)",
                 (h, user, entry, n))
    return user, entry, h


def insert_run(conn, user, h, ts, blob, frames, band=0, crc=None):
    conn.execute("INSERT INTO psi.psi_frames (uttr_hash, user_id, ts_epoch_ms, band, duration_ms, frame_count, "
                 "psi_blob, integrity_crc) VALUES (%s, %s, %s, %s, 20, %s, %s, %s)",
                 (h, user, ts, band, frames, blob, cc.crc32c(blob) if crc is None else crc))


def test_sql_decode_equals_python_decode_for_both_codecs(conn):
    rng = np.random.default_rng(7)
    user, _, h = utterance(conn)
    ph = rng.uniform(0, 2 * np.pi, (5, 256)).astype(np.float32)
    amp = rng.lognormal(-4, 2, (5, 256)).astype(np.float32)
    for ts, version in ((1700000000000, 0), (1700000000100, 1)):
        blob, rp, ra = cc.encode(ph, amp, version)
        insert_run(conn, user, h, ts, blob, 5)
        rows = conn.execute("SELECT frame_no, phases, amplitudes FROM psi.decode_frame(%s)", (blob,)).fetchall()
        dp, da, _ = cc.decode(blob)
        assert [r[0] for r in rows] == list(range(5))
        assert np.array_equal(np.array([r[1] for r in rows], dtype=np.float32), dp)
        assert np.array_equal(np.array([r[2] for r in rows], dtype=np.float32), da)
        assert np.array_equal(dp, rp) and np.array_equal(da, ra)


def test_corrupt_frame_is_refused_naming_utterance_and_time(conn):
    user, _, h = utterance(conn)
    blob, _, _ = cc.encode_v1(np.zeros((2, 256)), np.ones((2, 256)))
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0x01
    with pytest.raises(psycopg.errors.DataCorrupted) as e:
        insert_run(conn, user, h, 1700000000040, bytes(bad), 2, crc=cc.crc32c(blob))
    msg = str(e.value)
    assert h.hex() in msg and "1700000000040" in msg and "2023-11-14T22:13:20.040+00:00" in msg
