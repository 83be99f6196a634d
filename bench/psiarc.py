"""ψ archives and clips: export speed, archive size, throughput, encryption, memory, migration.

1. Clip export (`psimem export`): espeak-ng replies of about 10 s and 60 s recorded at
   N = 256; export time / clip length (the seed's target 1.2x, psimem's aim 0.3x) and
   the CPU split between drawing the face (this process) and ffmpeg's encoding.
2. One-hour archives at N = 128, 256 and 512, each recorded by the realtime recorder in
   synthesis mode (`psimem realtime --synth --no-live`, one reply of an hour): archive
   size against the rows' size in PostgreSQL (pg_column_size); export, verify and import
   MB/s; encryption's cost in time and bytes; peak RSS (ru_maxrss of each command run as
   its own child process) of the recorder, `psiarc export`, `verify` and `migrate`,
   against the seed's 90 / 150 / 250 MB (and psimem's aim of a third of that).
3. Migration quality on speech (espeak-ng, 5 sentences, analysed at N = 256): every pair
   of counts and the round trips 256 -> 512 -> 256 and 256 -> 128 -> 256, with frames as
   stored (codec v1): phase error and log-spectral distance against a direct analysis
   at the target count, and PESQ of the migrated audio against the original; next to the
   alternative measured in the same run, migrating through the audio (resynthesise,
   resample, re-analyse).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from common import bench_database, report, say

from psimem.connect import connect
from realtime import codec_core as cc
from realtime.core import Geometry, analyse, synthesise

REPO = Path(__file__).resolve().parent.parent
SENTENCES = [
    "Honestly, I think the best part of the weekend was the long walk by the river.",
    "We should try the new bakery next time; they say the bread is wonderful.",
    "Did you manage to finish the report before the deadline on Friday?",
    "I'm sorry to hear that. Is there anything I can do to help you feel better?",
    "The train was forty minutes late, so I read half a novel on the platform.",
]
SEED_MB = {128: 90, 256: 150, 512: 250}
PASS = "bench passphrase: a long one, as people should use"


def child(args: list[str], url: str, extra_env: dict | None = None) -> dict:
    """Run `psimem ARGS` as its own process; its wall time, its own peak RSS (VmHWM at
    exit, via PSIMEM_PEAK_RSS_FILE: a child's ru_maxrss would start at this process's RSS,
    which fork copies) and its output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".peak") as peak:
        env = {**os.environ, "PSIMEM_DATABASE_URL": url, "PSIARC_BENCH_KEY": PASS, "PSIMEM_PEAK_RSS_FILE": peak.name,
               **(extra_env or {})}
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "psimem", *args], stdout=out, stderr=err, env=env, cwd=REPO)
        secs = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        o, e = out.read().decode(), err.read().decode()
        kb = int(open(peak.name).read() or 0)
    if p.returncode != 0:
        raise SystemExit(f"bench: psimem {' '.join(args)} failed ({p.returncode}): {e.strip()[-500:]}")
    return {"seconds": secs, "peak_rss_mb": kb / 1024, "stdout": o, "stderr": e}


def new_turn(conn, text: str) -> tuple[str, str]:
    user = conn.execute("SELECT memory.ensure_user(%s)", (f"bench-psiarc-{uuid.uuid4()}",)).fetchone()[0]
    session = conn.execute("SELECT memory.start_session(%s)", (user,)).fetchone()[0]
    entry = conn.execute("SELECT memory.record_turn(p_session_id => %s, p_role => 'assistant', p_content => %s)",
                         (session, text)).fetchone()[0]
    conn.commit()
    return str(user), str(entry)


def rows_bytes(conn, h: bytes) -> int:
    return sum(conn.execute(f"SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM psi.{t} t WHERE uttr_hash = %s",
                            (h,)).fetchone()[0] for t in ("utterances", "psi_frames", "surprise_events", "band_centroids"))


# ------------------------------------------------------------------ 1. clips

def bench_clips(url: str, tmp: Path, runs: int) -> dict:
    from realtime.clip import export_clip, probe
    from realtime.commands import record

    from realtime.process import Turn

    out = {}
    for target in (10, 60):
        words, text = 0, []
        while True:                              # espeak-ng speaks about 3.3 of these words a second
            s = SENTENCES[len(text) % len(SENTENCES)]
            if text and words + len(s.split()) / 2 > target * 3.3:
                break
            text.append(s)
            words += len(s.split())
        content = " ".join(text)
        with connect(url) as c:
            user, entry = new_turn(c, content)
        r = record(url, [Turn(entry, user, content)], 256, keep_live=False, quiet=True, spool=tmp / "spool.jsonl")
        h = bytes.fromhex(r["utterances"][0]["uttr_hash"])
        best = None
        with connect(url) as c:
            for i in range(runs):
                res = export_clip(c, h, tmp / f"clip{target}.webm")
                if best is None or res["wall_s"] < best["wall_s"]:
                    best = res
        info = probe(tmp / f"clip{target}.webm")
        cpu = best["draw_s"] + best["ffmpeg_cpu_s"] + best["load_s"]
        best.update(ratio=best["wall_s"] / best["duration_s"], draw_share=best["draw_s"] / cpu,
                    encode_share=best["ffmpeg_cpu_s"] / cpu, load_share=best["load_s"] / cpu,
                    probed_duration_s=float(info["format"]["duration"]))
        out[f"{target}s"] = best
        say(f"clip ~{target} s: {best['duration_s']:.2f} s exported in {best['wall_s']:.2f} s = {best['ratio']:.3f}x its "
            f"length (seed target <= 1.2x, aim <= 0.3x); CPU: drawing {best['draw_s']:.2f} s "
            f"({100 * best['draw_share']:.0f}%), ffmpeg encoding {best['ffmpeg_cpu_s']:.2f} s "
            f"({100 * best['encode_share']:.0f}%), decode + audio {best['load_s']:.2f} s ({100 * best['load_share']:.0f}%); "
            f"{best['bytes'] / 2**20:.2f} MB")
    return out


# ------------------------------------------------------------------ 2. one-hour archives

def hour_text(seconds: float) -> str:
    phrase = "la da ma na la da ma na."                     # 8 syllables and a pause: 84 frames, 1.68 s
    return " ".join([phrase] * int(np.ceil(seconds / 1.68)))


def bench_archives(url: str, tmp: Path, seconds: float, counts: list[int]) -> dict:
    base = min(child(["psiarc", "info", "--help"], url)["seconds"] for _ in range(3))
    say(f"a psimem command's start-up (python, imports): {base:.2f} s; MB/s below are over the whole command")
    out = {"startup_seconds": base}
    archives = {}
    for n in counts:
        with connect(url) as c:
            user, entry = new_turn(c, hour_text(seconds))
        rec = child(["realtime", "--synth", "--oscillators", str(n), "--no-live", "--json", "--entry", entry], url)
        import json
        rj = json.loads(rec["stdout"].strip().splitlines()[-1])
        h = rj["utterances"][0]["uttr_hash"]
        with connect(url) as c:
            rows = rows_bytes(c, bytes.fromhex(h))
        f = tmp / f"hour{n}.psiarc"
        ex = child(["psiarc", "export", "--utterance", h, "-o", str(f)], url)
        size = f.stat().st_size
        vf = child(["psiarc", "verify", str(f)], url)
        r = {"micro_frames": rj["frames"], "seconds_of_voice": rj["frames"] * 0.02, "uttr_hash": h,
             "recorder": {"seconds": rec["seconds"], "peak_rss_mb": rec["peak_rss_mb"],
                          "self_reported_peak_mb": rj["peak_rss_mb"]},
             "archive_bytes": size, "pg_rows_bytes": rows, "archive_vs_rows": size / rows,
             "export": {"seconds": ex["seconds"], "mb_s": size / 2**20 / ex["seconds"], "peak_rss_mb": ex["peak_rss_mb"]},
             "verify": {"seconds": vf["seconds"], "mb_s": size / 2**20 / vf["seconds"], "peak_rss_mb": vf["peak_rss_mb"]}}
        archives[n] = f
        out[n] = r
        say(f"N = {n}: {r['seconds_of_voice']:.0f} s of voice; recorder {rec['seconds']:.1f} s, peak RSS "
            f"{rec['peak_rss_mb']:.1f} MB; archive {size / 2**20:.1f} MB vs rows in PostgreSQL {rows / 2**20:.1f} MB "
            f"({r['archive_vs_rows']:.3f}x); export {r['export']['mb_s']:.1f} MB/s ({ex['peak_rss_mb']:.1f} MB RSS), "
            f"verify {r['verify']['mb_s']:.1f} MB/s ({vf['peak_rss_mb']:.1f} MB RSS)")
    # migrate each archive to the next count (RSS and time), import (MB/s)
    pairs = [(128, 256), (256, 512), (512, 256)]
    for a, b in pairs:
        if a in archives:
            g = tmp / f"hour{a}to{b}.psiarc"
            m = child(["psiarc", "migrate", "--oscillator-count", str(b), str(archives[a]), str(g)], url)
            out[a].setdefault("migrate", {})[b] = {"seconds": m["seconds"], "peak_rss_mb": m["peak_rss_mb"],
                                                   "mb_s": archives[a].stat().st_size / 2**20 / m["seconds"]}
            say(f"migrate {a} -> {b}: {m['seconds']:.1f} s ({out[a]['micro_frames'] / m['seconds']:.0f} frames/s), "
                f"peak RSS {m['peak_rss_mb']:.1f} MB")
            g.unlink()
    for n in counts:
        with connect(url) as c:
            c.execute("DELETE FROM psi.utterances WHERE uttr_hash = %s", (bytes.fromhex(out[n]["uttr_hash"]),))
            c.commit()
        im = child(["psiarc", "import", str(archives[n])], url)
        out[n]["import"] = {"seconds": im["seconds"], "mb_s": out[n]["archive_bytes"] / 2**20 / im["seconds"],
                            "peak_rss_mb": im["peak_rss_mb"]}
        say(f"N = {n}: import {out[n]['import']['mb_s']:.1f} MB/s ({im['seconds']:.1f} s, {im['peak_rss_mb']:.1f} MB RSS)")
    # encryption at 256 (or the first count): plain and sealed back to back, both warm, same rows
    # (pg_cron's psi.decay_centroids prunes old centroids every minute, so the rows must be read together)
    n = 256 if 256 in counts else counts[0]
    h = out[n]["uttr_hash"]
    fp, fe = tmp / f"hour{n}.again.psiarc", tmp / f"hour{n}.sealed.psiarc"
    keyenv = ["--passphrase-env", "PSIARC_BENCH_KEY"]
    reps = 1
    t = {}

    def best(key, args, before=None):
        # the fastest of a few alternating runs: two shared cores make single runs noisy
        for _ in range(reps):
            if before:
                before()
            r = child(args, url)
            if key not in t or r["seconds"] < t[key]["seconds"]:
                t[key] = r

    def delete():
        with connect(url) as c:
            c.execute("DELETE FROM psi.utterances WHERE uttr_hash = %s", (bytes.fromhex(h),))
            c.commit()

    for _ in range(2):
        best("export_plain", ["psiarc", "export", "--utterance", h, "-o", str(fp)])
        best("export_sealed", ["psiarc", "export", "--utterance", h, "-o", str(fe), "--encrypt", *keyenv])
        best("verify_plain", ["psiarc", "verify", str(fp)])
        best("verify_sealed", ["psiarc", "verify", str(fe), *keyenv])
    for _ in range(2):
        best("import_plain", ["psiarc", "import", str(fp)], delete)
        best("import_sealed", ["psiarc", "import", str(fe), *keyenv], delete)
    from realtime.psiarc import derive_key, new_kdf
    kdf = new_kdf()
    t0 = time.perf_counter()
    derive_key(PASS.encode(), kdf)
    kdf_s = time.perf_counter() - t0
    size, psize = fe.stat().st_size, fp.stat().st_size
    enc = {"oscillators": n, "kdf": {k: v for k, v in kdf.items() if k != "salt"}, "kdf_seconds": kdf_s,
           "bytes": size, "plain_bytes": psize, "bytes_overhead": size - psize}
    for op in ("export", "verify", "import"):
        p_, s_ = t[f"{op}_plain"], t[f"{op}_sealed"]
        enc[op] = {"plain_seconds": p_["seconds"], "sealed_seconds": s_["seconds"], "vs_plain": s_["seconds"] / p_["seconds"],
                   "plain_peak_rss_mb": p_["peak_rss_mb"], "sealed_peak_rss_mb": s_["peak_rss_mb"]}
    say(f"encryption (N = {n}, {psize / 2**20:.1f} MB): +{enc['bytes_overhead']} bytes "
        f"({100 * enc['bytes_overhead'] / psize:.4f}%: a 16-byte tag a record and the KDF parameters); " +
        ", ".join(f"{op} {enc[op]['sealed_seconds']:.2f} s vs {enc[op]['plain_seconds']:.2f} s plain "
                  f"({enc[op]['vs_plain']:.2f}x)" for op in ("export", "verify", "import")) +
        f"; {kdf['name']} key derivation {kdf_s * 1000:.0f} ms; peak RSS sealed export "
        f"{enc['export']['sealed_peak_rss_mb']:.1f} MB vs {enc['export']['plain_peak_rss_mb']:.1f} MB")
    fp.unlink()
    # in-process ChaCha20-Poly1305 throughput, for scale
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    aead, blob = ChaCha20Poly1305(os.urandom(32)), os.urandom(1 << 20)
    t0 = time.perf_counter()
    for i in range(64):
        aead.encrypt(i.to_bytes(12, "little"), blob, b"")
    enc["chacha20poly1305_mb_s"] = 64 / (time.perf_counter() - t0)
    fe.unlink()
    for f in archives.values():
        f.unlink()
    memory = {}
    for n in counts:
        r = out[n]
        row = {"recorder": r["recorder"]["peak_rss_mb"], "export": r["export"]["peak_rss_mb"],
               "verify": r["verify"]["peak_rss_mb"], "import": r["import"]["peak_rss_mb"]}
        for b, m in r.get("migrate", {}).items():
            row[f"migrate to {b}"] = m["peak_rss_mb"]
        memory[n] = {"peak_rss_mb": row, "seed_target_mb": SEED_MB[n], "aim_mb": SEED_MB[n] / 3,
                     "worst_vs_seed": max(row.values()) / SEED_MB[n]}
        say(f"peak RSS at N = {n} (seed {SEED_MB[n]} MB, aim {SEED_MB[n] / 3:.0f} MB): " +
            ", ".join(f"{k} {v:.1f} MB" for k, v in row.items()) + f"; worst {memory[n]['worst_vs_seed']:.2f}x the seed's")
    return {"by_count": out, "encryption": enc, "memory": memory}


# ------------------------------------------------------------------ 3. migration quality

def bench_migration(sentences: int) -> dict:
    from pesq import pesq
    from scipy.signal import resample_poly

    from realtime.oscillator_count import migrate_frames
    from realtime.process import speak

    G = {n: Geometry.for_oscillators(n) for n in (128, 256, 512)}

    def stored(ph, amp):
        runs = [cc.decode(cc.encode(ph[i:i + 50], amp[i:i + 50], 1)[0])[:2] for i in range(0, len(ph), 50)]
        return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])

    def errs(ph, amp, rph, ramp, geo, top_hz):
        n = min(len(ph), len(rph))
        ph, amp, rph, ramp = ph[:n], amp[:n], rph[:n], ramp[:n]
        loud = (ramp > ramp.max(axis=1, keepdims=True) * 0.01) & (geo.bin_hz < top_hz)
        d = np.abs(np.mod(ph - rph + np.pi, 2 * np.pi) - np.pi)
        return (float((d * ramp)[loud].sum() / ramp[loud].sum()),
                float(np.sqrt(np.mean((20 * np.log10(np.maximum(amp[loud], 1e-9) / ramp[loud])) ** 2))))

    def score(ref, y, rate):
        n = min(len(ref), len(y))
        return float(pesq(rate, ref[:n], y[:n], "wb" if rate == 16000 else "nb"))

    x16 = [speak(s, 16000) for s in SENTENCES[:sentences]]
    audio = {256: x16, 512: x16, 128: [resample_poly(x, 1, 2).astype(np.float32) for x in x16]}
    src = [stored(*analyse(x, G[256])) for x in x16]
    res = {"unmigrated_pesq": {n: float(np.mean([score(audio[n][i], synthesise(*stored(*analyse(audio[n][i], G[n])), G[n]),
                                                        G[n].sample_rate) for i in range(len(x16))]))
                               for n in G}}
    say("unmigrated (analysis -> codec v1 -> synthesis) PESQ: " +
        ", ".join(f"N={n} {v:.2f}" for n, v in res["unmigrated_pesq"].items()))
    pairs = {}
    for a, b in [(256, 512), (256, 128), (512, 256), (512, 128), (128, 256), (128, 512)]:
        acc = {"phase_error_rad": [], "lsd_db": [], "pesq": [], "pesq_audio_route": []}
        for i, x in enumerate(x16):
            s = src[i] if a == 256 else stored(*analyse(audio[a][i], G[a]))
            m = stored(*migrate_frames(*s, b))
            top = 3900 if 128 in (a, b) else 7900
            pe, lsd = errs(*m, *analyse(audio[b][i] if a != 128 else
                                         (resample_poly(audio[128][i], 2, 1).astype(np.float32) if b != 128 else audio[128][i]),
                                         G[b]), G[b], top)
            ref = audio[b][i] if a != 128 else (resample_poly(audio[128][i], 2, 1).astype(np.float32) if G[b].sample_rate
                                                == 16000 else audio[128][i])
            acc["phase_error_rad"].append(pe)
            acc["lsd_db"].append(lsd)
            acc["pesq"].append(score(ref, synthesise(*m, G[b]), G[b].sample_rate))
            # the alternative: through the audio (resynthesise at the source, resample, analyse at the target)
            y = synthesise(*s, G[a])
            if G[a].sample_rate != G[b].sample_rate:
                y = resample_poly(y, G[b].sample_rate, G[a].sample_rate).astype(np.float32)
            acc["pesq_audio_route"].append(score(ref, synthesise(*stored(*analyse(y, G[b])), G[b]), G[b].sample_rate))
        r = {k: float(np.mean(v)) for k, v in acc.items()}
        pairs[f"{a}->{b}"] = r
        say(f"migrate {a} -> {b}: phase error {r['phase_error_rad']:.4f} rad, log-spectral distance {r['lsd_db']:.2f} dB "
            f"(vs a direct analysis at N = {b}); PESQ {r['pesq']:.2f} (through the audio instead: "
            f"{r['pesq_audio_route']:.2f})")
    trips = {}
    for via in (512, 128):
        acc = {"phase_error_rad": [], "lsd_db": [], "pesq": []}
        for i, x in enumerate(x16):
            back = stored(*migrate_frames(*stored(*migrate_frames(*src[i], via)), 256))
            pe, lsd = errs(*back, *src[i], G[256], 3900 if via == 128 else 7900)
            acc["phase_error_rad"].append(pe)
            acc["lsd_db"].append(lsd)
            acc["pesq"].append(score(x, synthesise(*back, G[256]), 16000))
        r = {k: float(np.mean(v)) for k, v in acc.items()}
        trips[f"256->{via}->256"] = r
        say(f"round trip 256 -> {via} -> 256: phase error {r['phase_error_rad']:.4f} rad, LSD {r['lsd_db']:.2f} dB "
            f"against the original frames{' (below 3.9 kHz: 128 holds nothing above 4 kHz)' if via == 128 else ''}; "
            f"PESQ {r['pesq']:.2f} (unmigrated {res['unmigrated_pesq'][256]:.2f})")
    res.update(pairs=pairs, round_trips=trips, sentences=sentences)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archive-seconds", type=float, default=3600, help="length of the recorded archives (default 3600)")
    ap.add_argument("--counts", default="128,256,512", help="oscillator counts for the archives (default 128,256,512)")
    ap.add_argument("--clip-runs", type=int, default=2, help="exports per clip; the fastest counts (default 2)")
    ap.add_argument("--sentences", type=int, default=5, help="speech sentences for migration quality (default 5)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: clips, archives, migration")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    counts = [int(x) for x in args.counts.split(",")]
    if any(n not in SEED_MB for n in counts):
        raise SystemExit("--counts: each must be 128, 256 or 512")
    url = bench_database()
    results = {"machine": {"cores": os.cpu_count()}}
    with tempfile.TemporaryDirectory(prefix="psiarc-bench-", dir="/var/tmp") as d:
        tmp = Path(d)
        os.environ["PSIMEM_HOME"] = str(tmp / "home")
        if "clips" not in skip:
            results["clips"] = bench_clips(url, tmp, args.clip_runs)
        if "archives" not in skip:
            results["archives"] = bench_archives(url, tmp, args.archive_seconds, counts)
    if "migration" not in skip:
        results["migration"] = bench_migration(args.sentences)
    report("psiarc", results)


if __name__ == "__main__":
    main()
