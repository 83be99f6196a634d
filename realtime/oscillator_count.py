"""Changing an utterance's oscillator count (128 <-> 256 <-> 512).

A micro frame of N oscillators is the STFT frame of a Hann-windowed segment
(core.Geometry: n_fft = 2N - 2, 8 kHz for N = 128 and 16 kHz otherwise, hop 20 ms, so
frame t is centred at t * 20 ms at every N). Each frame is resampled along the
frequency axis on its own, by a fixed linear map from the N source bins to the N'
target bins:

1. phases are referred to the frame centre (phi + pi*k: the Hann window is symmetric
   about n_fft/2, so a sinusoid's centred phase is the same at every N);
2. the inverse real FFT, at the target sample rate (bins above the target's Nyquist
   dropped, missing ones zero: band-limited interpolation), gives the frame's windowed
   segment, w_src(t) x(t), on the target's sample grid;
3. the segment is re-windowed by w_dst(t) / w_src(t) where the source window is
   non-zero (capped at RHO_MAX: near the window's ends, where w_src -> 0, the ratio
   would amplify the source's quantisation noise without bound). Where the target
   window is longer than the source's (N' > N), the signal outside the source window is
   not in the frame and stays zero: the target frame is a *truncated* target analysis;
4. the forward real FFT at the target size gives the target bins; phases are referred
   back to the window start.

Going to a shorter or equal window (512 -> 256, 512/256 -> 128) this is what analysing
the same audio at N' gives, up to the quantisation of the source frame; going to a
longer one it cannot invent what the source window never saw, and the overlap-added
audio of truncated frames is modulated at the 50 Hz frame rate (up to -1.5 dB between
frame centres for 256 -> 512). Because steps 2-3 are inverted exactly by the reverse
migration on the support both windows share, a round trip up and back (256 -> 512 ->
256) returns the original frames up to requantisation. Going down to 128 drops
everything above 4 kHz for good. bench/psiarc.py measures all of it (spectral and
phase error against a direct analysis, PESQ) and docs/psiarc.md reports it.

The meso band (32-d DCT of the micro log spectrum every 250 ms) and the band 0/1
centroids are defined on the micro frames, so they are recomputed from the migrated
frames exactly as the recorder computes them; macro frames (emotion vector and tempo),
surprise events and band 2 centroids describe the utterance, not its spectral grid,
and are kept.
"""
from __future__ import annotations

import heapq
from functools import lru_cache

import numpy as np

from . import codec_core as cc
from .core import CENTROID_MS, MESO_MS, Geometry, _dct_basis
from .psiarc import (KIND_CENTROID, KIND_FRAME, ArchiveReader, ArchiveWriter, CentroidEntry, CorruptArchive,
                     FrameEntry)

RHO_MAX = 8.0
MICRO, MESO = 0, 1


def _hann(geo: Geometry, tau: np.ndarray) -> np.ndarray:
    """The analysis window as a function of time from the frame centre (seconds)."""
    half = geo.n_fft / 2 / geo.sample_rate
    return np.where(np.abs(tau) < half, 0.5 + 0.5 * np.cos(np.pi * tau / half), 0.0)


@lru_cache(maxsize=16)
def _plan(n_src: int, n_dst: int):
    src, dst = Geometry.for_oscillators(n_src), Geometry.for_oscillators(n_dst)
    m = src.n_fft * dst.sample_rate // src.sample_rate     # samples of the source period at the target rate
    d = np.arange(m) - m // 2                              # sample offsets from the frame centre
    tau = d / dst.sample_rate
    ws, wt = _hann(src, tau), _hann(dst, tau)
    rho = np.where(ws > 0, np.minimum(wt / np.where(ws > 0, ws, 1.0), RHO_MAX), 0.0)
    half = dst.n_fft // 2
    lo, hi = max(-half, int(d[0])), min(half - 1, int(d[-1]))
    keep = (d >= lo) & (d <= hi)
    return src, dst, m, rho[keep], (lo + half, hi + half + 1), (int(np.flatnonzero(keep)[0]), int(np.flatnonzero(keep)[-1]) + 1)


def migrate_frames(phases: np.ndarray, amps: np.ndarray, n_dst: int) -> tuple[np.ndarray, np.ndarray]:
    """F x N phases and amplitudes resampled to F x n_dst (see the module docstring)."""
    phases = np.asarray(phases, dtype=np.float64)
    amps = np.asarray(amps, dtype=np.float64)
    n_src = phases.shape[1]
    if n_src == n_dst:
        return phases.astype(np.float32), amps.astype(np.float32)
    src, dst, m, rho, (a, b), (c, e) = _plan(n_src, n_dst)
    k = np.arange(n_src)
    spec = amps * np.exp(1j * (phases + np.pi * k))        # centre-referenced
    nb = m // 2 + 1
    if nb <= n_src:
        spec = spec[:, :nb].copy()
        if m % 2 == 0:
            spec[:, -1] = spec[:, -1].real                  # the new Nyquist bin of a real signal
    seg = np.fft.irfft(spec, n=m, axis=1) * (m / src.n_fft)
    seg = np.roll(seg, m // 2, axis=1)[:, c:e] * rho
    frame = np.zeros((len(seg), dst.n_fft))
    frame[:, a:b] = seg
    out = np.fft.rfft(np.roll(frame, -(dst.n_fft // 2), axis=1), axis=1)
    kd = np.arange(n_dst)
    return (np.mod(np.angle(out) - np.pi * kd, 2 * np.pi).astype(np.float32), np.abs(out).astype(np.float32))


class BandRecompute:
    """The meso frames and band 0/1 centroids of an utterance from its micro frames, as
    core.OscillatorCore computes them (same windows, same float32 arithmetic), fed one
    run at a time. feed() / finish() return (band, offset_ms, vector) events: band 1 for
    meso frames, ('c', band, offset_ms, vector) for centroids."""

    def __init__(self, n: int):
        self.dct = _dct_basis(n)
        self.t_ms = 0
        self._meso, self._cent0, self._cent1 = [], [], []
        self.next_meso, self.next_centroid = MESO_MS, CENTROID_MS

    @property
    def open_meso_ms(self) -> int:
        return self.next_meso - MESO_MS

    @property
    def open_centroid_ms(self) -> int:
        return self.next_centroid - CENTROID_MS

    def feed(self, amps: np.ndarray, frame_ms: int) -> list:
        out = []
        for a in np.asarray(amps, dtype=np.float32):
            z = self.dct @ np.log(a.astype(np.float32) + 1e-6)
            self._meso.append(z)
            self._cent0.append(z)
            end = self.t_ms + frame_ms
            if end >= self.next_meso:
                v = np.mean(self._meso, axis=0).astype(np.float32)
                out.append(("m", self.next_meso - MESO_MS, v))
                self._cent1.append(v)
                self._meso = []
                self.next_meso += MESO_MS
            if end >= self.next_centroid:
                out += self._centroids()
                self.next_centroid += CENTROID_MS
            self.t_ms += frame_ms
        return out

    def _centroids(self) -> list:
        out = []
        for band, acc in ((0, self._cent0), (1, self._cent1)):
            if acc:
                out.append(("c", band, self.next_centroid - CENTROID_MS, np.mean(acc, axis=0).astype(np.float32)))
        self._cent0, self._cent1 = [], []
        return out

    def finish(self) -> list:
        out = []
        if self._meso:
            v = np.mean(self._meso, axis=0).astype(np.float32)
            out.append(("m", self.next_meso - MESO_MS, v))
            self._cent1.append(v)
            self._meso = []
        return out + self._centroids()


def _as_entries(events: list, start_ms: int) -> list:
    out = []
    for ev in events:
        if ev[0] == "m":
            blob, _ = cc.encode_vector(ev[2])
            out.append(FrameEntry(MESO, start_ms + ev[1], MESO_MS, 1, blob, cc.crc32c(blob)))
        else:
            out.append(CentroidEntry(ev[1], start_ms + ev[2], ev[3], 1.0))
    return out


def migrate_archive(reader: ArchiveReader, f, n: int, passphrase: bytes | None = None, progress=None,
                    chunk_bytes: int | None = None) -> dict:
    """Write a copy of the archive with every utterance at n oscillators. Streams chunk by
    chunk; a small reorder buffer (about one meso window and one centroid window) keeps
    the output's (ts, kind, band) order while recomputed rows are merged in."""
    if n not in (128, 256, 512):
        raise ValueError(f"oscillator_count: must be 128, 256 or 512, got {n}")
    m = reader.manifest()
    src_counts = {}
    out_utts = []
    for u in m["utterances"]:
        v = dict(u)
        if u["oscillator_count"] != n:
            src_counts[u["oscillator_count"]] = True
            v.update(oscillator_count=n, sample_rate=Geometry.for_oscillators(n).sample_rate,
                     migrated_from={"oscillator_count": u["oscillator_count"], "sample_rate": u["sample_rate"]})
        out_utts.append(v)
    out_manifest = {**m, "utterances": out_utts}
    kw = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    w = ArchiveWriter(f, out_manifest, passphrase, **kw)
    stats = {"utterances": len(out_utts), "migrated": sum(u["oscillator_count"] != n for u in m["utterances"]),
             "kept": sum(u["oscillator_count"] == n for u in m["utterances"]), "from": sorted(src_counts),
             "micro_frames": 0}
    current = None
    heap: list = []
    bands = None
    tie = 0

    def push(e):
        nonlocal tie
        heapq.heappush(heap, (e.key, tie, e))
        tie += 1

    def flush():
        while heap:
            w.add(heapq.heappop(heap)[2])

    def close_utterance():
        if current is not None and bands is not None:
            for e in _as_entries(bands.finish(), m["utterances"][current]["started_at_ms"]):
                push(e)
        flush()

    for ch in reader.chunks():
        if ch.utterance != current:
            close_utterance()
            current = ch.utterance
            w.begin_utterance(current)
            u = m["utterances"][current]
            bands = BandRecompute(n) if u["oscillator_count"] != n else None
        u = m["utterances"][current]
        start = u["started_at_ms"]
        for e in ch.entries:
            if bands is None:                  # already at n: copied as it is
                w.add(e)
                continue
            if e.kind == KIND_FRAME and e.band == MICRO:
                ph, amp, _ = cc.decode(e.blob, e.crc)
                if ph is None:
                    raise CorruptArchive("micro blob holds vectors", reader.where(current, e.ts, ch.seq))
                if e.ts - start != bands.t_ms:
                    raise CorruptArchive(f"micro frames are not contiguous from the utterance start (run at "
                                         f"{e.ts - start} ms, expected {bands.t_ms} ms)", reader.where(current, e.ts, ch.seq))
                mp, ma = migrate_frames(ph, amp, n)
                blob = cc.encode(mp, ma, u["codec_version"], reconstruct=False)[0]
                push(FrameEntry(MICRO, e.ts, e.duration_ms, e.frame_count, blob, cc.crc32c(blob), e.emo_vec))
                for x in _as_entries(bands.feed(ma, u["frame_ms"]), start):
                    push(x)
                stats["micro_frames"] += e.frame_count
            elif (e.kind == KIND_FRAME and e.band == MESO) or (e.kind == KIND_CENTROID and e.band in (0, 1)):
                continue                        # recomputed from the migrated frames
            else:
                push(e)
            # what can still arrive: source entries after this one, recomputed rows of the open windows
            wb = min((start + bands.open_meso_ms, KIND_FRAME, MESO), (start + bands.open_centroid_ms, KIND_CENTROID, 0))
            while heap and heap[0][0] <= e.key and heap[0][0] < wb:
                w.add(heapq.heappop(heap)[2])
        if progress:
            progress(ch.record_bytes)
    close_utterance()
    w.close()
    return stats
