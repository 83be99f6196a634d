"""The ψ part of `psimem demo`: speak a few assistant replies already in memory.day_table
with espeak-ng, record them through the realtime process, replay one to a WAV, print the
error figures and export it as a WebM clip.

The recorder runs as its own process (`psimem realtime --json`), as it does in use: the
peak memory it reports is its own, not that of the demo process holding the language
models."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from psimem.connect import connect
from psimem.settings import Settings


def record_in_child(url: str, entry_ids: list[str], oscillators: int) -> dict:
    """`psimem realtime --entry … --json` in a child process; its report."""
    cmd = [sys.executable, "-m", "psimem", "realtime", "--oscillators", str(oscillators), "--json"]
    for e in entry_ids:
        cmd += ["--entry", e]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PSIMEM_DATABASE_URL": url})
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise SystemExit(f"psimem: the realtime recorder failed: {last}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_psi_demo(url: str, replies: int = 3, oscillators: int = 256) -> dict:
    from .clip import export_clip
    from .commands import live_dir
    from .process import load_turns, write_wav
    from .replay import load, render, verify

    home = Settings.from_env().home
    print(f"\n== ψ-trajectory memory: voicing {replies} assistant replies (espeak-ng -> oscillator core, N = {oscillators})")
    with connect(url) as conn:
        turns = load_turns(conn, None, replies)
    if not turns:
        print("  every assistant reply is already voiced; nothing new to record")
        with connect(url) as conn:
            row = conn.execute("SELECT encode(uttr_hash, 'hex') FROM psi.utterances ORDER BY created_at DESC LIMIT 1").fetchone()
        if not row:
            return {}
        hashes = [row[0]]
    else:
        r = record_in_child(url, [t.entry_id for t in turns], oscillators)
        for u in r["utterances"]:
            print(f"  {u['uttr_hash'][:12]}…  {u['frames']:>4} frames ({u['frames'] * 0.02:.1f}s)  "
                  f"{u['surprises']} surprise event(s)  {u['text'][:60]!r}")
        print(f"  {r['frames']} micro frames in {r['rows']} rows written with binary COPY; "
              f"{r['blob_bytes'] / max(r['frames'], 1):.0f} bytes/frame with codec v{r['codec_version']} "
              f"(raw int16 would be {4 * oscillators}); the recorder's peak memory {r['peak_rss_mb']:.0f} MB "
              f"(its own process)")
        hashes = [u["uttr_hash"] for u in r["utterances"]]
    h = bytes.fromhex(hashes[0])
    wav = home / f"psi-replay-{hashes[0][:12]}.wav"
    png = home / f"psi-error-{hashes[0][:12]}.png"
    with connect(url) as conn:
        stored = load(conn, h)
        audio = render(stored)
        write_wav(wav, audio, stored.sample_rate)
        print(f"  replayed {hashes[0][:12]}… from {stored.rows} stored rows at fixed dt = 20 ms -> {wav} "
              f"({len(audio) / stored.sample_rate:.2f}s)")
        live = live_dir() / f"{hashes[0]}.npz"
        out = {"uttr_hash": hashes[0], "wav": str(wav)}
        if live.exists():
            v = verify(conn, stored, live, png)
            print(f"  phase error vs the live recording: mean {v['phase_error_mean_rad']:.2e} rad, max "
                  f"{v['phase_error_max_rad']:.2e} rad (budget: mean < 1e-3); amplitude relative error mean "
                  f"{v['amp_rel_error_mean']:.2e}; psi.verify re-checked {v['rows_checked']} rows, {v['rows_bad']} bad; "
                  f"plot {v['png']}")
            out.update(v)
        clip = home / f"psi-clip-{hashes[0][:12]}.webm"
        c = export_clip(conn, h, clip)
        print(f"  exported {hashes[0][:12]}… as a clip: {clip} ({c['duration_s']:.2f} s, {c['size']} at {c['fps']} fps, "
              f"VP9 + Opus) in {c['wall_s']:.2f} s = {c['wall_s'] / c['duration_s']:.2f}x its length (target <= 1.2x; "
              f"drawing {c['draw_s']:.2f} s, ffmpeg {c['ffmpeg_cpu_s']:.2f} s CPU)")
        out["clip"] = c
    return out
