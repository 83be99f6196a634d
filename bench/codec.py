"""ψ codec: codec v0 (the seed's pipeline) against codec v1, same frames, same run.

Speech-derived frames: sentences spoken by espeak-ng (16 kHz), analysed into N = 256
bins every 20 ms (oscillator core analysis mode). Oscillator-network frames: the core's
synthesis mode stepped from the same sentences' text. For each codec and run length
(frames per row): bytes/frame, encode and decode µs/frame, phase error (mean, max),
amplitude relative error, and for speech PESQ (wide band) and STOI of the regenerated
audio against the original, next to the unquantised round trip (analysis -> synthesis).
Also N = 128 and 512 sizes, and v0's zstd level 3 against its level 22.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from common import report, say

from realtime import codec_core as cc
from realtime.core import Geometry, OscillatorCore, analyse, prosody_events, synthesise
from realtime.process import speak
from realtime.replay import phase_error

SENTENCES = [
    "Honestly, I think the best part of the weekend was the long walk by the river.",
    "We should try the new bakery next time; they say the bread is wonderful.",
    "Did you manage to finish the report before the deadline on Friday?",
    "I'm sorry to hear that. Is there anything I can do to help you feel better?",
    "The train was forty minutes late, so I read half a novel on the platform.",
]


def run_codec(ph, amp, encode, per_row):
    sizes, enc_s, dec_s, rp, ra = 0, 0.0, 0.0, [], []
    for i in range(0, len(ph), per_row):
        t0 = time.perf_counter()
        blob, p, a = encode(ph[i:i + per_row], amp[i:i + per_row])
        t1 = time.perf_counter()
        dp, da, _ = cc.decode(blob)
        t2 = time.perf_counter()
        assert np.array_equal(dp, p) and np.array_equal(da, a), "decode is not bit-exact"
        sizes += len(blob)
        enc_s += t1 - t0
        dec_s += t2 - t1
        rp.append(dp)
        ra.append(da)
    rp, ra = np.concatenate(rp), np.concatenate(ra)
    err = phase_error(rp, ph)
    loud = amp > 2.0 ** cc.AMP_FLOOR_EXP
    rel = np.abs(ra[loud] - amp[loud]) / amp[loud]
    n = len(ph)
    return {"bytes_per_frame": sizes / n, "encode_us_per_frame": enc_s / n * 1e6, "decode_us_per_frame": dec_s / n * 1e6,
            "phase_error_mean_rad": float(err.mean()), "phase_error_max_rad": float(err.max()),
            "amp_rel_error_mean": float(rel.mean()), "amp_rel_error_max": float(rel.max())}, rp, ra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sentences", type=int, default=len(SENTENCES))
    args = ap.parse_args()
    from pesq import pesq
    from pystoi import stoi

    codecs = {
        "v0 (seed: int16, Δ along index, zstd -22), 1 frame/row": (lambda p, a: cc.encode_v0(p, a), 1),
        "v0, zstd level 3, 1 frame/row": (lambda p, a: cc.encode_v0(p, a, level=3), 1),
        "v0, 50 frames/row": (lambda p, a: cc.encode_v0(p, a), 50),
        "v1, 1 frame/row": (cc.encode_v1, 1),
        "v1, 10 frames/row": (cc.encode_v1, 10),
        "v1, 50 frames/row (psimem default)": (cc.encode_v1, 50),
    }
    results = {"speech": {}, "network": {}, "sizes_by_n": {}, "notes": []}
    geo = Geometry.for_oscillators(256)
    audio = [speak(s, geo.sample_rate) for s in SENTENCES[:args.sentences]]
    frames = [analyse(x, geo) for x in audio]
    say(f"speech: {len(audio)} espeak-ng sentences, {sum(len(f[0]) for f in frames)} frames of N = 256")
    unq = [synthesise(p, a, geo, len(x)) for x, (p, a) in zip(audio, frames)]
    pesq_unq = [pesq(geo.sample_rate, x, y, "wb") for x, y in zip(audio, unq)]
    stoi_unq = [stoi(x, y, geo.sample_rate) for x, y in zip(audio, unq)]
    results["speech"]["unquantised round trip"] = {"pesq_wb": float(np.mean(pesq_unq)), "stoi": float(np.mean(stoi_unq))}
    for name, (enc, per_row) in codecs.items():
        agg, pq, st = [], [], []
        for x, (p, a) in zip(audio, frames):
            r, rp, ra = run_codec(p, a, enc, per_row)
            y = synthesise(rp, ra, geo, len(x))
            pq.append(pesq(geo.sample_rate, x, y, "wb"))
            st.append(stoi(x, y, geo.sample_rate))
            agg.append((r, len(p)))
        tot = sum(n for _, n in agg)
        r = {k: (max(v[k] for v, _ in agg) if k.endswith("max_rad") or k.endswith("max") else
                 sum(v[k] * n for v, n in agg) / tot) for k in agg[0][0]}
        r.update(pesq_wb=float(np.mean(pq)), stoi=float(np.mean(st)),
                 pesq_delta_vs_unquantised=float(np.mean(pq) - np.mean(pesq_unq)),
                 pesq_worst_sentence_delta=float(min(a - b for a, b in zip(pq, pesq_unq))))
        results["speech"][name] = r
        say(f"speech  {name:<52} {r['bytes_per_frame']:7.1f} B/frame  enc {r['encode_us_per_frame']:7.1f} µs  "
            f"dec {r['decode_us_per_frame']:6.1f} µs  phase err mean {r['phase_error_mean_rad']:.2e} max "
            f"{r['phase_error_max_rad']:.2e}  PESQ {r['pesq_wb']:.3f} (Δ {r['pesq_delta_vs_unquantised']:+.3f})  "
            f"STOI {r['stoi']:.4f}")
    # oscillator-network frames (synthesis mode)
    for n in (256,):
        core = OscillatorCore(n, seed=1)
        steps = [core.step_network(f0, env, fm) for s in SENTENCES[:args.sentences]
                 for k, f0, env, fm in prosody_events(s) for _ in range(k)]
        ph = np.stack([s.phases for s in steps])
        amp = np.stack([s.amps for s in steps])
        say(f"network: {len(ph)} synthesis-mode frames of N = {n}")
        for name, (enc, per_row) in codecs.items():
            r, _, _ = run_codec(ph, amp, enc, per_row)
            results["network"][name] = r
            say(f"network {name:<52} {r['bytes_per_frame']:7.1f} B/frame  enc {r['encode_us_per_frame']:7.1f} µs  "
                f"dec {r['decode_us_per_frame']:6.1f} µs  phase err mean {r['phase_error_mean_rad']:.2e} max "
                f"{r['phase_error_max_rad']:.2e}")
    # bytes/frame at every N, speech and network, default run length
    for n in (128, 256, 512):
        g = Geometry.for_oscillators(n)
        xs = [speak(s, g.sample_rate) for s in SENTENCES[:2]]
        fr = [analyse(x, g) for x in xs]
        core = OscillatorCore(n, seed=1)
        steps = [core.step_network(f0, env, fm) for s in SENTENCES[:2] for k, f0, env, fm in prosody_events(s)
                 for _ in range(k)]
        sp = {v: np.mean([run_codec(p, a, enc, pr)[0]["bytes_per_frame"] for p, a in fr])
              for v, (enc, pr) in (("v0", codecs["v0 (seed: int16, Δ along index, zstd -22), 1 frame/row"]),
                                   ("v1", codecs["v1, 50 frames/row (psimem default)"]))}
        nw = {v: run_codec(np.stack([s.phases for s in steps]), np.stack([s.amps for s in steps]), enc, pr)[0]["bytes_per_frame"]
              for v, (enc, pr) in (("v0", codecs["v0 (seed: int16, Δ along index, zstd -22), 1 frame/row"]),
                                   ("v1", codecs["v1, 50 frames/row (psimem default)"]))}
        results["sizes_by_n"][n] = {"speech": sp, "network": nw, "raw_int16": 4 * n}
        say(f"N = {n}: speech v0 {sp['v0']:.0f} / v1 {sp['v1']:.0f} B/frame; network v0 {nw['v0']:.0f} / "
            f"v1 {nw['v1']:.0f} B/frame; raw int16 {4 * n} B")
    v0 = results["speech"]["v0 (seed: int16, Δ along index, zstd -22), 1 frame/row"]
    v1 = results["speech"]["v1, 50 frames/row (psimem default)"]
    n0 = results["network"]["v0 (seed: int16, Δ along index, zstd -22), 1 frame/row"]
    n1 = results["network"]["v1, 50 frames/row (psimem default)"]
    say(f"ratio v0/v1 bytes: speech {v0['bytes_per_frame'] / v1['bytes_per_frame']:.2f}x, network "
        f"{n0['bytes_per_frame'] / n1['bytes_per_frame']:.2f}x; encode speed v0/v1 "
        f"{v0['encode_us_per_frame'] / v1['encode_us_per_frame']:.1f}x")
    report("codec", results)


if __name__ == "__main__":
    main()
