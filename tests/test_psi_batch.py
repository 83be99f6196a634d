"""The batched oscillator core (all streams' networks stepped as one numpy computation
per tick) gives, bit for bit, the frames and events of stepping each stream's own core."""
from __future__ import annotations

import numpy as np
import pytest

from realtime.core import BandEvent, Centroid, CoreBatch, Geometry, OscillatorCore, SurpriseEvent, analyse, prosody_events


def _same_event(a, b) -> bool:
    if type(a) is not type(b) or a.offset_ms != b.offset_ms:
        return False
    if isinstance(a, SurpriseEvent):
        return (a.epsilon, a.threshold) == (b.epsilon, b.threshold)
    if isinstance(a, BandEvent):
        return a.band == b.band and np.array_equal(a.vector, b.vector) and (
            a.emo_vec is None and b.emo_vec is None or np.array_equal(a.emo_vec, b.emo_vec))
    assert isinstance(a, Centroid)
    return a.band == b.band and np.array_equal(a.vector, b.vector)


def _signal(sr, seconds, seed):
    """Tones that switch pitch at a random moment, with noise: spectra that change, so the
    surprise predictor fires and every band has something to say."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f1, f2, at = rng.uniform(200, 900), rng.uniform(1000, 3000), rng.uniform(0.3, seconds - 0.3)
    x = np.where(t < at, np.sin(2 * np.pi * f1 * t), 0.5 * np.sin(2 * np.pi * f2 * t)) * 0.3
    return (x * (1 + 0.5 * np.sin(2 * np.pi * 4 * t)) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _run_batched(cores, inputs, mode):
    """Step a CoreBatch over streams of different lengths, finishing and dropping each
    stream when its input runs out, as run_streams does."""
    batch = CoreBatch(cores)
    rows = list(range(len(cores)))            # batch row -> stream
    frames = {s: [] for s in rows}
    events = {s: [] for s in rows}
    t = 0
    while rows:
        if mode == "analysis":
            ph = np.stack([inputs[s][0][t] for s in rows])
            amp = np.stack([inputs[s][1][t] for s in rows])
            evs = batch.step_observed(ph, amp)
        else:
            plan = [inputs[s][t] for s in rows]
            ph, amp, evs = batch.step_network(np.array([p[0] for p in plan]), np.array([p[1] for p in plan]),
                                              np.array([p[2] for p in plan]))
        for k, s in enumerate(rows):
            frames[s].append((ph[k], amp[k]))
        for k, ev in evs:
            events[rows[k]].append(ev)
        t += 1
        done = np.array([t >= (len(inputs[s][0]) if mode == "analysis" else len(inputs[s])) for s in rows])
        if done.any():
            for k, ev in batch.take(np.flatnonzero(done)).finish():
                events[[s for s, d in zip(rows, done) if d][k]].append(ev)
            batch.drop(~done)
            rows = [s for s, d in zip(rows, done) if not d]
    return frames, events


def _run_alone(core, inp, mode):
    frames, events = [], []
    steps = len(inp[0]) if mode == "analysis" else len(inp)
    for t in range(steps):
        st = core.step_observed(inp[0][t], inp[1][t]) if mode == "analysis" else core.step_network(*inp[t])
        frames.append((st.phases, st.amps))
        events += st.events
    return frames, events + core.finish()


@pytest.mark.parametrize("n,mode", [(256, "analysis"), (128, "analysis"), (512, "analysis"),
                                    (256, "synthesis"), (128, "synthesis")])
def test_batched_core_equals_cores_stepped_one_by_one(n, mode):
    geo = Geometry.for_oscillators(n)
    streams = 5
    if mode == "analysis":   # different lengths: streams leave the batch at different ticks
        inputs = [analyse(_signal(geo.sample_rate, 1.0 + 0.9 * s, s), geo) for s in range(streams)]
    else:
        texts = ["Is it raining where you are? I hope not.", "A short one.",
                 "That sounds lovely. Tell me more about the garden!", "Yes.", "Well, maybe; we will see, won't we?"]
        inputs = [[(f0, env, fm) for k, f0, env, fm in prosody_events(tx) for _ in range(k)] for tx in texts]
    frames, events = _run_batched([OscillatorCore(n, seed=s, surprise_sigma=3.0 + s) for s in range(streams)],
                                  inputs, mode)
    fired = 0
    for s in range(streams):
        ref_frames, ref_events = _run_alone(OscillatorCore(n, seed=s, surprise_sigma=3.0 + s), inputs[s], mode)
        assert len(frames[s]) == len(ref_frames)
        for (p, a), (rp, ra) in zip(frames[s], ref_frames):
            assert p.dtype == rp.dtype and a.dtype == ra.dtype
            assert np.array_equal(p, rp) and np.array_equal(a, ra)
        assert len(events[s]) == len(ref_events), (s, [type(e).__name__ for e in events[s]])
        assert all(_same_event(a, b) for a, b in zip(events[s], ref_events))
        fired += sum(isinstance(e, SurpriseEvent) for e in ref_events)
        assert {type(e) for e in ref_events} >= {BandEvent, Centroid}
    assert fired > 0          # the surprise path was exercised too


def test_batch_refuses_cores_that_cannot_share_a_tick():
    a, b = OscillatorCore(256, seed=0), OscillatorCore(128, seed=1)
    with pytest.raises(ValueError):
        CoreBatch([a, b])
