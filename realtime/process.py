"""`psimem realtime`: voices turns through the oscillator core and records them.

Each utterance is a stream: analysis mode speaks the turn with espeak-ng (or reads a
WAV) and locks the micro band to its STFT; synthesis mode steps the network from the
text's prosody events. Streams advance one 20 ms tick at a time; streams that start on
the same tick share a clock and their oscillator networks are stepped as one batched
computation (core.CoreBatch); a stream may start later than tick 0 (start_tick), as
replies arrive. Paced to the wall clock with --pace. The writer buffers micro frames,
encodes closed runs in the slack of each tick and writes on utterance end or 2 s idle
from its own thread. SIGTERM flushes before exit. The process reports its peak memory.
"""
from __future__ import annotations

import io
import resource
import signal
import subprocess
import time
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import codec_core as cc
from .core import MICRO_MS, BandEvent, Centroid, CoreBatch, Geometry, OscillatorCore, SurpriseEvent, analyse, prosody_events
from .writer import PsiWriter, Utterance


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark (VmHWM: unlike ru_maxrss it restarts at
    exec, so a child does not inherit its parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


# ------------------------------------------------------------------ audio in / out

def speak(text: str, sample_rate: int, voice: str = "en-us", wpm: int = 165) -> np.ndarray:
    """espeak-ng's voice of `text`, resampled by sox to sample_rate, as float32 in [-1, 1]."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
                         check=True, capture_output=True).stdout
    pcm = subprocess.run(["sox", "-t", "wav", "-", "-r", str(sample_rate), "-c", "1", "-b", "16", "-t", "wav", "-"],
                         input=wav, check=True, capture_output=True).stdout
    return read_wav(io.BytesIO(pcm))[0]


def read_wav(path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    with wave.open(path if not isinstance(path, Path) else str(path)) as w:
        if w.getsampwidth() != 2:
            raise ValueError("wav: only 16-bit PCM is read")
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
        x = x.reshape(-1, w.getnchannels()).mean(axis=1)
        rate = w.getframerate()
    if sample_rate and rate != sample_rate:
        if isinstance(path, Path):
            pcm = subprocess.run(["sox", str(path), "-r", str(sample_rate), "-c", "1", "-b", "16", "-t", "wav", "-"],
                                 check=True, capture_output=True).stdout
            return read_wav(io.BytesIO(pcm))
        raise ValueError(f"wav: sample rate {rate}, expected {sample_rate}")
    return x, rate


def write_wav(path, x: np.ndarray, sample_rate: int) -> None:
    pcm = np.clip(np.rint(np.asarray(x) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


# ------------------------------------------------------------------ streams

@dataclass
class Turn:
    entry_id: str
    user_id: str
    content: str


class Stream:
    """One utterance being voiced: its core, its source of frames and its utterance row.
    run_streams steps streams together (a _Group's CoreBatch); step() steps this one alone
    with its own core, bit for bit the same. A stream is driven one way or the other."""

    def __init__(self, turn: Turn, n: int, mode: str, codec_version: int, start_ms: int,
                 audio: np.ndarray | None = None, seed: int = 0, surprise_sigma: float = 5.0,
                 start_tick: int = 0, keep_live: bool = True):
        self.turn = turn
        self.start_tick = start_tick          # run_streams' tick on which the stream arrives
        self.core = OscillatorCore(n, seed=seed, surprise_sigma=surprise_sigma)
        self.geo: Geometry = self.core.geo
        self.mode = mode
        h = cc.utterance_hash(uuid.UUID(turn.entry_id).bytes, turn.content)
        self.utt = Utterance(h, turn.user_id, turn.entry_id, mode, n, codec_version, self.geo.sample_rate, start_ms)
        if mode == "analysis":
            self.phases, self.amps = analyse(audio, self.geo)
            self.total = len(self.phases)
            # the live recording of a locked micro band is the observation itself: no copy
            self.live_phases, self.live_amps = self.phases, self.amps
        else:
            # per-frame f0, envelope and formants as arrays (32 bytes a frame, not a tuple each)
            ev = prosody_events(turn.content)
            reps = [e[0] for e in ev]
            self.plan = (np.repeat(np.array([e[1] for e in ev], dtype=np.float64), reps),
                         np.repeat(np.array([e[2] for e in ev], dtype=np.float64), reps),
                         np.repeat(np.array([e[3] for e in ev], dtype=np.float64).reshape(len(ev), -1), reps, axis=0))
            self.total = len(self.plan[0])
            # the live recording (what replay --verify compares with) grows with the utterance: kept only if asked
            self.live_phases = np.empty((self.total, n), dtype=np.float32) if keep_live else None
            self.live_amps = np.empty((self.total, n), dtype=np.float32) if keep_live else None
        self.i = 0
        self.surprises = 0

    @property
    def done(self) -> bool:
        return self.i >= self.total

    def step(self, writer: PsiWriter) -> None:
        if self.mode == "analysis":
            st = self.core.step_observed(self.phases[self.i], self.amps[self.i])
        else:
            f0, env, fm = self.plan
            st = self.core.step_network(float(f0[self.i]), float(env[self.i]), tuple(fm[self.i]))
        self._emit(writer, st.offset_ms, st.phases, st.amps, st.events)
        self.i += 1
        if self.done:
            self._finish(writer, self.core.finish())

    def _emit(self, writer, offset_ms, phases, amps, events) -> None:
        if self.live_phases is not None and self.mode != "analysis":
            self.live_phases[self.i] = phases
            self.live_amps[self.i] = amps
        writer.micro(self.utt.uttr_hash, self.utt.started_at_ms + offset_ms, phases, amps)
        for ev in events:
            self._event(writer, ev)

    def _finish(self, writer, events) -> None:
        for ev in events:
            self._event(writer, ev)
        writer.end(self.utt.uttr_hash, flush=False)   # written by this tick's writer.tick()

    def _event(self, writer, ev) -> None:
        h, u, t0 = self.utt.uttr_hash, self.utt.user_id, self.utt.started_at_ms
        if isinstance(ev, BandEvent):
            writer.band_frame(h, u, ev.band, t0 + ev.offset_ms, ev.vector, ev.emo_vec)
        elif isinstance(ev, SurpriseEvent):
            self.surprises += 1
            writer.surprise(h, u, t0 + ev.offset_ms, ev.epsilon, ev.threshold)
        elif isinstance(ev, Centroid):
            writer.centroid(h, u, ev.band, t0 + ev.offset_ms, ev.vector)


class _Group:
    """Streams of one N and mode that started together, stepped as one CoreBatch: a tick is
    a few numpy calls on (streams, N) arrays however many streams there are. The per-stream
    work left per tick is handing each frame to the writer (which queues a stream's run
    for encoding once per 50 frames) and, in analysis mode, picking each stream's
    observed frame."""

    def __init__(self, streams: list[Stream]):
        self.streams = streams                      # batch row k is self.streams[k]
        self.batch = CoreBatch([s.core for s in streams])
        self.analysis = streams[0].mode == "analysis"
        if not self.analysis:
            self.plans = {id(s): s.plan for s in streams}

    def step(self, writer: PsiWriter) -> None:
        live = self.streams
        t = live[0].i                               # one clock: every live stream is at frame t
        if self.analysis:
            phases = np.stack([s.phases[t] for s in live])
            amps = np.stack([s.amps[t] for s in live])
            events = self.batch.step_observed(phases, amps)
        else:
            plans = [self.plans[id(s)] for s in live]
            phases, amps, events = self.batch.step_network(np.array([p[0][t] for p in plans]),
                                                           np.array([p[1][t] for p in plans]),
                                                           np.stack([p[2][t] for p in plans]))
        writer.micro_rows([s.utt for s in live], t * MICRO_MS, phases, amps)
        for k, s in enumerate(live):
            if not self.analysis and s.live_phases is not None:   # analysis: the live recording is the input
                s.live_phases[t] = phases[k]
                s.live_amps[t] = amps[k]
            s.i = t + 1
        for k, ev in events:
            live[k]._event(writer, ev)
        done = np.array([s.done for s in live])
        if done.any():
            rows = np.flatnonzero(done)
            closing = [[] for _ in rows]
            for k, ev in self.batch.take(rows).finish():
                closing[k].append(ev)
            for k, evs in zip(rows, closing):
                live[k]._finish(writer, evs)
            self.batch.drop(~done)
            self.streams = [s for s, d in zip(live, done) if not d]

    @property
    def done(self) -> bool:
        return not self.streams


def groups(streams: list[Stream]) -> list[_Group]:
    by: dict[tuple, list[Stream]] = {}
    for s in streams:
        if not s.done:
            by.setdefault((s.core.n, s.mode), []).append(s)
    return [_Group(g) for g in by.values()]


class Stop:
    """SIGTERM / SIGINT turn into a flag the tick loop checks, so the writer flushes."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, h in self._old.items():
            signal.signal(sig, h)


def run_streams(streams: list[Stream], writer: PsiWriter, pace: bool = False, say=None,
                encode_margin_s: float = 0.003, admit_every: int = 1) -> dict:
    """Advance every stream one 20 ms tick at a time until all are done (or SIGTERM), then
    flush. A stream joins on its start_tick, or with admit_every = k on the next tick that
    is a multiple of k: streams joining on the same tick share a CoreBatch, so admitting
    arrivals every k ticks batches them at the cost of up to k - 1 ticks of delay before a
    stream's first frame (its timestamps stay those of its start). Each tick, after the
    cores step, the writer encodes queued runs until encode_margin_s before the tick's
    deadline (at least one run), so encoding fills the tick's slack instead of piling up
    on the ticks where runs close; the database write runs on the writer's thread.
    Returns timings and the peak memory."""
    say = say or (lambda m: None)
    t0 = time.perf_counter()
    ticks = 0
    max_lag = 0.0          # how far behind its 20 ms deadline a tick's work finished, at worst
    arriving = sorted(streams, key=lambda s: s.start_tick)     # not begun yet
    with Stop() as stop:
        say(f"voicing {len(streams)} utterance(s); SIGTERM or Ctrl-C stops and writes what was voiced")
        todo: list[_Group] = []
        while not stop.requested and (todo or arriving):
            if arriving and arriving[0].start_tick <= ticks and ticks % admit_every == 0:
                k = next((i for i, s in enumerate(arriving) if s.start_tick > ticks), len(arriving))
                new, arriving = arriving[:k], arriving[k:]
                for s in new:
                    writer.begin(s.utt)
                todo += groups(new)
            for g in todo:
                g.step(writer)
            todo = [g for g in todo if not g.done]
            ticks += 1
            deadline = t0 + ticks * 0.02
            writer.tick(deadline - encode_margin_s)
            delay = deadline - time.perf_counter()
            max_lag = max(max_lag, -delay)
            if pace and delay > 0:
                time.sleep(delay)
        loop_s = time.perf_counter() - t0
        if stop.requested:
            say("stop requested: flushing buffered frames before exit")
        writer.close()
    return {"seconds": time.perf_counter() - t0, "loop_seconds": loop_s, "max_lag_s": max_lag, "ticks": ticks,
            "frames": sum(s.i for s in streams), "peak_rss_mb": peak_rss_mb(), "stopped": stop.requested}


def save_live(stream: Stream, live_dir: Path) -> Path:
    """The live recording (unquantised float32 frames) that `psimem replay --verify` compares with."""
    live_dir.mkdir(parents=True, exist_ok=True)
    path = live_dir / f"{stream.utt.uttr_hash.hex()}.npz"
    np.savez(path, phases=stream.live_phases[:stream.i], amplitudes=stream.live_amps[:stream.i],
             sample_rate=stream.geo.sample_rate)
    return path


def load_turns(conn, entry_ids: list[str] | None = None, latest_assistant: int | None = None) -> list[Turn]:
    if entry_ids:
        rows = conn.execute("SELECT entry_id::text, user_id::text, content FROM memory.day_table "
                            "WHERE entry_id = ANY(%s::uuid[]) ORDER BY created_at, turn_number", (entry_ids,)).fetchall()
        missing = set(entry_ids) - {r[0] for r in rows}
        if missing:
            raise SystemExit(f"psimem: entry_id: unknown turn(s) {', '.join(sorted(missing))}")
    else:
        rows = conn.execute(
            "SELECT d.entry_id::text, d.user_id::text, d.content FROM memory.day_table d "
            "WHERE d.role = 'assistant' AND NOT EXISTS (SELECT 1 FROM psi.utterances u WHERE u.entry_id = d.entry_id) "
            # turns loaded in one statement share created_at; turn_number orders them within a session
            "ORDER BY d.created_at DESC, d.turn_number DESC LIMIT %s", (latest_assistant or 1,)).fetchall()
    return [Turn(*r) for r in rows]
