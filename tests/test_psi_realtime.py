"""The realtime process end to end: voice a turn, store it, replay it, verify it; lose
nothing while the server is down; surprise at a known discontinuity; RLS on frames."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
import wave

import numpy as np
import psycopg
import pytest

from conftest import wait_until_accepting
from helpers import new_session, new_user, record
from realtime import codec_core as cc
from realtime.commands import record as record_turns
from realtime.core import MICRO_MS, Geometry
from realtime.process import Turn, write_wav
from realtime.replay import load, render, verify

PSIMEM = [sys.executable, "-m", "psimem"]


def committed_turn(url, text, ref=None):
    with psycopg.connect(url) as c:
        user = new_user(c, ref or f"psi-rt-{uuid.uuid4()}")
        entry = record(c, new_session(c, user), content=text, role="assistant")
        c.commit()
    return Turn(str(entry), str(user), text)


def drop_user(url, user_id):
    with psycopg.connect(url) as c:
        c.execute("DELETE FROM memory.users WHERE user_id = %s", (user_id,))


def tone_switch(sr=16000, seconds=2.0, at=1.0):
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(3)
    return np.where(t < at, 0.3 * np.sin(2 * np.pi * 440 * t),
                    0.3 * np.sin(2 * np.pi * 1500 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_voiced_turn_is_stored_replayed_and_verified(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PSIMEM_HOME", str(tmp_path / "home"))
    turn = committed_turn(db_url, "That sounds lovely. Tell me more about the garden!")
    r = record_turns(db_url, [turn], 256, spool=tmp_path / "spool.jsonl", quiet=True)
    h = bytes.fromhex(r["utterances"][0]["uttr_hash"])
    with psycopg.connect(db_url) as c:
        stored = load(c, h)
        assert len(stored.phases) == r["frames"] > 50
        assert stored.blob_bytes / len(stored.phases) <= 600              # the codec's speech target
        bands = dict(c.execute("SELECT band, sum(frame_count) FROM psi.psi_frames WHERE uttr_hash = %s GROUP BY 1",
                               (h,)).fetchall())
        assert bands[1] == -(-r["frames"] * MICRO_MS // 250) and bands[2] >= 1   # meso every 250 ms, macro every 2 s
        joined = c.execute("SELECT d.content FROM psi.utterances u JOIN memory.day_table d USING (entry_id) "
                           "WHERE u.uttr_hash = %s", (h,)).fetchone()[0]
        assert joined == turn.content
        v = verify(c, stored, tmp_path / "home" / "psi-live" / f"{h.hex()}.npz", tmp_path / "err.png")
    assert v["frames_stored"] == v["frames_live"] and v["rows_bad"] == 0 and v["rows_checked"] >= 3
    assert v["phase_error_mean_rad"] < 1e-3 and v["phase_error_max_rad"] < 2.5e-3
    assert (tmp_path / "err.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    audio = render(stored)
    live = np.load(tmp_path / "home" / "psi-live" / f"{h.hex()}.npz")
    from realtime.core import synthesise
    ref = synthesise(live["phases"], live["amplitudes"], Geometry(256, 16000))
    assert len(audio) == len(ref) and np.sqrt(np.mean((audio - ref) ** 2)) < 0.02 * np.sqrt(np.mean(ref ** 2))
    drop_user(db_url, turn.user_id)


def test_spool_while_server_is_down_then_recover_without_duplicates(pg_server, db_url, tmp_path):
    """Frames written while the server is stopped go to the spool and reach the database
    once it is back; the batch the writer already committed is not written twice."""
    from realtime.process import Stream, run_streams
    from realtime.writer import PsiWriter

    turns = [committed_turn(db_url, f"Reply number {i}: the weather is fine today.") for i in range(2)]
    spool = tmp_path / "spool.jsonl"
    writer = PsiWriter(db_url, spool, frames_per_row=10, reconnect_every_s=0.0)
    geo = Geometry.for_oscillators(128)
    x = tone_switch(geo.sample_rate, 1.2)
    streams = [Stream(t, 128, "analysis", 1, 1700000000000 + 5000 * i, audio=x) for i, t in enumerate(turns)]
    # first utterance written normally, then the server goes away for the second
    run_streams(streams[:1], writer)
    assert writer.stats["spooled_rows"] == 0
    with pg_server.stopped():
        writer.begin(streams[1].utt)
        while not streams[1].done:
            streams[1].step(writer)
            writer.tick()
        writer.flush()
        assert spool.exists() and writer.stats["spooled_rows"] > 0
        # the spool also holds a batch that *was* committed before the outage (replayed twice)
        writer._spool({"psi_frames": [], "utterances": [streams[0].utt.row()], "surprise_events": [],
                       "band_centroids": []})
    wait_until_accepting(db_url)   # pg_ctl -w can return while the server still says "starting up"
    writer.close()   # reconnects, replays the spool, flushes
    assert not spool.exists() and writer.stats["replayed_rows"] >= writer.stats["spooled_rows"] - 1
    with psycopg.connect(db_url) as c:
        for s in streams:
            n = c.execute("SELECT coalesce(sum(frame_count), 0) FROM psi.psi_frames WHERE uttr_hash = %s AND band = 0",
                          (s.utt.uttr_hash,)).fetchone()[0]
            assert n == s.total
            keys = c.execute("SELECT count(*), count(DISTINCT (band, ts_epoch_ms)) FROM psi.psi_frames "
                             "WHERE uttr_hash = %s", (s.utt.uttr_hash,)).fetchone()
            assert keys[0] == keys[1]
        assert c.execute("SELECT count(*) FROM psi.utterances WHERE uttr_hash = %s",
                         (streams[0].utt.uttr_hash,)).fetchone()[0] == 1
    for t in turns:
        drop_user(db_url, t.user_id)


def test_surprise_event_at_a_known_discontinuity(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PSIMEM_HOME", str(tmp_path / "home"))
    wav = tmp_path / "switch.wav"
    write_wav(wav, tone_switch(16000, 2.0, at=1.0), 16000)
    turn = committed_turn(db_url, "A steady tone, then another.")
    r = record_turns(db_url, [turn], 256, wav=wav, spool=tmp_path / "spool.jsonl", keep_live=False, quiet=True)
    h = bytes.fromhex(r["utterances"][0]["uttr_hash"])
    with psycopg.connect(db_url) as c:
        start = c.execute("SELECT started_at_ms FROM psi.utterances WHERE uttr_hash = %s", (h,)).fetchone()[0]
        events = c.execute("SELECT ts_epoch_ms - %s, epsilon, threshold FROM psi.surprise_events WHERE uttr_hash = %s",
                           (start, h)).fetchall()
    assert events and all(960 <= t <= 1060 for t, _, _ in events), events
    assert all(eps > thr for _, eps, thr in events)
    drop_user(db_url, turn.user_id)


def test_cli_sigterm_flushes_then_replay_writes_wav_and_verifies(env_url, tmp_path):
    import signal
    import time

    turn = committed_turn(env_url, "A long steady answer that will be interrupted.")
    wav = tmp_path / "in.wav"
    write_wav(wav, tone_switch(16000, 6.0, at=3.0), 16000)
    env = {**os.environ, "PSIMEM_HOME": str(tmp_path / "home")}
    p = subprocess.Popen([*PSIMEM, "realtime", "--entry", turn.entry_id, "--wav", str(wav), "--pace"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = []  # a loaded machine can take seconds to start it: wait until it says it is voicing
    while not any("voicing" in line for line in first) and p.poll() is None:
        first.append(p.stderr.readline())
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    err = "".join(first) + err
    assert p.returncode == 130, err
    assert "flushing buffered frames" in err and "peak memory:" in out
    h = out.split()[0]
    frames = int(out.split()[1])
    assert 0 < frames < 300                                  # stopped part-way through 6 s
    with psycopg.connect(env_url) as c:
        stored = c.execute("SELECT sum(frame_count) FROM psi.psi_frames WHERE uttr_hash = %s AND band = 0",
                           (bytes.fromhex(h),)).fetchone()[0]
    assert stored == frames                                  # every frame produced before SIGTERM was written
    r = subprocess.run([*PSIMEM, "replay", h[:12], "--wav", str(tmp_path / "out.wav"), "--verify",
                        "--png", str(tmp_path / "err.png")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "phase error vs live recording: mean" in r.stdout and ", 0 bad" in r.stdout
    with wave.open(str(tmp_path / "out.wav")) as w:
        assert w.getframerate() == 16000 and abs(w.getnframes() - frames * 320) <= 320
    drop_user(env_url, turn.user_id)


def test_staggered_streams_with_spread_encoding_store_the_same_bytes(db_url, tmp_path):
    """Streams arriving on different ticks with different lengths; the writer encodes one
    queued run per tick (a deadline always past), so runs that close together are encoded
    over later ticks, and ends wait for their encodes. Every frame is stored once, in rows
    byte for byte what encoding each run directly gives."""
    from realtime.process import Stream, run_streams
    from realtime.writer import PsiWriter

    geo = Geometry.for_oscillators(128)
    plan = [(0, 0.7), (0, 1.2), (7, 0.5), (30, 0.9)]          # (start tick, seconds)
    turns = [committed_turn(db_url, f"Staggered reply {i}.") for i in range(len(plan))]
    streams = [Stream(t, 128, "analysis", 1, 1700000100000 + 20 * tick, audio=tone_switch(geo.sample_rate, sec),
                      seed=i, start_tick=tick) for i, (t, (tick, sec)) in enumerate(zip(turns, plan))]
    writer = PsiWriter(db_url, tmp_path / "spool.jsonl", frames_per_row=10)
    r = run_streams(streams, writer, encode_margin_s=10.0)
    assert writer.stats["encode_queue_max"] > 1 and writer.stats["spooled_rows"] == 0
    assert r["frames"] == sum(s.total for s in streams) == writer.stats["frames"]
    with psycopg.connect(db_url) as c:
        for s in streams:
            rows = c.execute("SELECT ts_epoch_ms, frame_count, psi_blob FROM psi.psi_frames WHERE uttr_hash = %s "
                             "AND band = 0 ORDER BY ts_epoch_ms", (s.utt.uttr_hash,)).fetchall()
            want = [(s.utt.started_at_ms + MICRO_MS * i, len(s.live_phases[i:i + 10]),
                     cc.encode(s.live_phases[i:i + 10], s.live_amps[i:i + 10], 1)[0]) for i in range(0, s.total, 10)]
            assert [(ts, n, bytes(b)) for ts, n, b in rows] == want
    for t in turns:
        drop_user(db_url, t.user_id)


def test_a_refused_row_on_the_writer_thread_is_raised_in_the_caller(db_url, tmp_path):
    from realtime.writer import PsiWriter, Utterance

    turn = committed_turn(db_url, "The real words.")
    wrong = cc.utterance_hash(uuid.UUID(turn.entry_id).bytes, "Other words.")
    writer = PsiWriter(db_url, tmp_path / "spool.jsonl")
    writer.begin(Utterance(wrong, turn.user_id, turn.entry_id, "analysis", 128, 1, 8000, 1700000000000))
    writer.tick()
    with pytest.raises(psycopg.errors.CheckViolation):
        writer.flush()
    writer.close()
    assert not (tmp_path / "spool.jsonl").exists()
    drop_user(db_url, turn.user_id)


def test_frames_left_in_the_spool_exit_5_until_flush_spool_writes_them(pg_server, env_url, tmp_path):
    """The server goes away while a reply is voiced and is still down when the stream ends:
    `psimem realtime` says so and exits 5; `--flush-spool` writes the frames later."""
    import time

    turn = committed_turn(env_url, "A long and winding answer about the garden, the roses, the bees and the "
                                   "old stone wall that runs along the bottom of it, past the pond.")
    spool = tmp_path / "spool.jsonl"
    env = {**os.environ, "PSIMEM_HOME": str(tmp_path / "home")}
    backends = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
    with psycopg.connect(env_url, autocommit=True) as c:
        before = c.execute(backends).fetchone()[0]
        p = subprocess.Popen([*PSIMEM, "realtime", "--entry", turn.entry_id, "--synth", "--pace", "--spool", str(spool)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60  # a loaded machine can take a while to start it
        while c.execute(backends).fetchone()[0] <= before and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    time.sleep(0.5)  # connected, and voicing
    pg_server.stop()
    try:  # the server comes back whatever happens here: every later test needs it
        out, err = p.communicate(timeout=60)
        assert p.returncode == 5, err
        assert "rows are not in the database yet, only in the spool" in err and "--flush-spool" in err
        r = subprocess.run([*PSIMEM, "realtime", "--flush-spool", "--spool", str(spool)], capture_output=True,
                           text=True, env=env)
        assert r.returncode in (4, 5), r.stderr            # still down: nothing to write it to
        assert spool.exists()
    finally:
        pg_server.start()
    wait_until_accepting(env_url)
    r = subprocess.run([*PSIMEM, "realtime", "--flush-spool", "--spool", str(spool)], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0 and "wrote" in r.stderr, r.stderr
    assert not spool.exists()
    h, frames = bytes.fromhex(out.split()[0]), int(out.split()[1])
    with psycopg.connect(env_url) as c:
        assert c.execute("SELECT sum(frame_count) FROM psi.psi_frames WHERE uttr_hash = %s AND band = 0",
                         (h,)).fetchone()[0] == frames
    drop_user(env_url, turn.user_id)
