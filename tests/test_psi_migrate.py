"""Oscillator-count migration: each pair of counts against a direct analysis of the same
sound at the target count, the round trips, and the archive path end to end."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import numpy as np
import psycopg
import pytest

from helpers import new_session, new_user, record
from realtime import codec_core as cc
from realtime.core import Geometry, analyse, synthesise
from realtime.oscillator_count import BandRecompute, migrate_frames
from realtime.process import Turn

PSIMEM = [sys.executable, "-m", "psimem"]
G = {n: Geometry.for_oscillators(n) for n in (128, 256, 512)}


def voice(sample_rate: int, seconds: float = 1.5) -> np.ndarray:
    """A voiced vowel with vibrato and an onset, defined in continuous time (so the 8 kHz
    and 16 kHz versions are one signal) and band-limited below 3.8 kHz (so 128 oscillators
    hold all of it)."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    ph = 2 * np.pi * (140 * t - 15 / (2 * np.pi * 1.3) * np.cos(2 * np.pi * 1.3 * t))
    env = 0.3 * (1 - np.cos(2 * np.pi * np.minimum(t / 0.4, 1))) + 0.1
    return (0.15 * env * sum(np.sin(k * ph) / k for k in range(1, 25))).astype(np.float32)


def stored(phases, amps):
    """Frames as the database holds them: codec v1 runs of 50, decoded."""
    runs = [cc.decode(cc.encode(phases[i:i + 50], amps[i:i + 50], 1)[0])[:2] for i in range(0, len(phases), 50)]
    return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


def errors(ph, amp, ref_ph, ref_amp, geo):
    """Amplitude-weighted phase error (rad) and log-spectral distance (dB) over the bins
    within 40 dB of each frame's peak, below 3.9 kHz (the band every count holds)."""
    n = min(len(ph), len(ref_ph))
    ph, amp, ref_ph, ref_amp = ph[:n], amp[:n], ref_ph[:n], ref_amp[:n]
    loud = (ref_amp > ref_amp.max(axis=1, keepdims=True) * 0.01) & (geo.bin_hz < 3900)
    d = np.abs(np.mod(ph - ref_ph + np.pi, 2 * np.pi) - np.pi)
    return (float((d * ref_amp)[loud].sum() / ref_amp[loud].sum()),
            float(np.sqrt(np.mean((20 * np.log10(amp[loud] / ref_amp[loud])) ** 2))))


def snr_db(y, x):
    n = min(len(x), len(y))
    return float(10 * np.log10(np.sum(x[:n] ** 2) / np.sum((y[:n] - x[:n]) ** 2)))


# bounds: to a window no longer than the source's the result is the target's own analysis
# up to quantisation; to a longer one (512) it is a truncated analysis whose overlap-added
# audio carries a 50 Hz ripple, so the audio and the way back are what is held to account
PAIRS = [(512, 256, "down"), (512, 128, "down"), (256, 128, "down"), (128, 256, "same-length"),
         (256, 512, "up"), (128, 512, "up")]


@pytest.mark.parametrize("src,dst,kind", PAIRS)
def test_migration_of_each_pair_of_counts_is_within_its_error_bound(src, dst, kind):
    x_src, x_dst = voice(G[src].sample_rate), voice(G[dst].sample_rate)
    ph, amp = stored(*analyse(x_src, G[src]))
    mp, ma = stored(*migrate_frames(ph, amp, dst))
    assert mp.shape == (len(ph), dst) and ma.shape == (len(ph), dst)
    pe, lsd = errors(mp, ma, *analyse(x_dst, G[dst]), G[dst])
    audio = snr_db(synthesise(mp, ma, G[dst]), x_dst)
    back_pe, back_lsd = errors(*stored(*migrate_frames(mp, ma, src)), ph, amp, G[src])
    if kind in ("down", "same-length"):
        assert pe < 0.01 and lsd < 0.6, (pe, lsd)
        assert audio > 35, audio
    else:
        assert audio > 14, audio                   # the ripple of truncated frames, about -1.5 dB at its worst
        assert back_pe < 0.01 and back_lsd < 0.5, (back_pe, back_lsd)


def test_round_trips_256_512_256_and_256_128_256():
    x = voice(16000)
    ph, amp = stored(*analyse(x, G[256]))
    for via in (512, 128):
        up = stored(*migrate_frames(ph, amp, via))
        bp, ba = stored(*migrate_frames(*up, 256))
        pe, lsd = errors(bp, ba, ph, amp, G[256])
        assert pe < 0.01 and lsd < 0.5, (via, pe, lsd)
        assert snr_db(synthesise(bp, ba, G[256]), x) > 30


def test_128_oscillators_lose_what_lies_above_4_khz():
    sr = 16000
    t = np.arange(sr) / sr
    x = (0.2 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    ph, amp = analyse(x, G[256])
    bp, ba = migrate_frames(*migrate_frames(ph, amp, 128), 256)
    hz = G[256].bin_hz
    k1, k6 = np.argmin(np.abs(hz - 1000)), np.argmin(np.abs(hz - 6000))
    mid = slice(10, -10)
    assert np.allclose(ba[mid, k1], amp[mid, k1], rtol=0.02)
    assert ba[mid, k6].max() < 1e-3 * amp[mid, k6].min()


def test_recomputed_meso_frames_and_centroids_are_the_recorders(db_url, tmp_path, monkeypatch):
    """BandRecompute on the live frames gives the rows the recorder stored, bit for bit:
    migration recomputes the meso band as the recorder would have at the new count."""
    from realtime.commands import record as record_turns

    monkeypatch.setenv("PSIMEM_HOME", str(tmp_path / "home"))
    with psycopg.connect(db_url) as c:
        user = new_user(c, f"psi-mig-{uuid.uuid4()}")
        text = "A steady little tune, and then some quiet."
        entry = record(c, new_session(c, user), content=text, role="assistant")
        c.commit()
    from realtime.process import write_wav
    wav = tmp_path / "v.wav"
    write_wav(wav, voice(16000, 2.3), 16000)
    r = record_turns(db_url, [Turn(str(entry), str(user), text)], 256, wav=wav, spool=tmp_path / "s.jsonl", quiet=True)
    h = bytes.fromhex(r["utterances"][0]["uttr_hash"])
    live = np.load(tmp_path / "home" / "psi-live" / f"{h.hex()}.npz")
    b = BandRecompute(256)
    events = b.feed(live["amplitudes"], 20) + b.finish()
    with psycopg.connect(db_url) as c:
        start = c.execute("SELECT started_at_ms FROM psi.utterances WHERE uttr_hash = %s", (h,)).fetchone()[0]
        meso = c.execute("SELECT ts_epoch_ms - %s, psi_blob FROM psi.psi_frames WHERE uttr_hash = %s AND band = 1 "
                         "ORDER BY 1", (start, h)).fetchall()
        cents = c.execute("SELECT band, ts_epoch_ms - %s, centroid FROM psi.band_centroids WHERE uttr_hash = %s "
                          "AND band < 2 ORDER BY 2, 1", (start, h)).fetchall()
        c.execute("DELETE FROM memory.users WHERE user_id = %s", (user,))
    mine = [(e[1], e[2]) for e in events if e[0] == "m"]
    assert len(mine) == len(meso) == 10
    assert all(t == u and np.array_equal(cc.decode(blob)[2][0], v) for (t, blob), (u, v) in zip(meso, mine))
    mc = [(e[1], e[2], e[3]) for e in events if e[0] == "c"]
    assert [(bd, t) for bd, t, _ in cents] == [(bd, t) for bd, t, _ in mc]
    assert all(np.array_equal(np.asarray(cv, dtype=np.float32), v) for (_, _, cv), (_, _, v) in zip(cents, mc))


def test_migrate_an_archive_then_import_it_at_the_new_count(env_url, tmp_path):
    """psiarc migrate 128 -> 256 on a recorded utterance: the archive verifies, imports
    (after the 128 version is deleted) with N = 256 at 16 kHz, psi.verify is clean, the
    meso band keeps its windows and the audio keeps its length and its voice."""
    from realtime.commands import record as record_turns
    from realtime.replay import load, render

    env = {**os.environ, "PSIMEM_HOME": str(tmp_path / "home")}
    with psycopg.connect(env_url) as c:
        user = new_user(c, f"psi-mig-{uuid.uuid4()}")
        text = "Migrated from eight to sixteen kilohertz."
        entry = record(c, new_session(c, user), content=text, role="assistant")
        c.commit()
    from realtime.process import write_wav
    wav = tmp_path / "v.wav"
    write_wav(wav, voice(8000, 2.0), 8000)
    r = record_turns(env_url, [Turn(str(entry), str(user), text)], 128, wav=wav, spool=tmp_path / "s.jsonl",
                     keep_live=False, quiet=True)
    h = bytes.fromhex(r["utterances"][0]["uttr_hash"])
    with psycopg.connect(env_url) as c:
        before = load(c, h)
        meso_before = c.execute("SELECT ts_epoch_ms FROM psi.psi_frames WHERE uttr_hash = %s AND band = 1 ORDER BY 1",
                                (h,)).fetchall()
    a, b = tmp_path / "a.psiarc", tmp_path / "b.psiarc"
    run = lambda *args: subprocess.run([*PSIMEM, *args], capture_output=True, text=True, env=env)  # noqa: E731
    assert run("psiarc", "export", "--utterance", h.hex(), "-o", str(a)).returncode == 0
    m = run("psiarc", "migrate", "--oscillator-count", "256", str(a), str(b))
    assert m.returncode == 0, m.stderr
    v = run("psiarc", "verify", str(b))
    assert v.returncode == 0 and "ok" in v.stdout, v.stderr
    same = run("psiarc", "import", str(b))                 # the 128 version is still there: refused, nothing written
    assert same.returncode == 5 and "128 oscillators" in same.stderr and len(same.stderr.strip().splitlines()) == 1
    with psycopg.connect(env_url) as c:
        c.execute("DELETE FROM psi.utterances WHERE uttr_hash = %s", (h,))
    imp = run("psiarc", "import", str(b))
    assert imp.returncode == 0, imp.stderr
    with psycopg.connect(env_url) as c:
        assert c.execute("SELECT oscillator_count, sample_rate, entry_id FROM psi.utterances WHERE uttr_hash = %s",
                         (h,)).fetchone() == (256, 16000, entry)
        assert c.execute("SELECT count(*) FILTER (WHERE NOT ok) FROM psi.verify(%s)", (h,)).fetchone()[0] == 0
        assert c.execute("SELECT ts_epoch_ms FROM psi.psi_frames WHERE uttr_hash = %s AND band = 1 ORDER BY 1",
                         (h,)).fetchall() == meso_before
        after = load(c, h)
        c.execute("DELETE FROM memory.users WHERE user_id = %s", (user,))
    assert after.phases.shape == (len(before.phases), 256)
    y8, y16 = render(before), render(after)
    assert abs(len(y16) - 2 * len(y8)) <= 2
    from scipy.signal import resample_poly
    assert snr_db(resample_poly(y16, 1, 2), y8) > 20
