"""The ψ oscillator core: three bands (spec 003), two drives, surprise and centroids.

Bands
  micro  N = 128/256/512 oscillators, one frame every 20 ms: phase and amplitude each.
         Oscillator k sits at the centre of STFT bin k (n_fft = 2N - 2, hop 20 ms), so
         a micro frame *is* a spectral frame and replay is an inverse STFT.
  meso   every 250 ms: a 32-d state, the micro log-amplitude spectrum of the window
         projected on the first 32 DCT-II axes (the Karhunen-Loeve/PCA basis of smooth
         log spectra, fixed so meso states of different utterances share axes), plus a
         ring of 32 meso oscillators (~4 Hz, syllable rate) coupled Kuramoto-style to each
         other and driven upward by the micro band's energy in their spectral region.
  macro  every 2 s: emotion vector (arousal, valence, dominance proxies) and tempo, from
         8 slow (~0.5 Hz) oscillators driven upward by the meso band's order parameter;
         downward, the macro phase bends the micro band's pitch (declination) in synthesis.

Drives
  analysis   a WAV (e.g. espeak-ng's voice of a reply) -> STFT phases/amplitudes (the
             micro band is locked to the observation).
  synthesis  a network stepped at fixed dt from text/prosody events: a glottal pitch
             oscillator, micro oscillators pulled Kuramoto-style to its harmonics,
             syllable envelopes from the meso band.

Surprise (spec 003, N400 proxy): a linear (Koopman-lifted, affine) one-step predictor of
the micro state z_t (its 32 DCT log-amplitude coordinates), fitted online by ridge
regression with forgetting; ε_t = ||z_pred - z_obs||. An event fires when ε_t exceeds
the running mean of ε by `surprise_sigma` running standard deviations (and `min_epsilon`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

MICRO_MS, MESO_MS, MACRO_MS = 20, 250, 2000
MESO_DIM = 32
CENTROID_MS = 2000


def sample_rate_for(n: int) -> int:
    """8 kHz for 128 oscillators (n_fft 254 must cover the 20 ms hop), 16 kHz otherwise."""
    return 8000 if n == 128 else 16000


@dataclass(frozen=True)
class Geometry:
    n: int
    sample_rate: int

    @classmethod
    def for_oscillators(cls, n: int) -> "Geometry":
        if n not in (128, 256, 512):
            raise ValueError(f"oscillators: must be 128, 256 or 512, got {n}")
        return cls(n, sample_rate_for(n))

    @property
    def n_fft(self) -> int:
        return 2 * self.n - 2

    @property
    def hop(self) -> int:
        return self.sample_rate * MICRO_MS // 1000

    @property
    def window(self) -> np.ndarray:
        return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.n_fft) / self.n_fft)).astype(np.float64)

    @property
    def bin_hz(self) -> np.ndarray:
        return np.arange(self.n) * self.sample_rate / self.n_fft


def _dct_basis(n: int, k: int = MESO_DIM) -> np.ndarray:
    i = np.arange(n)
    b = np.cos(np.pi / n * (i[None, :] + 0.5) * np.arange(k)[:, None]) * math.sqrt(2 / n)
    b[0] /= math.sqrt(2)
    return b.astype(np.float32)


# ------------------------------------------------------------------ analysis / synthesis

def analyse(x: np.ndarray, geo: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """STFT of a mono signal in [-1, 1]: (phases, amplitudes), each frames x N float32.
    Frame t is centred on sample t*hop (the signal is zero-padded by n_fft/2 each side)."""
    x = np.asarray(x, dtype=np.float64)
    half = geo.n_fft // 2
    frames = -(-len(x) // geo.hop) + 1
    pad = np.zeros(half + frames * geo.hop + geo.n_fft)
    pad[half:half + len(x)] = x
    idx = np.arange(frames)[:, None] * geo.hop + np.arange(geo.n_fft)[None, :]
    spec = np.fft.rfft(pad[idx] * geo.window, axis=1)
    return (np.mod(np.angle(spec), 2 * np.pi).astype(np.float32), np.abs(spec).astype(np.float32))


def synthesise(phases: np.ndarray, amps: np.ndarray, geo: Geometry, n_samples: int | None = None) -> np.ndarray:
    """Inverse of analyse(): least-squares overlap-add, deterministic (fixed dt, no state)."""
    spec = np.asarray(amps, dtype=np.float64) * np.exp(1j * np.asarray(phases, dtype=np.float64))
    frames = spec.shape[0]
    w = geo.window
    seg = np.fft.irfft(spec, n=geo.n_fft, axis=1) * w
    length = (frames - 1) * geo.hop + geo.n_fft
    out = np.zeros(length)
    norm = np.zeros(length)
    for t in range(frames):
        s = t * geo.hop
        out[s:s + geo.n_fft] += seg[t]
        norm[s:s + geo.n_fft] += w * w
    half = geo.n_fft // 2
    y = out / np.maximum(norm, 1e-8)
    y = y[half:]
    n = n_samples if n_samples is not None else (frames - 1) * geo.hop
    return y[:n].astype(np.float32)


# ------------------------------------------------------------------ the bands

@dataclass
class BandEvent:
    band: int                 # 1 meso, 2 macro
    offset_ms: int
    vector: np.ndarray
    emo_vec: np.ndarray | None = None


@dataclass
class SurpriseEvent:
    offset_ms: int
    epsilon: float
    threshold: float


@dataclass
class Centroid:
    band: int
    offset_ms: int
    vector: np.ndarray


@dataclass
class Step:
    """What one 20 ms tick produced."""
    offset_ms: int
    phases: np.ndarray
    amps: np.ndarray
    events: list = field(default_factory=list)


class SurprisePredictor:
    """Affine one-step linear predictor z_{t+1} = A [z_t; 1], ridge-fitted with forgetting."""

    def __init__(self, dim: int, forget: float = 0.97, ridge: float = 1e-2, sigma: float = 5.0,
                 min_epsilon: float = 1.0, warmup: int = 8):
        d = dim + 1
        self.cxx = np.eye(d) * ridge
        self.cyx = np.zeros((dim, d))
        self.forget, self.ridge, self.sigma, self.min_epsilon, self.warmup = forget, ridge, sigma, min_epsilon, warmup
        self.prev: np.ndarray | None = None
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def observe(self, z: np.ndarray) -> tuple[float, float, bool] | None:
        z = z.astype(np.float64)
        out = None
        if self.prev is not None:
            x = np.append(self.prev, 1.0)
            pred = np.linalg.solve(self.cxx, self.cyx.T).T @ x
            eps = float(np.linalg.norm(pred - z))
            thr = max(self.min_epsilon, self.mean + self.sigma * math.sqrt(self.var))
            fired = self.n >= self.warmup and eps > thr
            out = (eps, thr, fired)
            if not fired:  # a surprise does not become the new normal at once
                a = 0.1 if self.n >= self.warmup else 1.0 / (self.n + 1)
                delta = eps - self.mean
                self.mean += a * delta
                self.var = (1 - a) * (self.var + a * delta * delta)
            self.n += 1
            self.cxx = self.forget * self.cxx + np.outer(x, x) + (1 - self.forget) * self.ridge * np.eye(len(x))
            self.cyx = self.forget * self.cyx + np.outer(z, x)
        self.prev = z
        return out


def macro_event(offset_ms: int, energy, meso_vectors: list, macro_theta: np.ndarray) -> BandEvent:
    """The macro frame of a 2 s window: emotion proxies and tempo from the window's frame
    energies (the last 100 micro frames) and meso states, plus the macro order parameter."""
    e = np.asarray(energy if len(energy) else [0.0], dtype=np.float64)
    db = 10 * np.log10(e + 1e-12)
    loud = db > db.max() - 30
    # syllable tempo: peaks of the frame energy envelope per second
    env = np.convolve(db, np.ones(3) / 3, mode="same")
    peaks = int(np.sum((env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]) & loud[1:-1])) if len(env) > 2 else 0
    tempo = peaks / (len(e) * MICRO_MS / 1000)
    meso = np.asarray(meso_vectors or [np.zeros(MESO_DIM)])
    arousal = float(np.tanh((db.mean() + 40) / 20))
    valence = float(np.tanh(meso[:, 1].mean() / 10)) if meso.shape[0] else 0.0   # spectral tilt
    dominance = float(np.tanh(db[loud].std() / 10)) if loud.any() else 0.0
    r = float(np.abs(np.exp(1j * macro_theta).mean()))
    emo = np.array([arousal, valence, dominance], dtype=np.float32)
    v = np.array([tempo, r, float(db.mean()), float(loud.mean())], dtype=np.float32)
    return BandEvent(2, offset_ms, v, emo)


class OscillatorCore:
    """One stream's three-band oscillator state. step_observed() (analysis) or
    step_network() (synthesis) advance it by one 20 ms micro frame."""

    def __init__(self, n: int = 256, seed: int = 0, surprise_sigma: float = 5.0, coupling: float = 2.0,
                 upward_gain: float = 0.15, downward_gain: float = 0.07):
        self.geo = Geometry.for_oscillators(n)
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.dct = _dct_basis(n)
        self.t_ms = 0
        self.K = coupling
        self.up, self.down = upward_gain, downward_gain
        # micro network state (synthesis)
        self.omega = 2 * np.pi * self.geo.bin_hz
        self.theta = self.rng.uniform(0, 2 * np.pi, n)
        self.glottal = 0.0
        # meso: 32 oscillators near 4 Hz; macro: 8 near 0.5 Hz
        self.meso_theta = self.rng.uniform(0, 2 * np.pi, MESO_DIM)
        self.meso_omega = 2 * np.pi * self.rng.normal(4.0, 0.3, MESO_DIM)
        self.macro_theta = self.rng.uniform(0, 2 * np.pi, 8)
        self.macro_omega = 2 * np.pi * self.rng.normal(0.5, 0.05, 8)
        self.group_starts = np.array([g[0] for g in np.array_split(np.arange(n), MESO_DIM)])
        self.surprise = SurprisePredictor(MESO_DIM, sigma=surprise_sigma)
        # windows for meso / macro / centroids
        self._meso_acc: list[np.ndarray] = []
        self._macro_acc: list[np.ndarray] = []
        self._energy: list[float] = []
        self._cent = {0: [], 1: [], 2: []}
        self._next_meso, self._next_macro, self._next_centroid = MESO_MS, MACRO_MS, CENTROID_MS

    # -------- cross-band dynamics
    def _upward(self, amps: np.ndarray, dt: float) -> None:
        a = amps.astype(np.float64)
        energy = np.add.reduceat(a * a, self.group_starts)
        drive = np.log1p(energy / (energy.mean() + 1e-12))
        r_meso = np.exp(1j * self.meso_theta).mean()
        self.meso_theta = np.mod(self.meso_theta + dt * (
            self.meso_omega + self.K * np.abs(r_meso) * np.sin(np.angle(r_meso) - self.meso_theta)
            + self.up * drive * np.sin(-self.meso_theta)), 2 * np.pi)
        r_meso = np.exp(1j * self.meso_theta).mean()
        r_macro = np.exp(1j * self.macro_theta).mean()
        self.macro_theta = np.mod(self.macro_theta + dt * (
            self.macro_omega + self.K * np.abs(r_macro) * np.sin(np.angle(r_macro) - self.macro_theta)
            + self.up * np.abs(r_meso) * np.sin(np.angle(r_meso) - self.macro_theta)), 2 * np.pi)

    def _state(self, amps: np.ndarray) -> np.ndarray:
        return self.dct @ np.log(amps.astype(np.float32) + 1e-6)

    def _bookkeep(self, amps: np.ndarray, events: list) -> None:
        z = self._state(amps)
        s = self.surprise.observe(z)
        if s is not None and s[2]:
            events.append(SurpriseEvent(self.t_ms, s[0], s[1]))
        self._meso_acc.append(z)
        a = amps.astype(np.float64)
        self._energy.append(float(a @ a))
        self._cent[0].append(z)
        end = self.t_ms + MICRO_MS
        if end >= self._next_meso:
            v = np.mean(self._meso_acc, axis=0).astype(np.float32)
            events.append(BandEvent(1, self._next_meso - MESO_MS, v))
            self._macro_acc.append(v)
            self._cent[1].append(v)
            self._meso_acc = []
            self._next_meso += MESO_MS
        if end >= self._next_macro:
            events.append(self._macro_event(self._next_macro - MACRO_MS))
            self._next_macro += MACRO_MS
        if end >= self._next_centroid:
            for band in (0, 1, 2):
                if self._cent[band]:
                    events.append(Centroid(band, self._next_centroid - CENTROID_MS,
                                           np.mean(self._cent[band], axis=0).astype(np.float32)))
                    self._cent[band] = []
            self._next_centroid += CENTROID_MS

    def _macro_event(self, offset_ms: int) -> BandEvent:
        ev = macro_event(offset_ms, self._energy[-MACRO_MS // MICRO_MS:], self._macro_acc, self.macro_theta)
        self._macro_acc = []
        self._cent[2].append(np.concatenate([ev.emo_vec, ev.vector]))
        return ev

    def finish(self) -> list:
        """Close the last partial meso / macro windows and centroids at the end of an utterance."""
        events: list = []
        end = self.t_ms
        if self._meso_acc:
            v = np.mean(self._meso_acc, axis=0).astype(np.float32)
            events.append(BandEvent(1, self._next_meso - MESO_MS, v))
            self._macro_acc.append(v)
            self._cent[1].append(v)
            self._meso_acc = []
        if self._energy and self._next_macro - MACRO_MS < end:
            events.append(self._macro_event(self._next_macro - MACRO_MS))
        for band in (0, 1, 2):
            if self._cent[band]:
                events.append(Centroid(band, self._next_centroid - CENTROID_MS,
                                       np.mean(self._cent[band], axis=0).astype(np.float32)))
                self._cent[band] = []
        return events

    # -------- the two drives
    def step_observed(self, phases: np.ndarray, amps: np.ndarray) -> Step:
        """Analysis mode: the micro band locks to an observed spectral frame."""
        events: list = []
        self._upward(amps, MICRO_MS / 1000)
        self._bookkeep(amps, events)
        st = Step(self.t_ms, phases, amps, events)
        self.t_ms += MICRO_MS
        return st

    def step_network(self, f0: float, envelope: float, formants: tuple[float, ...], jitter: float = 0.001) -> Step:
        """Synthesis mode: advance the network by dt = 20 ms. Micro oscillator k runs at
        its own ω_k (the centre of spectral bin k) with mean-field Kuramoto coupling
        K·R·sin(Ψ - θ_k) and a little phase jitter; the glottal oscillator runs at f0, bent
        downward by the macro band's phase (declination), and shapes the micro amplitudes
        into a harmonic comb under formant and envelope (the meso band's syllables)."""
        dt = MICRO_MS / 1000
        f0 = f0 * (1.0 + self.down * float(np.cos(self.macro_theta).mean()))
        self.glottal = (self.glottal + 2 * np.pi * f0 * dt) % (2 * np.pi)
        r = np.exp(1j * self.theta).mean()
        self.theta = np.mod(self.theta + dt * (self.omega + self.K * np.abs(r) * np.sin(np.angle(r) - self.theta))
                            + self.rng.normal(0.0, jitter, self.n), 2 * np.pi)
        hz = self.geo.bin_hz
        h = np.maximum(np.rint(hz / max(f0, 1.0)), 1.0)
        near = np.exp(-0.5 * ((hz - h * f0) / (0.2 * f0 + 1e-9)) ** 2)
        shape = sum(np.exp(-0.5 * ((hz - f) / 150.0) ** 2) for f in formants) + 0.05
        tilt = 1.0 / (1.0 + hz / 500.0)
        amps = (envelope * near * shape * tilt * 20.0).astype(np.float32)
        phases = self.theta.astype(np.float32)
        events: list = []
        self._upward(amps, dt)
        self._bookkeep(amps, events)
        st = Step(self.t_ms, phases, amps, events)
        self.t_ms += MICRO_MS
        return st


# ------------------------------------------------------------------ text -> prosody events

_VOWELS = {"a": (800, 1200), "e": (500, 1900), "i": (300, 2300), "o": (500, 900), "u": (350, 800), "y": (300, 2200)}


def prosody_events(text: str) -> list[tuple[int, float, float, tuple[float, float]]]:
    """(frames, f0 Hz, envelope, formants) per syllable-sized event from plain text: one
    syllable per vowel group (~180 ms), pitch declining over each phrase with a rise on
    questions, pauses at punctuation."""
    out = []
    for phrase in re.split(r"(?<=[.!?,;:])\s+", text.strip()):
        groups = re.findall(r"[aeiouy]+", phrase.lower()) or ["a"]
        n = len(groups)
        question = phrase.rstrip().endswith("?")
        for i, g in enumerate(groups):
            pos = i / max(n - 1, 1)
            f0 = 130.0 * (1.0 - 0.15 * pos) * (1.0 + (0.25 * pos * pos if question else 0.0))
            out.append((9, f0, 1.0 if i % 2 == 0 else 0.7, _VOWELS.get(g[0], (500, 1500))))
        out.append((6 if phrase and phrase[-1] in ",;:" else 12, 110.0, 0.0, (500, 1500)))
    return out


class CoreBatch:
    """S streams' cores stepped together: one call per 20 ms tick advances every stream,
    with the state held as (S, ...) arrays instead of S objects, so a tick costs a few
    numpy calls whatever S is. Stepping OscillatorCore objects one by one costs ~100-140 µs
    per stream-frame, mostly Python and small-array overhead; batched at S = 100 it is
    ~30 µs, two thirds of it the surprise predictor's 33 x 33 ridge solve, kept as it is
    so that ε stays bit for bit the same.

    Row s evolves bit for bit as cores[s] would stepped alone: elementwise operations are
    the same; reductions run along the same contiguous axis (numpy sums each row as it
    sums a 1-d array); and every product goes through stacked matmul, which calls the
    same BLAS gemv/dot per row as the single core's `@` (a single gemm over all rows
    would sum in another order). tests/test_psi_batch.py holds it to that.

    The streams share one clock (they start together, as run_streams starts them);
    drop() removes finished rows. Events are returned as (row, event) pairs.
    """

    def __init__(self, cores: list[OscillatorCore]):
        c0 = cores[0]
        if any(c.n != c0.n or c.t_ms != c0.t_ms or (c.K, c.up, c.down) != (c0.K, c0.up, c0.down)
               or (c.surprise.forget, c.surprise.ridge, c.surprise.min_epsilon, c.surprise.warmup)
               != (c0.surprise.forget, c0.surprise.ridge, c0.surprise.min_epsilon, c0.surprise.warmup)
               or c.surprise.prev is not None for c in cores):
            raise ValueError("CoreBatch: cores must be fresh, with the same N and parameters")
        self.geo, self.n, self.dct, self.group_starts = c0.geo, c0.n, c0.dct, c0.group_starts
        self.K, self.up, self.down = c0.K, c0.up, c0.down
        self.t_ms = c0.t_ms
        self.omega = c0.omega
        self.rngs = [c.rng for c in cores]          # per-stream jitter draws continue each core's sequence
        self.theta = np.stack([c.theta for c in cores])
        self.glottal = np.zeros(len(cores))
        self.meso_theta = np.stack([c.meso_theta for c in cores])
        self.meso_omega = np.stack([c.meso_omega for c in cores])
        self.macro_theta = np.stack([c.macro_theta for c in cores])
        self.macro_omega = np.stack([c.macro_omega for c in cores])
        sp = c0.surprise
        self.forget, self.ridge, self.min_epsilon, self.warmup = sp.forget, sp.ridge, sp.min_epsilon, sp.warmup
        self.sigma = np.array([c.surprise.sigma for c in cores])
        self._ridge_eye = (1 - sp.forget) * sp.ridge * np.eye(MESO_DIM + 1)
        self.cxx = np.stack([c.surprise.cxx for c in cores])
        self.cyx = np.stack([c.surprise.cyx for c in cores])
        self.prev: np.ndarray | None = None
        self.seen = 0                                # SurprisePredictor.n: the same for every row
        self.mean = np.zeros(len(cores))
        self.var = np.zeros(len(cores))
        # per-tick (S, ...) arrays of the open windows; meso vectors per window
        self._meso_acc: list[np.ndarray] = []
        self._energy: list[np.ndarray] = []          # only the last 2 s are ever read
        self._macro_acc: list[np.ndarray] = []
        self._cent: dict[int, list[np.ndarray]] = {0: [], 1: [], 2: []}
        self._next_meso, self._next_macro, self._next_centroid = MESO_MS, MACRO_MS, CENTROID_MS

    def __len__(self) -> int:
        return len(self.theta)

    # -------- cross-band dynamics (OscillatorCore._upward, row-wise)
    def _upward(self, amps: np.ndarray, dt: float) -> np.ndarray:
        a = amps.astype(np.float64)
        energy = np.add.reduceat(a * a, self.group_starts, axis=1)
        drive = np.log1p(energy / (energy.mean(axis=1, keepdims=True) + 1e-12))
        r_meso = np.exp(1j * self.meso_theta).mean(axis=1, keepdims=True)
        self.meso_theta = np.mod(self.meso_theta + dt * (
            self.meso_omega + self.K * np.abs(r_meso) * np.sin(np.angle(r_meso) - self.meso_theta)
            + self.up * drive * np.sin(-self.meso_theta)), 2 * np.pi)
        r_meso = np.exp(1j * self.meso_theta).mean(axis=1, keepdims=True)
        r_macro = np.exp(1j * self.macro_theta).mean(axis=1, keepdims=True)
        self.macro_theta = np.mod(self.macro_theta + dt * (
            self.macro_omega + self.K * np.abs(r_macro) * np.sin(np.angle(r_macro) - self.macro_theta)
            + self.up * np.abs(r_meso) * np.sin(np.angle(r_meso) - self.macro_theta)), 2 * np.pi)
        return a

    def _observe(self, z: np.ndarray) -> list:
        """SurprisePredictor.observe for every row at once; returns the surprise events."""
        z = z.astype(np.float64)
        events = []
        if self.prev is not None:
            x = np.concatenate([self.prev, np.ones((len(z), 1))], axis=1)
            w = np.linalg.solve(self.cxx, self.cyx.transpose(0, 2, 1))
            pred = (w.transpose(0, 2, 1) @ x[:, :, None])[:, :, 0]
            d = pred - z
            eps = np.sqrt((d[:, None, :] @ d[:, :, None])[:, 0, 0])
            thr = np.maximum(self.min_epsilon, self.mean + self.sigma * np.sqrt(self.var))
            fired = (self.seen >= self.warmup) & (eps > thr)
            a = 0.1 if self.seen >= self.warmup else 1.0 / (self.seen + 1)
            delta = eps - self.mean
            # a surprise does not become the new normal at once
            self.mean = np.where(fired, self.mean, self.mean + a * delta)
            self.var = np.where(fired, self.var, (1 - a) * (self.var + a * delta * delta))
            self.seen += 1
            # in place (no (S, 33, 33) temporaries), the same operations in the same order
            self.cxx *= self.forget
            self.cxx += x[:, :, None] * x[:, None, :]
            self.cxx += self._ridge_eye
            self.cyx *= self.forget
            self.cyx += z[:, :, None] * x[:, None, :]
            events = [(int(s), SurpriseEvent(self.t_ms, float(eps[s]), float(thr[s]))) for s in np.flatnonzero(fired)]
        self.prev = z
        return events

    def _bookkeep(self, amps: np.ndarray, a64: np.ndarray) -> list:
        la = np.log(amps.astype(np.float32) + 1e-6)
        z = (self.dct[None] @ la[:, :, None])[:, :, 0]
        events = self._observe(z)
        self._meso_acc.append(z)
        self._energy.append((a64[:, None, :] @ a64[:, :, None])[:, 0, 0])
        del self._energy[:-MACRO_MS // MICRO_MS]
        self._cent[0].append(z)
        end = self.t_ms + MICRO_MS
        if end >= self._next_meso:
            events += self._close_meso()
            self._next_meso += MESO_MS
        if end >= self._next_macro:
            events += self._close_macro()
            self._next_macro += MACRO_MS
        if end >= self._next_centroid:
            events += self._centroids()
            self._next_centroid += CENTROID_MS
        return events

    def _close_meso(self) -> list:
        v = np.mean(np.stack(self._meso_acc, axis=1), axis=1).astype(np.float32)
        self._macro_acc.append(v)
        self._cent[1].append(v)
        self._meso_acc = []
        return [(s, BandEvent(1, self._next_meso - MESO_MS, v[s])) for s in range(len(v))]

    def _close_macro(self) -> list:
        # every 2 s: a few small per-row computations, shared with OscillatorCore
        e = np.stack(self._energy, axis=1)
        out = []
        for s in range(len(self)):
            ev = macro_event(self._next_macro - MACRO_MS, e[s], [m[s] for m in self._macro_acc], self.macro_theta[s])
            out.append((s, ev))
        self._macro_acc = []
        self._cent[2].append(np.stack([np.concatenate([ev.emo_vec, ev.vector]) for _, ev in out]))
        return out

    def _centroids(self) -> list:
        out = []
        for band in (0, 1, 2):
            if self._cent[band]:
                c = np.mean(np.stack(self._cent[band], axis=1), axis=1).astype(np.float32)
                out += [(s, Centroid(band, self._next_centroid - CENTROID_MS, c[s])) for s in range(len(c))]
                self._cent[band] = []
        return out

    def finish(self) -> list:
        """OscillatorCore.finish for every row: close the partial windows."""
        events: list = []
        if self._meso_acc:
            events += self._close_meso()
        if self._energy and self._next_macro - MACRO_MS < self.t_ms:
            events += self._close_macro()
        return events + self._centroids()

    def drop(self, keep: np.ndarray) -> None:
        """Keep only the rows where `keep` is true (finished streams leave the batch; call
        finish() on a batch of them first, e.g. via take())."""
        self._apply(lambda x: x[keep])
        self.rngs = [r for r, k in zip(self.rngs, keep) if k]

    def take(self, rows: np.ndarray) -> "CoreBatch":
        """A copy of some rows as their own batch (to finish() them)."""
        b = object.__new__(CoreBatch)
        b.__dict__.update(self.__dict__)
        b._meso_acc, b._energy, b._macro_acc = list(self._meso_acc), list(self._energy), list(self._macro_acc)
        b._cent = {k: list(v) for k, v in self._cent.items()}
        b._apply(lambda x: x[rows])
        b.rngs = [self.rngs[i] for i in rows]
        return b

    def _apply(self, f) -> None:
        for name in ("theta", "glottal", "meso_theta", "meso_omega", "macro_theta", "macro_omega", "sigma",
                     "cxx", "cyx", "mean", "var"):
            setattr(self, name, f(getattr(self, name)))
        if self.prev is not None:
            self.prev = f(self.prev)
        for lst in (self._meso_acc, self._energy, self._macro_acc, *self._cent.values()):
            lst[:] = [f(x) for x in lst]

    # -------- the two drives (as OscillatorCore's, one row per stream)
    def step_observed(self, phases: np.ndarray, amps: np.ndarray) -> list:
        """Analysis mode: rows lock to observed spectral frames (S x N each). Returns the
        tick's events as (row, event); the micro frames are the observations themselves."""
        a64 = self._upward(amps, MICRO_MS / 1000)
        events = self._bookkeep(amps, a64)
        self.t_ms += MICRO_MS
        return events

    def step_network(self, f0: np.ndarray, envelope: np.ndarray, formants: np.ndarray,
                     jitter: float = 0.001) -> tuple[np.ndarray, np.ndarray, list]:
        """Synthesis mode: f0 and envelope (S,), formants (S, k). Returns (phases, amps, events)."""
        dt = MICRO_MS / 1000
        f0 = np.asarray(f0, dtype=np.float64)[:, None]
        envelope = np.asarray(envelope, dtype=np.float64)[:, None]
        formants = np.asarray(formants, dtype=np.float64)
        f0 = f0 * (1.0 + self.down * np.cos(self.macro_theta).mean(axis=1, keepdims=True))
        self.glottal = (self.glottal + 2 * np.pi * f0[:, 0] * dt) % (2 * np.pi)
        r = np.exp(1j * self.theta).mean(axis=1, keepdims=True)
        # each stream's own generator, so each row draws what its core would have drawn
        noise = np.stack([g.normal(0.0, jitter, self.n) for g in self.rngs])
        self.theta = np.mod(self.theta + dt * (self.omega + self.K * np.abs(r) * np.sin(np.angle(r) - self.theta))
                            + noise, 2 * np.pi)
        hz = self.geo.bin_hz
        h = np.maximum(np.rint(hz / np.maximum(f0, 1.0)), 1.0)
        near = np.exp(-0.5 * ((hz - h * f0) / (0.2 * f0 + 1e-9)) ** 2)
        shape = 0
        for k in range(formants.shape[1]):      # sum() over the formants, in their order
            shape = shape + np.exp(-0.5 * ((hz - formants[:, k:k + 1]) / 150.0) ** 2)
        shape = shape + 0.05
        tilt = 1.0 / (1.0 + hz / 500.0)
        amps = (envelope * near * shape * tilt * 20.0).astype(np.float32)
        phases = self.theta.astype(np.float32)
        a64 = self._upward(amps, dt)
        events = self._bookkeep(amps, a64)
        self.t_ms += MICRO_MS
        return phases, amps, events
