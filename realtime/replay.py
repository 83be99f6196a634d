"""`psimem replay`: regenerate an utterance's audio from its stored micro frames (fixed dt,
deterministic), and verify the stored frames against the live recording."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import codec_core as cc
from .core import Geometry, synthesise


@dataclass
class Stored:
    uttr_hash: bytes
    oscillators: int
    sample_rate: int
    started_at_ms: int
    content: str | None
    ts: np.ndarray          # start of each micro frame, epoch ms
    phases: np.ndarray
    amps: np.ndarray
    rows: int
    blob_bytes: int


def resolve(conn, ref: str | None) -> bytes:
    """An utterance by uttr_hash (32 hex digits, or a unique prefix), by the entry_id of the
    turn it voices, or (None) the most recent one."""
    if ref is None:
        row = conn.execute("SELECT uttr_hash FROM psi.utterances ORDER BY created_at DESC, started_at_ms DESC LIMIT 1").fetchone()
        if not row:
            raise LookupError("UTTERANCE: there are no recorded utterances yet (run psimem realtime)")
        return bytes(row[0])
    ref = ref.strip().lower()
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", ref):
        rows = conn.execute("SELECT uttr_hash FROM psi.utterances WHERE entry_id = %s::uuid "
                            "ORDER BY started_at_ms DESC", (ref,)).fetchall()
    elif re.fullmatch(r"[0-9a-f]{4,32}", ref):
        rows = conn.execute("SELECT uttr_hash FROM psi.utterances WHERE encode(uttr_hash, 'hex') LIKE %s",
                            (ref + "%",)).fetchall()
    else:
        raise LookupError(f"UTTERANCE: {ref!r} is neither a uttr_hash (hex) nor a turn's entry_id (uuid)")
    if not rows:
        raise LookupError(f"UTTERANCE: no utterance matches {ref!r}")
    if len(rows) > 1 and len(ref) < 32 and "-" not in ref:
        raise LookupError(f"UTTERANCE: {ref!r} matches {len(rows)} utterances; give more digits")
    return bytes(rows[0][0])


def load(conn, uttr_hash: bytes) -> Stored:
    meta = conn.execute("SELECT u.oscillator_count, u.sample_rate, u.started_at_ms, d.content FROM psi.utterances u "
                        "LEFT JOIN memory.day_table d USING (entry_id) WHERE u.uttr_hash = %s", (uttr_hash,)).fetchone()
    if meta is None:
        raise LookupError(f"UTTERANCE: {uttr_hash.hex()} is not recorded")
    ts, ph, amp, nbytes, rows = [], [], [], 0, 0
    for t0, dur, count, blob, crc in conn.execute(
            "SELECT ts_epoch_ms, duration_ms, frame_count, psi_blob, integrity_crc FROM psi.psi_frames "
            "WHERE uttr_hash = %s AND band = 0 ORDER BY ts_epoch_ms", (uttr_hash,)):
        p, a, _ = cc.decode(blob, crc)
        ts.extend(t0 + dur * np.arange(count))
        ph.append(p)
        amp.append(a)
        nbytes += len(blob)
        rows += 1
    n = meta[0]
    return Stored(uttr_hash, n, meta[1], meta[2], meta[3], np.asarray(ts, dtype=np.int64),
                  np.concatenate(ph) if ph else np.zeros((0, n), np.float32),
                  np.concatenate(amp) if amp else np.zeros((0, n), np.float32), rows, nbytes)


def render(stored: Stored) -> np.ndarray:
    """Audio from the stored frames: inverse STFT at the fixed 20 ms dt (deterministic)."""
    geo = Geometry(stored.oscillators, stored.sample_rate)
    return synthesise(stored.phases, stored.amps, geo)


def phase_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| wrapped to [0, π], per element."""
    d = np.mod(np.asarray(a, np.float64) - np.asarray(b, np.float64) + np.pi, 2 * np.pi) - np.pi
    return np.abs(d)


def verify(conn, stored: Stored, live_path: Path, png: Path | None) -> dict:
    """Stored frames against the live recording: phase error (mean/max, per frame),
    amplitude relative error, the SQL re-check (psi.verify) and the per-frame plot."""
    live = np.load(live_path)
    lp, la = live["phases"], live["amplitudes"]
    n = min(len(lp), len(stored.phases))
    if n == 0:
        raise LookupError("verify: no frames to compare")
    err = phase_error(stored.phases[:n], lp[:n])
    per_frame = err.mean(axis=1)
    loud = la[:n] > 2.0 ** cc.AMP_FLOOR_EXP
    rel = np.abs(stored.amps[:n][loud] - la[:n][loud]) / la[:n][loud]
    sql = conn.execute("SELECT count(*), count(*) FILTER (WHERE NOT ok), string_agg(problem, '; ') "
                       "FROM psi.verify(%s)", (stored.uttr_hash,)).fetchone()
    out = {"frames_live": int(len(lp)), "frames_stored": int(len(stored.phases)), "frames_compared": int(n),
           "phase_error_mean_rad": float(err.mean()), "phase_error_max_rad": float(err.max()),
           "worst_frame": int(per_frame.argmax()), "amp_rel_error_mean": float(rel.mean()) if rel.size else 0.0,
           "amp_rel_error_max": float(rel.max()) if rel.size else 0.0,
           "rows_checked": int(sql[0]), "rows_bad": int(sql[1]), "problems": sql[2],
           "bytes_per_frame": stored.blob_bytes / max(len(stored.phases), 1)}
    if png is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
        ax.plot(np.arange(n) * 0.02, per_frame, lw=1)
        ax.axhline(1e-3, color="r", ls="--", lw=0.8, label="budget 1e-3 rad")
        ax.set_title(f"Replay error per frame, utterance {stored.uttr_hash.hex()[:12]}…")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("avg |Δphase| (rad)")
        ax.set_ylim(0, max(1.2e-3, float(per_frame.max()) * 1.1))
        ax.legend(loc="upper right")
        fig.tight_layout()
        fig.savefig(png)
        plt.close(fig)
        out["png"] = str(png)
    return out
