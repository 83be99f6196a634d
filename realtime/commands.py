"""The `psimem realtime` and `psimem replay` commands (psimem/cli.py parses, this runs)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from psimem.connect import act_for_ref, connect, database_url
from psimem.settings import Settings


def say(msg: str) -> None:
    print(f"psimem: {msg}", file=sys.stderr, flush=True)


def live_dir() -> Path:
    return Settings.from_env().home / "psi-live"


def default_spool() -> Path:
    return Settings.from_env().home / "spool" / "psi-spool.jsonl"


def _setting(conn, key, default):
    row = conn.execute("SELECT value FROM ops.settings WHERE key = %s", (key,)).fetchone()
    return row[0] if row else default


def record(url: str, turns, oscillators: int = 256, mode: str = "analysis", codec_version: int | None = None,
           wav: Path | None = None, pace: bool = False, keep_live: bool = True, spool: Path | None = None,
           quiet: bool = False) -> dict:
    """Voice `turns` concurrently through the oscillator core and record them. Returns a report."""
    from .process import Stream, peak_rss_mb, read_wav, run_streams, save_live, speak
    from .writer import PsiWriter

    log = (lambda m: None) if quiet else say
    with connect(url) as conn:
        cv = int(codec_version if codec_version is not None else _setting(conn, "psi.codec_version", 1))
        per_row = int(_setting(conn, "psi.frames_per_row", 50))
        idle = int(_setting(conn, "psi.flush_idle_ms", 2000)) / 1000
        sigma = float(_setting(conn, "psi.surprise_sigma", 5.0))
    writer = PsiWriter(url, spool or default_spool(), frames_per_row=per_row, codec_version=cv,
                       flush_idle_s=idle, say=log)
    replayed = writer.replay_spool()
    if replayed:
        log(f"wrote {replayed} rows left in the spool by an earlier run")
    now_ms = int(time.time() * 1000)
    streams = []
    t_speak = time.perf_counter()
    for i, t in enumerate(turns):
        audio = None
        if mode == "analysis":
            from .core import sample_rate_for

            rate = sample_rate_for(oscillators)
            audio = read_wav(wav, rate)[0] if wav else speak(t.content, rate)
        streams.append(Stream(t, oscillators, mode, cv, now_ms, audio=audio, seed=i, surprise_sigma=sigma,
                              keep_live=keep_live))
    t_speak = time.perf_counter() - t_speak
    report = run_streams(streams, writer, pace=pace, say=log)
    report.update(writer.stats, unsaved_rows=writer.spooled(), spool=str(writer.spool_path), speak_seconds=t_speak,
                  oscillators=oscillators, mode=mode, codec_version=cv,
                  utterances=[{"uttr_hash": s.utt.uttr_hash.hex(), "entry_id": s.turn.entry_id, "frames": s.i,
                               "surprises": s.surprises, "text": s.turn.content} for s in streams])
    if keep_live:
        for s in streams:
            save_live(s, live_dir())
    report["peak_rss_mb"] = peak_rss_mb()   # the recorder's own high-water mark, saving the live recordings included
    return report


SPOOL_LEFT = 5  # exit status: frames recorded but still only in the spool


def flush_spool(url: str, spool: Path | None = None) -> int:
    """`psimem realtime --flush-spool`: write what an earlier run left in the spool."""
    from .writer import PsiWriter

    writer = PsiWriter(url, spool or default_spool(), say=say)
    written = writer.replay_spool()
    left = writer.spooled()
    if left:
        say(f"{left} rows are still only in the spool {writer.spool_path}: the database is unreachable")
        return SPOOL_LEFT
    say(f"wrote {written} spooled rows" if written else f"the spool {writer.spool_path} is empty")
    return 0


def cmd_realtime(args) -> int:
    from .process import load_turns

    url = database_url()
    if args.flush_spool:
        return flush_spool(url, args.spool)
    with connect(url) as conn:
        if args.user:  # a writer login sees only the user it acts for
            act_for_ref(conn, args.user)
        turns = load_turns(conn, args.entry, args.latest)
    if not turns:
        say("no assistant turns without a recording; nothing to voice")
        return 0
    if args.wav and len(turns) != 1:
        raise SystemExit("psimem: --wav voices exactly one turn (give one --entry)")
    r = record(url, turns, args.oscillators, "synthesis" if args.synth else "analysis", args.codec, args.wav,
               args.pace, not args.no_live, args.spool)
    if r["unsaved_rows"]:
        say(f"{r['unsaved_rows']} rows are not in the database yet, only in the spool {r['spool']} (the database "
            "was unreachable when the stream ended); `psimem realtime --flush-spool` writes them")
    code = SPOOL_LEFT if r["unsaved_rows"] else 130 if r["stopped"] else 0
    if args.json:
        import json
        print(json.dumps(r, default=str))
        return code
    for u in r["utterances"]:
        print(f"{u['uttr_hash']}  {u['frames']:>5} frames  {u['surprises']} surprise(s)  turn {u['entry_id']}  "
              f"{u['text'][:60]!r}")
    fps = r["frames"] / max(r["seconds"], 1e-9)
    print(f"{len(r['utterances'])} utterance(s), {r['frames']} micro frames in {r['seconds']:.2f}s ({fps:.0f} frames/s); "
          f"{r['blob_bytes'] / max(r['frames'], 1):.0f} bytes/frame (codec v{r['codec_version']}); "
          f"{r['rows']} rows written, {r['spooled_rows']} spooled, {r['replayed_rows']} replayed from the spool")
    print(f"peak memory: {r['peak_rss_mb']:.1f} MB (process RSS high-water mark, N = {r['oscillators']})")
    return code


def cmd_replay(args) -> int:
    from .process import write_wav
    from .replay import load, render, resolve, verify

    url = database_url()
    with connect(url) as conn:
        try:
            h = resolve(conn, args.utterance)
            stored = load(conn, h)
        except LookupError as e:
            say(str(e))
            return 2
        print(f"utterance {h.hex()}: {len(stored.phases)} micro frames in {stored.rows} rows, "
              f"{stored.blob_bytes / max(len(stored.phases), 1):.0f} bytes/frame, N = {stored.oscillators}, "
              f"{stored.sample_rate} Hz; text {stored.content[:70]!r}" if stored.content else "")
        if args.wav:
            audio = render(stored)
            write_wav(args.wav, audio, stored.sample_rate)
            print(f"wrote {args.wav}: {len(audio) / stored.sample_rate:.2f}s regenerated at fixed dt = 20 ms")
        if args.verify:
            live = live_dir() / f"{h.hex()}.npz"
            if not live.exists():
                say(f"verify: no live recording at {live} (recorded elsewhere, or with --no-live)")
                return 2
            png = Path(args.png) if args.png else Path(f"psi-error-{h.hex()[:12]}.png")
            v = verify(conn, stored, live, png)
            print(f"phase error vs live recording: mean {v['phase_error_mean_rad']:.3e} rad, "
                  f"max {v['phase_error_max_rad']:.3e} rad over {v['frames_compared']} frames "
                  f"(worst frame {v['worst_frame']}); amplitude relative error mean {v['amp_rel_error_mean']:.2e}, "
                  f"max {v['amp_rel_error_max']:.2e}")
            print(f"psi.verify: {v['rows_checked']} rows re-checked (CRC-32C and decode), {v['rows_bad']} bad"
                  + (f": {v['problems']}" if v["rows_bad"] else ""))
            print(f"per-frame error plot: {v['png']}")
            if v["rows_bad"] or v["frames_stored"] != v["frames_live"]:
                return 1
    return 0


def cmd_export(args) -> int:
    """`psimem export UTTERANCE -o clip.webm`: the utterance as a video clip (realtime/clip.py)."""
    from . import codec_core as cc
    from .clip import ClipError, export_clip, parse_size
    from .replay import resolve

    try:
        size = parse_size(args.size)
        with connect(database_url()) as conn:
            h = resolve(conn, args.utterance)
            r = export_clip(conn, h, args.output, size, args.fps)
    except (ClipError, LookupError) as e:
        say(f"export: {e}")
        return 2
    except cc.CodecError as e:      # a stored frame is damaged (CRC or layout)
        say(f"export: {e}")
        return 3
    except Exception as e:
        import psycopg
        if isinstance(e, psycopg.Error):
            say(f"export: database: {str(e).strip().splitlines()[0]}")
            return 5
        say(f"export: internal error: {type(e).__name__}: {e}")
        return 1
    print(f"wrote {r['output']}: {r['duration_s']:.2f} s, {r['video_frames']} frames {r['size']} at {r['fps']} fps "
          f"with audio at {r['sample_rate']} Hz, {r['bytes'] / 2**20:.2f} MB; exported in {r['wall_s']:.2f} s "
          f"({r['wall_s'] / max(r['duration_s'], 1e-9):.2f}x the clip's length; drawing {r['draw_s']:.2f} s, "
          f"ffmpeg {r['ffmpeg_cpu_s']:.2f} s CPU)")
    return 0
