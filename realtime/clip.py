"""Clip export (spec 000 §2, Save -> Replay -> Export): a recorded utterance as a video
file that plays in a browser.

The replay is deterministic at fixed dt: the stored micro runs are decoded in order,
the audio is their inverse STFT (core.synthesise's overlap-add, run incrementally so it
is bit for bit the same), and the face of every video frame is a function of the stored
state at that frame's time (face.py). The video frames are drawn off-screen with Pillow
and piped to ffmpeg as raw RGB on one pipe, the audio as 16-bit PCM on another (a
writer thread keeps both flowing: ffmpeg reads its inputs interleaved by time, so
either pipe left full would stall the other); ffmpeg writes the only file: VP9 in
realtime mode (yuv420p) + Opus in WebM, or H.264 + AAC in MP4.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import codec_core as cc
from .core import Geometry
from .face import FaceRenderer, PsiTrack, face_states, landmarks, micro_features


class ClipError(Exception):
    """A clip that cannot be made; the message names the argument or the failing part."""


# ------------------------------------------------------------------ audio

class Synth:
    """core.synthesise() fed one run of frames at a time: the same overlap-add in the same
    order, so the samples are identical, with memory bounded by one run."""

    def __init__(self, geo: Geometry):
        self.geo = geo
        self.w = geo.window
        self.w2 = self.w * self.w
        self.out = np.zeros(0)
        self.norm = np.zeros(0)
        self.base = 0                 # absolute overlap-add index of out[0]
        self.frames = 0
        self.emitted = 0              # overlap-add indices below this have been returned
        self.half = geo.n_fft // 2

    def feed(self, phases: np.ndarray, amps: np.ndarray) -> np.ndarray:
        spec = np.asarray(amps, dtype=np.float64) * np.exp(1j * np.asarray(phases, dtype=np.float64))
        seg = np.fft.irfft(spec, n=self.geo.n_fft, axis=1) * self.w
        hop, n = self.geo.hop, self.geo.n_fft
        need = (self.frames + len(seg) - 1) * hop + n - self.base
        if need > len(self.out):
            self.out = np.concatenate([self.out, np.zeros(need - len(self.out))])
            self.norm = np.concatenate([self.norm, np.zeros(need - len(self.norm))])
        for t in range(len(seg)):
            s = (self.frames + t) * hop - self.base
            self.out[s:s + n] += seg[t]
            self.norm[s:s + n] += self.w2
        self.frames += len(seg)
        return self._emit(self.frames * hop)      # the next frame starts there: everything before is final

    def _emit(self, upto: int) -> np.ndarray:
        lo = max(self.emitted, self.half)
        if upto <= lo:
            return np.zeros(0, dtype=np.float32)
        a, b = lo - self.base, upto - self.base
        y = (self.out[a:b] / np.maximum(self.norm[a:b], 1e-8)).astype(np.float32)
        self.emitted = upto
        keep = upto - self.base
        self.out, self.norm, self.base = self.out[keep:], self.norm[keep:], upto
        return y

    def finish(self, n_samples: int, done: int) -> np.ndarray:
        """The rest up to n_samples output samples in all (done returned so far); past the
        last segment the signal is silence."""
        y = self._emit(self.base + len(self.out))
        want = n_samples - done
        if len(y) >= want:
            return y[:want]
        return np.concatenate([y, np.zeros(want - len(y), dtype=np.float32)])


def pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.rint(np.asarray(x) * 32767), -32768, 32767).astype("<i2").tobytes()


# ------------------------------------------------------------------ the stored state

@dataclass
class Loaded:
    uttr_hash: bytes
    track: PsiTrack
    pcm: bytes
    sample_rate: int
    text: str | None
    seconds: float


def load(conn, uttr_hash: bytes) -> Loaded:
    """Decode an utterance once: the audio (as PCM) and what the face reads."""
    t0 = time.perf_counter()
    meta = conn.execute("SELECT u.oscillator_count, u.sample_rate, u.started_at_ms, u.frame_ms, d.content "
                        "FROM psi.utterances u LEFT JOIN memory.day_table d USING (entry_id) "
                        "WHERE u.uttr_hash = %s", (uttr_hash,)).fetchone()
    if meta is None:
        raise ClipError(f"UTTERANCE: {uttr_hash.hex()} is not recorded")
    n, rate, start, frame_ms, text = meta
    geo = Geometry(n, rate)
    synth = Synth(geo)
    feats, pcm, done = [], [], 0
    with conn.cursor(name="psi_clip_micro", binary=True) as cur:
        cur.itersize = 200
        cur.execute("SELECT ts_epoch_ms, frame_count, psi_blob, integrity_crc FROM psi.psi_frames "
                    "WHERE uttr_hash = %s AND band = 0 ORDER BY ts_epoch_ms", (uttr_hash,))
        expect = start
        for ts, count, blob, crc in cur:
            if ts != expect:
                raise ClipError(f"UTTERANCE: micro frames of {uttr_hash.hex()} are not contiguous at ts_epoch_ms {ts}")
            ph, amp, _ = cc.decode(bytes(blob), crc)
            feats.append(micro_features(amp, geo))
            y = synth.feed(ph, amp)
            done += len(y)
            pcm.append(pcm16(y))
            expect = ts + count * frame_ms
    frames = synth.frames
    if frames == 0:
        raise ClipError(f"UTTERANCE: {uttr_hash.hex()} has no micro frames")
    pcm.append(pcm16(synth.finish(frames * geo.hop, done)))
    meso = conn.execute("SELECT ts_epoch_ms - %s, psi_blob, integrity_crc FROM psi.psi_frames "
                        "WHERE uttr_hash = %s AND band = 1 ORDER BY ts_epoch_ms", (start, uttr_hash)).fetchall()
    macro = conn.execute("SELECT ts_epoch_ms - %s, emo_vec FROM psi.psi_frames WHERE uttr_hash = %s AND band = 2 "
                         "ORDER BY ts_epoch_ms", (start, uttr_hash)).fetchall()
    surprise = conn.execute("SELECT ts_epoch_ms - %s FROM psi.surprise_events WHERE uttr_hash = %s ORDER BY 1",
                            (start, uttr_hash)).fetchall()
    track = PsiTrack(geo, frame_ms, np.concatenate(feats),
                     np.array([t for t, _, _ in meso], dtype=np.float64),
                     np.array([cc.decode(b, crc)[2][0][0] for _, b, crc in meso], dtype=np.float64),
                     np.array([t for t, e in macro if e is not None], dtype=np.float64),
                     np.array([e for _, e in macro if e is not None], dtype=np.float64).reshape(-1, 3),
                     np.array([t for (t,) in surprise], dtype=np.float64))
    return Loaded(uttr_hash, track, b"".join(pcm), rate, text, time.perf_counter() - t0)


# ------------------------------------------------------------------ ffmpeg

def parse_size(s: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in s.lower().split("x"))
    except ValueError:
        raise ClipError(f"--size: {s!r} is not WIDTHxHEIGHT (e.g. 640x360)") from None
    if not (16 <= w <= 3840 and 16 <= h <= 2160) or w % 2 or h % 2:
        raise ClipError(f"--size: {w}x{h}: width and height must be even, 16..3840 x 16..2160 (yuv420p)")
    return w, h


def _encoders() -> str:
    return subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout


def codec_args(out: Path) -> list[str]:
    ext = out.suffix.lower()
    if ext == ".webm":
        # realtime deadline, fastest speed: a face on a static background needs no slower search
        return ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1", "-b:v", "0",
                "-crf", "36", "-pix_fmt", "yuv420p", "-g", "150", "-c:a", "libopus", "-b:a", "48k"]
    if ext == ".mp4":
        if "libx264" not in _encoders():
            raise ClipError("-o: .mp4 needs the libx264 encoder, which this ffmpeg lacks; write .webm instead")
        return ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-c:a", "aac",
                "-b:a", "96k", "-movflags", "+faststart"]
    raise ClipError(f"-o: {out.name}: the clip must be .webm (VP9 + Opus) or .mp4 (H.264 + AAC)")


def _set_pipe_size(fd: int, size: int = 1 << 20) -> None:
    try:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (OSError, AttributeError):
        pass                              # a smaller pipe only means more wake-ups


def export_clip(conn, uttr_hash: bytes, out: str | Path, size: tuple[int, int] = (640, 360), fps: int = 30,
                loaded: Loaded | None = None) -> dict:
    """Write the clip; returns its timings (load, draw, ffmpeg CPU, wall), frames and duration."""
    out = Path(out)
    if not 1 <= fps <= 120:
        raise ClipError(f"--fps: {fps} must be between 1 and 120")
    if shutil.which("ffmpeg") is None:
        raise ClipError("ffmpeg: not installed (scripts/setup-system.sh installs it)")
    if not out.parent.exists():
        raise ClipError(f"-o: directory {out.parent} does not exist")
    args = codec_args(out)
    w, h = size
    t0 = time.perf_counter()
    L = loaded or load(conn, uttr_hash)
    n_video = int(round(L.track.duration_ms * fps / 1000))
    states = face_states(L.track, fps, n_video)
    lms = landmarks(states, w, h)
    renderer = FaceRenderer(w, h)
    vr, vw = os.pipe()
    ar, aw = os.pipe()
    for fd in (vw, aw):
        _set_pipe_size(fd)
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{w}x{h}", "-framerate", str(fps),
           "-i", f"pipe:{vr}",
           "-f", "s16le", "-ar", str(L.sample_rate), "-ac", "1", "-i", f"pipe:{ar}",
           "-map", "0:v:0", "-map", "1:a:0", *args, str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, pass_fds=(vr, ar), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    os.close(vr)
    os.close(ar)
    errors: list[BaseException] = []

    # Buffered writers: a raw write to a pipe may write part of what it was given (a signal
    # can interrupt it), and a byte left out shifts every sample after it.
    def feed_audio():
        try:
            with open(aw, "wb") as f:
                f.write(L.pcm)
        except BaseException as e:           # BrokenPipe: ffmpeg stopped; its stderr says why
            errors.append(e)

    th = threading.Thread(target=feed_audio, name="clip-audio", daemon=True)
    th.start()
    draw_s = 0.0
    try:
        with open(vw, "wb") as f:
            for j in range(n_video):
                td = time.perf_counter()
                frame = renderer.draw(lms[j])
                draw_s += time.perf_counter() - td
                f.write(frame)
    except BrokenPipeError:
        pass
    finally:
        th.join()
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - t0
    if rc != 0:
        try:
            out.unlink()
        except FileNotFoundError:
            pass
        line = next((x for x in err.strip().splitlines()[::-1] if x.strip()), f"exit status {rc}")
        raise ClipError(f"ffmpeg failed: {line}")
    if errors:                              # ffmpeg succeeded on less sound than the utterance's
        out.unlink()
        raise ClipError(f"writing the audio to ffmpeg failed: {errors[0]!r}")
    seconds = L.track.duration_ms / 1000
    return {"output": str(out), "uttr_hash": uttr_hash.hex(), "duration_s": seconds, "video_frames": n_video,
            "fps": fps, "size": f"{w}x{h}", "sample_rate": L.sample_rate, "load_s": L.seconds, "draw_s": draw_s,
            "ffmpeg_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "wall_s": wall if loaded is None else wall + L.seconds, "bytes": out.stat().st_size}


def probe(path: str | Path) -> dict:
    """ffprobe's view of a file: format duration and each stream's type, codec and duration."""
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                        "format=duration,format_name:stream=codec_type,codec_name,duration,width,height,"
                        "sample_rate,pix_fmt,nb_frames", "-of", "json", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise ClipError(f"ffprobe: {r.stderr.strip() or 'failed'}")
    return json.loads(r.stdout)
