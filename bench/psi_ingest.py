"""ψ ingest: concurrent 50-fps streams one realtime process sustains into PostgreSQL.

On a throwaway cluster (bench/common.py), N = 256:
1. Writer path, unpaced: S streams of oscillator-network frames (pre-stepped) through the
   realtime writer — codec v1 runs of 50 frames, binary COPY per utterance — against the
   same frames written as one INSERT per frame (one-frame rows, a commit per 20 ms tick).
   frames/s of wall time; streams = frames/s / 50.
2. The oscillator core's step alone, µs per stream-frame: each stream's OscillatorCore
   stepped one by one (the reference) against all streams as one CoreBatch per tick.
3. Full process, unpaced: S streams voiced through the oscillator core (analysis mode
   on a spoken sentence, all streams in one CoreBatch) plus the writer, as `psimem
   realtime` runs them: streams per core = frames per process-CPU second / 50.
4. Paced: the full process at the wall clock. Strict: --streams streams of --seconds
   starting together (every stream closes a run on the same tick, and all end on the
   same tick). Realistic: --streams conversations for 2 x --seconds, replies of varied
   length arriving one after another with pauses (staggered starts and ends), admitted
   on their tick (each arrival its own CoreBatch) and on a 100 ms grid (arrivals batched).
   For each: does it keep up (tick loop wall time vs audio time, worst tick lag; the
   final flush after the last frame apart), frames/s, and what share of a core it uses.
5. Peak memory of `psimem realtime` for one utterance at N = 128 / 256 / 512.
The database server runs on the same 2-core machine as the process, and both share it
with whatever else runs; CPU seconds of the process are reported next to wall time.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid

import numpy as np
from common import bench_database, report, say, with_connection

from realtime import codec_core as cc
from realtime.core import CoreBatch, Geometry, OscillatorCore, analyse, prosody_events
from realtime.process import Stream, Turn, run_streams, speak
from realtime.writer import PsiWriter

TEXT = "Honestly, I think the best part of the weekend was the long walk by the river, and the bread after."


def server_cpu_s(url) -> float:
    """CPU seconds of the bench cluster: postmaster with its reaped children, plus live backends."""
    from pathlib import Path
    pid = int(Path("/var/tmp/psimem-bench-psi/data/postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            f = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(p.name) == pid:
            total += sum(int(x) for x in f[11:15])
        elif int(f[1]) == pid:
            total += int(f[11]) + int(f[12])
    return total / tick


def make_turns(conn, n: int, tag: str) -> list[Turn]:
    out = []
    for i in range(n):
        u = conn.execute("SELECT memory.ensure_user(%s)", (f"bench-psi-{tag}-{i}",)).fetchone()[0]
        s = conn.execute("SELECT memory.start_session(%s, %s)", (u, f"bench-psi-{tag}-{i}-{uuid.uuid4()}")).fetchone()[0]
        e = conn.execute("SELECT memory.record_turn(p_session_id => %s, p_role => 'assistant', p_content => %s)",
                         (s, f"{TEXT} ({tag} {i})")).fetchone()[0]
        out.append(Turn(str(e), str(u), f"{TEXT} ({tag} {i})"))
    conn.commit()
    return out


def reset_psi(conn) -> None:
    conn.execute("TRUNCATE psi.utterances CASCADE")
    conn.commit()


def reset(conn) -> None:
    conn.execute("TRUNCATE psi.utterances CASCADE")
    conn.execute("DELETE FROM memory.users WHERE external_ref LIKE 'bench-psi-%'")
    conn.commit()


def network_frames(n: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    core = OscillatorCore(n, seed=1)
    plan = [(f0, env, fm) for k, f0, env, fm in prosody_events(TEXT * 3) for _ in range(k)][:frames]
    steps = [core.step_network(*p) for p in plan]
    return np.stack([s.phases for s in steps]), np.stack([s.amps for s in steps])


def writer_path(url, turns, ph, amp) -> dict:
    from realtime.writer import Utterance
    w = PsiWriter(url, "/var/tmp/psimem-bench-spool.jsonl")
    now = int(time.time() * 1000)
    utts = [Utterance(cc.utterance_hash(uuid.UUID(t.entry_id).bytes, t.content), t.user_id, t.entry_id,
                      "synthesis", ph.shape[1], 1, 16000, now) for t in turns]
    t0, c0, s0 = time.perf_counter(), time.process_time(), server_cpu_s(url)
    for u in utts:
        w.begin(u)
    for f in range(len(ph)):
        for u in utts:
            w.micro(u.uttr_hash, now + 20 * f, ph[f], amp[f])
        w.tick()
    for u in utts:
        w.end(u.uttr_hash, flush=False)
    w.close()
    wall, cpu, srv = time.perf_counter() - t0, time.process_time() - c0, server_cpu_s(url) - s0
    frames = len(ph) * len(utts)
    return {"streams": len(utts), "frames": frames, "wall_s": wall, "process_cpu_s": cpu, "server_cpu_s": srv,
            "frames_per_s": frames / wall, "streams_at_50fps": frames / wall / 50,
            "streams_per_process_cpu_core": frames / cpu / 50,
            "streams_per_core_process_plus_server": frames / (cpu + srv) / 50, "copy_s": w.stats["copy_seconds"],
            "bytes_per_frame": w.stats["blob_bytes"] / frames}


def insert_each(url, turns, ph, amp) -> dict:
    now = int(time.time() * 1000)
    blobs = [cc.encode_v1(ph[f], amp[f])[0] for f in range(len(ph))]   # encode not timed: the rows alone
    with with_connection(url) as conn:
        hashes = []
        for t in turns:
            h = cc.utterance_hash(uuid.UUID(t.entry_id).bytes, t.content)
            conn.execute("INSERT INTO psi.utterances (uttr_hash, user_id, entry_id, mode, oscillator_count, "
                         "codec_version, sample_rate, started_at_ms) VALUES (%s, %s, %s, 'synthesis', %s, 1, 16000, %s)",
                         (h, t.user_id, t.entry_id, ph.shape[1], now))
            hashes.append((h, t.user_id))
        conn.commit()
        t0, c0, s0 = time.perf_counter(), time.process_time(), server_cpu_s(url)
        for f, blob in enumerate(blobs):
            crc = cc.crc32c(blob)
            for h, u in hashes:
                conn.execute("INSERT INTO psi.psi_frames (uttr_hash, user_id, ts_epoch_ms, band, duration_ms, "
                             "frame_count, psi_blob, integrity_crc) VALUES (%s, %s, %s, 0, 20, 1, %s, %s)",
                             (h, u, now + 20 * f, blob, crc))
            conn.commit()
        wall, cpu, srv = time.perf_counter() - t0, time.process_time() - c0, server_cpu_s(url) - s0
    frames = len(blobs) * len(hashes)
    return {"streams": len(hashes), "frames": frames, "wall_s": wall, "process_cpu_s": cpu, "server_cpu_s": srv,
            "streams_per_core_process_plus_server": frames / (cpu + srv) / 50,
            "frames_per_s": frames / wall, "streams_at_50fps": frames / wall / 50,
            "bytes_per_frame": sum(map(len, blobs)) / len(blobs)}


def core_step(audio, streams: int) -> dict:
    """CPU µs per stream-frame of the core's analysis step: one by one vs batched."""
    ph, amp = analyse(audio, Geometry.for_oscillators(256))
    cores = [OscillatorCore(256, seed=i) for i in range(streams)]
    c0 = time.process_time()
    for f in range(len(ph)):
        for c in cores:
            c.step_observed(ph[f], amp[f])
    one = time.process_time() - c0
    batch = CoreBatch([OscillatorCore(256, seed=i) for i in range(streams)])
    c0 = time.process_time()
    for f in range(len(ph)):
        batch.step_observed(np.stack([ph[f]] * streams), np.stack([amp[f]] * streams))
    batched = time.process_time() - c0
    n = len(ph) * streams
    return {"streams": streams, "frames": n, "one_by_one_us_per_frame": one / n * 1e6,
            "batched_us_per_frame": batched / n * 1e6}


def full_process(url, turns, audio, pace=False, starts=None, lengths=None, admit_every=1) -> dict:
    """Streams voiced through the core and the writer as `psimem realtime` runs them. By
    default every stream starts on tick 0 with the whole of `audio`; `starts` (ticks) and
    `lengths` (frames' worth of audio) stagger them. Audio time is the span from the first
    start to the last end."""
    geo = Geometry.for_oscillators(256)
    starts = starts or [0] * len(turns)
    lengths = lengths or [len(audio)] * len(turns)
    now = int(time.time() * 1000)
    streams = [Stream(t, 256, "analysis", 1, now + 20 * k, audio=audio[:n], seed=i, start_tick=k)
               for i, (t, k, n) in enumerate(zip(turns, starts, lengths))]
    w = PsiWriter(url, "/var/tmp/psimem-bench-spool.jsonl")
    c0, s0 = time.process_time(), server_cpu_s(url)
    r = run_streams(streams, w, pace=pace, admit_every=admit_every)
    cpu, srv = time.process_time() - c0, server_cpu_s(url) - s0
    audio_s = max(s.start_tick + s.total for s in streams) * 0.02 - min(starts) * 0.02
    # concurrent streams, averaged over the ticks of the audio span
    concurrent = sum(s.total for s in streams) / (audio_s / 0.02)
    live = np.zeros(max(s.start_tick + s.total for s in streams) + 1, dtype=int)
    for s in streams:
        live[s.start_tick:s.start_tick + s.total] += 1
    return {"streams": len(streams), "mean_concurrent_streams": concurrent, "peak_concurrent_streams": int(live.max()),
            "admit_every_ticks": admit_every,
            "frames": r["frames"], "wall_s": r["seconds"], "process_cpu_s": cpu,
            "server_cpu_s": srv, "streams_per_core_process_plus_server": r["frames"] / (cpu + srv) / 50,
            "audio_s": audio_s, "frames_per_s": r["frames"] / r["seconds"],
            "streams_at_50fps": r["frames"] / r["seconds"] / 50, "streams_per_process_cpu_core": r["frames"] / cpu / 50,
            "process_core_share": cpu / r["seconds"], "loop_s": r["loop_seconds"], "max_tick_lag_s": r["max_lag_s"],
            "final_flush_s": r["seconds"] - r["loop_seconds"],
            "encode_s": w.stats["encode_seconds"], "encode_queue_max": w.stats["encode_queue_max"],
            "write_queue_max": w.stats["write_queue_max"], "copy_s": w.stats["copy_seconds"],
            "flushes": w.stats["flushes"],
            # kept up: the tick loop ran in audio time (+5 %, + the admission grid's delay) and
            # no tick fell more than 100 ms (5 ticks) behind; the final flush is reported apart
            "kept_up": (r["loop_seconds"] <= audio_s * 1.05 + admit_every * 0.02 and r["max_lag_s"] <= 0.1)
            if pace else None,
            "peak_rss_mb": r["peak_rss_mb"]}


def arrivals(concurrent: int, seconds: float, audio_frames: int, seed: int = 5) -> tuple[list[int], list[int]]:
    """Replies as they arrive in conversations over `seconds`: each conversation's first
    reply starts in the first second, then replies of 1 s to the whole sentence (uniform)
    follow one another with a 0.1-0.6 s pause (the user's turn, the model's latency); a
    reply that would run past `seconds` is not made. As many conversations as give
    `concurrent` streams on average. Returns (start ticks, lengths in audio samples)."""
    ticks = int(seconds * 50)

    def make(slots):
        rng = np.random.default_rng(seed)
        starts, lengths = [], []
        for _ in range(slots):
            t = int(rng.integers(0, 50))
            while True:
                n = int(rng.integers(50, audio_frames + 1))
                if t + n > ticks:
                    break
                starts.append(t)
                lengths.append(n)
                t += n + int(rng.integers(5, 31))
        return starts, lengths

    starts, lengths = make(concurrent)
    starts, lengths = make(round(concurrent * concurrent * ticks / sum(lengths)))
    return starts, [n * 320 for n in lengths]


def paced_line(name, r) -> str:
    return (f"paced, {name}: {r['streams']} utterances ({r['mean_concurrent_streams']:.0f} concurrent on average, "
            f"{r['peak_concurrent_streams']} at most), "
            f"{r['audio_s']:.2f}s audio -> tick loop {r['loop_s']:.2f}s, worst tick {1000 * r['max_tick_lag_s']:.0f} ms "
            f"late, final flush {r['final_flush_s']:.2f}s -> kept up: {r['kept_up']}; {r['frames_per_s']:.0f} frames/s; "
            f"process CPU {r['process_cpu_s']:.1f}s = {r['process_core_share']:.0%} of a core "
            f"(encode {r['encode_s']:.1f}s, queue max {r['encode_queue_max']} runs), server CPU "
            f"{r['server_cpu_s']:.1f}s; {r['streams_per_process_cpu_core']:.0f} streams per process core")


def peak_memory(url, turns) -> dict:
    out = {}
    for n, t in zip((128, 256, 512), turns):
        env = {**os.environ, "PSIMEM_DATABASE_URL": url, "PSIMEM_HOME": "/var/tmp/psimem-bench-home"}
        r = subprocess.run([sys.executable, "-m", "psimem", "realtime", "--entry", t.entry_id, "--oscillators", str(n),
                            "--no-live"], capture_output=True, text=True, env=env, check=True)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("peak memory")][0]
        out[n] = float(line.split()[2])
        say(f"peak memory N = {n}: {out[n]:.1f} MB (seed's targets 90 / 150 / 250 MB)")
    base = subprocess.run([sys.executable, "-c", "import numpy, psycopg, zstandard, psimem.cli, realtime.commands, "
                           "realtime.process; print(realtime.process.peak_rss_mb())"],
                          capture_output=True, text=True, check=True)
    out["imports_only"] = float(base.stdout)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=5.0, help="audio per stream")
    args = ap.parse_args()
    url = bench_database("/var/tmp/psimem-bench-psi", 55434)  # its own cluster: other benches may hold 55433
    res = {"note": "one process, one database server, same 2-core machine shared with other work"}
    with with_connection(url) as conn:
        reset(conn)
        frames = int(args.seconds * 50)
        ph, amp = network_frames(256, frames)
        turns = make_turns(conn, args.streams, "copy")
        res["writer_copy"] = writer_path(url, turns, ph, amp)
        wc = res["writer_copy"]
        say(f"writer, COPY runs of 50: {wc['frames_per_s']:.0f} frames/s = {wc['streams_at_50fps']:.0f} streams at "
            f"50 fps of wall time; CPU process {wc['process_cpu_s']:.1f}s + server {wc['server_cpu_s']:.1f}s of "
            f"{wc['wall_s']:.1f}s wall = {wc['streams_per_core_process_plus_server']:.0f} streams per core")
        reset(conn)
        few = max(args.streams // 10, 2)
        turns = make_turns(conn, few, "insert")
        res["insert_each"] = insert_each(url, turns, ph, amp)
        ie = res["insert_each"]
        say(f"one INSERT per frame ({few} streams): {ie['frames_per_s']:.0f} frames/s = {ie['streams_at_50fps']:.1f} "
            f"streams at 50 fps; CPU process {ie['process_cpu_s']:.1f}s + server {ie['server_cpu_s']:.1f}s = "
            f"{ie['streams_per_core_process_plus_server']:.0f} streams per core")
        res["copy_over_insert_per_core"] = (wc["streams_per_core_process_plus_server"]
                                            / ie["streams_per_core_process_plus_server"])
        res["copy_over_insert"] = res["writer_copy"]["frames_per_s"] / res["insert_each"]["frames_per_s"]
        say(f"ratio COPY writer / INSERT each: {res['copy_over_insert']:.1f}x frames/s of wall time, "
            f"{res['copy_over_insert_per_core']:.1f}x streams per core")
        reset(conn)
        geo = Geometry.for_oscillators(256)
        audio = speak(TEXT, geo.sample_rate)[: int(args.seconds * geo.sample_rate)]
        res["core_step"] = core_step(audio, args.streams)
        cs = res["core_step"]
        say(f"core step ({args.streams} streams, N = 256): {cs['one_by_one_us_per_frame']:.0f} µs/frame one by one, "
            f"{cs['batched_us_per_frame']:.0f} µs/frame batched (CPU)")
        turns = make_turns(conn, args.streams, "full")
        res["full_unpaced"] = full_process(url, turns, audio)
        say(f"full process (core + writer), unpaced: {res['full_unpaced']['frames_per_s']:.0f} frames/s = "
            f"{res['full_unpaced']['streams_at_50fps']:.0f} streams at 50 fps; "
            f"{res['full_unpaced']['streams_per_process_cpu_core']:.0f} per process core, "
            f"{res['full_unpaced']['streams_per_core_process_plus_server']:.0f} per core counting the server")
        reset(conn)
        turns = make_turns(conn, args.streams, "paced")
        res["paced_together"] = full_process(url, turns, audio, pace=True)
        say(paced_line(f"{args.streams} streams x {args.seconds:.0f}s starting together", res["paced_together"]))
        reset(conn)
        full_audio = speak(TEXT, geo.sample_rate)
        starts, lengths = arrivals(args.streams, 2 * args.seconds, len(full_audio) // 320)
        turns = make_turns(conn, len(starts), "stagger")
        for name, k in (("staggered", 1), ("staggered, admitted every 100 ms", 5),
                        ("staggered, admitted every 250 ms", 12)):
            reset_psi(conn)
            res[name.replace(", ", "_").replace(" ", "_")] = r = full_process(
                url, turns, full_audio, pace=True, starts=starts, lengths=lengths, admit_every=k)
            say(paced_line(f"{name} (replies 1-{len(full_audio) / 16000:.1f}s arriving 0.1-0.6s apart)", r))
        reset(conn)
        turns = make_turns(conn, 3, "mem")
        res["peak_memory_mb"] = peak_memory(url, turns)
        reset(conn)
    report("psi_ingest", res)


if __name__ == "__main__":
    main()
