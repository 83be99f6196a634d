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
        rows = conn.execute("SELECT frame_no, phases, amplitudes FROM psi.decode_frame(%s, %s)",
                            (blob, cc.crc32c(blob))).fetchall()
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


def test_frames_by_time_range_reads_only_overlapping_runs(conn):
    user, _, h = utterance(conn)
    rng = np.random.default_rng(1)
    t0 = 1700000000000
    for r in range(4):                                   # 4 runs of 50 frames = 4 s
        blob, _, _ = cc.encode_v1(rng.uniform(0, 6, (50, 256)), rng.random((50, 256)))
        insert_run(conn, user, h, t0 + r * 1000, blob, 50)
    got = conn.execute("SELECT ts_epoch_ms FROM psi.frames(%s, 0, %s, %s)", (h, t0 + 1990, t0 + 2040)).fetchall()
    assert [g[0] - t0 for g in got] == [1980, 2000, 2020, 2040]
    conn.execute("SET LOCAL enable_seqscan = off")
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN SELECT * FROM psi.psi_frames f WHERE f.uttr_hash = %s AND f.band = 0 "
        "AND f.ts_epoch_ms <= %s AND f.ts_epoch_ms > %s", (h, t0 + 2040, t0 + 1990 - 10000)))
    assert "psi_frames_natural_key" in plan


def test_verify_finds_a_blob_corrupted_at_rest(conn):
    user, _, h = utterance(conn)
    blob, _, _ = cc.encode_v1(np.zeros((3, 256)), np.ones((3, 256)))
    insert_run(conn, user, h, 1700000000000, blob, 3)
    insert_run(conn, user, h, 1700000000060, blob, 3)
    assert conn.execute("SELECT bool_and(ok), count(*) FROM psi.verify(%s)", (h,)).fetchone() == (True, 2)
    conn.execute("ALTER TABLE psi.psi_frames DISABLE TRIGGER psi_frames_integrity")   # a disk flips a bit
    conn.execute("UPDATE psi.psi_frames SET psi_blob = set_byte(psi_blob, 30, get_byte(psi_blob, 30) # 1) "
                 "WHERE uttr_hash = %s AND ts_epoch_ms = 1700000000060", (h,))
    bad = conn.execute("SELECT ts_epoch_ms, problem FROM psi.verify(%s) WHERE NOT ok", (h,)).fetchall()
    assert len(bad) == 1 and bad[0][0] == 1700000000060 and bad[0][1].startswith("integrity_crc")


def test_utterance_hash_must_match_the_turn_text(conn):
    user = new_user(conn, f"psi-{uuid.uuid4()}")
    entry = record(conn, new_session(conn, user), content="The real words.", role="assistant")
    wrong = cc.utterance_hash(uuid.UUID(str(entry)).bytes, "Other words.")
    with pytest.raises(psycopg.errors.CheckViolation, match="uttr_hash: .* is not SipHash-2-4-128"):
        conn.execute("INSERT INTO psi.utterances (uttr_hash, user_id, entry_id, mode, oscillator_count, codec_version, "
                     "sample_rate, started_at_ms) VALUES (%s, %s, %s, 'analysis', 256, 1, 16000, 0)",
                     (wrong, user, entry))


def test_frames_are_visible_only_to_the_user_the_session_acts_for(conn):
    a, _, ha = utterance(conn)
    b, _, hb = utterance(conn)
    for user, h in ((a, ha), (b, hb)):
        blob, _, _ = cc.encode_v1(np.zeros((1, 256)), np.ones((1, 256)))
        insert_run(conn, user, h, 1700000000000, blob, 1)
    conn.execute("SET LOCAL ROLE psimem_reader")
    conn.execute("SELECT set_config('psimem.user_id', %s, true)", (str(a),))
    seen = {bytes(r[0]) for r in conn.execute("SELECT uttr_hash FROM psi.psi_frames")}
    assert ha in seen and hb not in seen
    assert conn.execute("SELECT count(*) FROM psi.verify(%s)", (hb,)).fetchone()[0] == 0


def test_centroids_fade_then_go_on_a_controlled_clock(conn):
    from datetime import datetime, timezone
    user, _, h = utterance(conn)
    now = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    now_ms = int(now.timestamp() * 1000)
    for age_s in (10, 59, 90, 120, 200):
        conn.execute("INSERT INTO psi.band_centroids (uttr_hash, user_id, band, ts_epoch_ms, centroid) "
                     "VALUES (%s, %s, 0, %s, ARRAY[1,2,3]::real[])", (h, user, now_ms - age_s * 1000))
    assert conn.execute("SELECT * FROM psi.decay_centroids(%s)", (now,)).fetchone() == (2, 1)
    w = dict(conn.execute("SELECT (%s - ts_epoch_ms) / 1000, weight FROM psi.band_centroids WHERE uttr_hash = %s",
                          (now_ms, h)).fetchall())
    # keep 60 s at full weight, then half-life 30 s; below 0.05 (age 200 s) pruned
    assert w[10] == 1 and w[59] == 1 and w[90] == pytest.approx(0.5) and w[120] == pytest.approx(0.25)
    assert 200 not in w
    assert conn.execute("SELECT * FROM psi.decay_centroids(%s)", (now,)).fetchone() == (0, 0)   # idempotent
    later = conn.execute("SELECT * FROM psi.decay_centroids(%s + interval '60 seconds')", (now,)).fetchone()
    assert later == (4, 0)   # 70, 119, 150 and 180 s old now: all fade, the oldest to 0.0625 (kept)


def test_a_centroid_left_for_years_is_pruned_not_an_underflow(conn):
    user, _, h = utterance(conn)
    conn.execute("INSERT INTO psi.band_centroids (uttr_hash, user_id, band, ts_epoch_ms, centroid) "
                 "VALUES (%s, %s, 1, 1000000000000, '{1,2}')", (h, user))   # 2001
    faded, pruned = conn.execute("SELECT * FROM psi.decay_centroids(now())").fetchone()
    assert pruned >= 1 and conn.execute("SELECT count(*) FROM psi.band_centroids WHERE uttr_hash = %s",
                                        (h,)).fetchone()[0] == 0
