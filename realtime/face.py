"""The face a ψ clip shows: its state from the stored ψ frames, its landmarks, its drawing.

What moves what (all deterministic functions of the stored state and the time):
  mouth opening   the micro band's energy in 200-4000 Hz (the voice), averaged over the
                  video frame's span of micro frames;
  mouth shape     spread vs rounded from the micro band's F2-region (1.5-3.5 kHz) to
                  F1-region (250-1000 Hz) energy ratio (/i/ and /e/ spread, /o/ /u/ round);
  jaw             the meso state's first (DCT-0) coordinate, the 250 ms mean log
                  spectrum: the syllable-rate loudness, smoother than the lips;
  brows and eyes  the macro emotion vector (arousal raises the brows and opens the eyes,
                  negative valence lifts the brows' inner ends), interpolated between the
                  2 s macro frames; each surprise event raises the brows and widens the
                  eyes, fading over ~350 ms; blinks come on a fixed schedule.

Every feature is normalised so that the same sound gives the same face at 128, 256 or
512 oscillators (energies by the window's Parseval gain, meso by sqrt(N) and the
window's amplitude gain). landmarks() gives the points the gate in spec 000 §2 compares
(RMS < 1 px at 640 x 360 between the live and the stored state); draw() paints them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .core import MACRO_MS, MESO_MS, Geometry

SPEECH_HZ = (200.0, 4000.0)
F1_HZ = (250.0, 1000.0)
F2_HZ = (1500.0, 3500.0)
OPEN_DB = (-46.0, -12.0)           # voice level mapped to a closed .. fully open mouth
SPREAD_DB = (-28.0, 2.0)           # F2/F1 energy ratio mapped to rounded .. spread
JAW_LOG = (-9.6, -7.4)             # meso mean log amplitude (re a full-scale sine) mapped to jaw closed .. open
SURPRISE_MS = 350.0
BLINK_EVERY_MS, BLINK_FIRST_MS, BLINK_MS = 3700.0, 1800.0, 160.0
REF_W, REF_H = 640, 360


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _band_masks(geo: Geometry) -> np.ndarray:
    hz = geo.bin_hz
    return np.stack([(hz >= lo) & (hz < hi) for lo, hi in (SPEECH_HZ, F1_HZ, F2_HZ)], axis=1).astype(np.float64)


def micro_features(amps: np.ndarray, geo: Geometry) -> np.ndarray:
    """Per micro frame (F x N amplitudes): [voice level dB, F2/F1 ratio dB], independent
    of N: a band's power is 2 sum |X_k|^2 / (n_fft * sum w^2), sum w^2 = 3 n_fft / 8."""
    a = np.asarray(amps, dtype=np.float64)
    p = (a * a) @ _band_masks(geo) * (16.0 / (3.0 * geo.n_fft ** 2))
    level = 10 * np.log10(p[:, 0] + 1e-12)
    ratio = 10 * np.log10((p[:, 2] + 1e-12) / (p[:, 1] + 1e-12))
    return np.stack([level, ratio], axis=1)


@dataclass
class PsiTrack:
    """The stored ψ state of one utterance, reduced to what the face reads."""
    geo: Geometry
    frame_ms: int
    micro: np.ndarray                 # F x 2 micro_features
    meso_ms: np.ndarray               # offsets (ms from the utterance start) of the meso frames
    meso0: np.ndarray                 # their DCT-0 coordinate
    macro_ms: np.ndarray              # offsets of the macro frames
    emo: np.ndarray                   # their emotion vectors (arousal, valence, dominance)
    surprise_ms: np.ndarray           # offsets of the surprise events

    @property
    def duration_ms(self) -> int:
        return len(self.micro) * self.frame_ms


@dataclass
class FaceState:
    openness: np.ndarray
    spread: np.ndarray
    jaw: np.ndarray
    brow_raise: np.ndarray
    brow_tilt: np.ndarray
    eye_open: np.ndarray
    surprise: np.ndarray

    def __len__(self):
        return len(self.openness)

    def at(self, i: int) -> "FaceState":
        return FaceState(*(np.atleast_1d(getattr(self, k)[i]) for k in self.__dataclass_fields__))


def _interp(t, xs, ys, default):
    if len(xs) == 0:
        return np.full(len(t), default, dtype=np.float64)
    return np.interp(t, xs, ys)


def face_states(track: PsiTrack, fps: float, frames: int | None = None) -> FaceState:
    """The face at every video frame j (time j / fps from the utterance start)."""
    n_video = frames if frames is not None else int(round(track.duration_ms * fps / 1000))
    t = np.arange(n_video) * 1000.0 / fps
    # micro: mean of the features of the micro frames overlapping the video frame's span
    F = len(track.micro)
    span = 1000.0 / fps
    lo = np.clip(np.floor((t - span / 2) / track.frame_ms).astype(int), 0, max(F - 1, 0))
    hi = np.clip(np.ceil((t + span / 2) / track.frame_ms).astype(int), 1, max(F, 1))
    if F:
        cs = np.vstack([np.zeros((1, 2)), np.cumsum(track.micro, axis=0)])
        feat = (cs[hi] - cs[lo]) / np.maximum(hi - lo, 1)[:, None]
    else:
        feat = np.tile([OPEN_DB[0] - 10, SPREAD_DB[0]], (n_video, 1))
    openness = _smoothstep((feat[:, 0] - OPEN_DB[0]) / (OPEN_DB[1] - OPEN_DB[0]))
    spread = _smoothstep((feat[:, 1] - SPREAD_DB[0]) / (SPREAD_DB[1] - SPREAD_DB[0]))
    # meso: DCT-0 is sqrt(N) * mean log(a + 1e-6); a full-scale sine's peak bin is n_fft / 4
    jl = track.meso0 / math.sqrt(track.geo.n) - math.log(track.geo.n_fft / 4)
    jaw = _smoothstep((_interp(t, track.meso_ms + MESO_MS / 2, jl, JAW_LOG[0] - 1) - JAW_LOG[0])
                      / (JAW_LOG[1] - JAW_LOG[0]))
    centres = track.macro_ms + MACRO_MS / 2
    arousal = _interp(t, centres, track.emo[:, 0] if len(track.emo) else [], 0.0)
    valence = _interp(t, centres, track.emo[:, 1] if len(track.emo) else [], 0.0)
    s = np.zeros(n_video)
    for te in track.surprise_ms:
        d = t - te
        s = np.maximum(s, np.where(d >= 0, np.exp(-d / SURPRISE_MS), 0.0))
    phase = np.mod(t - BLINK_FIRST_MS, BLINK_EVERY_MS)
    blink = np.where((t >= BLINK_FIRST_MS - BLINK_MS / 2) & (np.minimum(phase, BLINK_EVERY_MS - phase) < BLINK_MS / 2),
                     1.0 - np.minimum(phase, BLINK_EVERY_MS - phase) / (BLINK_MS / 2), 0.0)
    brow_raise = np.clip(0.45 * arousal + 0.9 * s, -1, 1.2)
    dominance = _interp(t, centres, track.emo[:, 2] if len(track.emo) else [], 0.5)
    # inner brow ends: lifted by negative valence (worry), lowered by dominance (firmness)
    brow_tilt = np.clip(0.8 * np.minimum(valence, 0.0) + 0.6 * (dominance - 0.5), -1, 1)
    eye_open = np.clip((0.75 + 0.2 * arousal + 0.35 * s) * (1 - blink), 0, 1.3)
    return FaceState(openness, spread, jaw, brow_raise, brow_tilt, eye_open, s)


# ------------------------------------------------------------------ landmarks

def _scale(w: int, h: int):
    s = min(w / REF_W, h / REF_H)
    return s, (w - REF_W * s) / 2, (h - REF_H * s) / 2


JAW, EYE_L, EYE_R, BROW_L, BROW_R = slice(0, 15), slice(15, 19), slice(19, 23), slice(23, 26), slice(26, 29)
LIPS_OUTER, LIPS_INNER = slice(29, 39), slice(39, 45)


def landmarks(st: FaceState, w: int = REF_W, h: int = REF_H) -> np.ndarray:
    """Landmark points of every state in st: (frames, 45, 2) pixel coordinates: the jaw
    line (15 points, temple to temple), each eye (outer corner, upper lid, inner corner,
    lower lid), each brow (outer, middle, inner), the outer lips (left corner, upper lip
    left to right, right corner, lower lip right to left) and the inner lips (6)."""
    o, sp, jaw = st.openness[:, None], st.spread[:, None], st.jaw[:, None]
    n = len(st)
    pts = []
    # jaw line: lower half of an ellipse whose depth follows the jaw and the mouth
    th = np.linspace(np.pi, 2 * np.pi, 15)[None, :]
    ry = 112 + 22 * jaw + 8 * o
    pts.append(np.stack([320 + 116 * np.cos(th) + 0 * ry, 188 - ry * np.sin(th)], axis=-1))
    # eyes
    for cx, side in ((272, -1), (368, 1)):
        lid = 10.5 * st.eye_open[:, None]
        ex = np.array([cx + 21 * side, cx, cx - 21 * side, cx], dtype=np.float64)[None, :]
        ey = np.concatenate([np.full((n, 1), 160.0), 160 - lid, np.full((n, 1), 160.0), 160 + 0.6 * lid], axis=1)
        pts.append(np.stack([np.broadcast_to(ex, (n, 4)), ey], axis=-1))
    # brows: raise lifts all three points, tilt moves the inner end
    for cx, side in ((272, -1), (368, 1)):
        base = 132 - 13 * st.brow_raise[:, None]
        bx = np.array([cx + 27 * side, cx + 4 * side, cx - 22 * side], dtype=np.float64)[None, :]
        by = np.concatenate([base + 3, base - 4, base + 9 * st.brow_tilt[:, None] - 1], axis=1)
        pts.append(np.stack([np.broadcast_to(bx, (n, 3)), by], axis=-1))
    # lips
    cy = 250 + 7 * jaw
    hw = 34 * (0.82 + 0.36 * sp - 0.22 * o * (1 - sp))
    up = 4 + 9 * o
    dn = 6 + 24 * o
    u = np.array([-0.6, -0.2, 0.2, 0.6])[None, :]
    upper_y = cy - up * (1 - 0.35 * u ** 2) + 2.5 * (np.abs(u) < 0.3)       # the cupid's bow dips at the middle
    lower_y = cy + dn * (1 - 0.45 * u[:, ::-1] ** 2)
    outer_x = np.concatenate([320 - hw, 320 + hw * u, 320 + hw, 320 - hw * u], axis=1)
    outer_y = np.concatenate([cy, np.broadcast_to(upper_y, (n, 4)), cy, np.broadcast_to(lower_y, (n, 4))], axis=1)
    pts.append(np.stack([outer_x, outer_y], axis=-1))
    ih = 0.8 * hw
    gap = 22 * o
    v = np.array([-0.5, 0.5])[None, :]
    inner_x = np.concatenate([320 - ih, 320 + ih * v, 320 + ih, 320 - ih * v], axis=1)
    inner_y = np.concatenate([cy, cy - 0.25 * gap + 0 * v, cy, cy + 0.75 * gap + 0 * v], axis=1)
    pts.append(np.stack([inner_x, inner_y], axis=-1))
    p = np.concatenate(pts, axis=1)
    s, ox, oy = _scale(w, h)
    return p * s + np.array([ox, oy])


def landmark_rms(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance in pixels between two landmark sets of the same shape."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=-1))))


# ------------------------------------------------------------------ drawing

class FaceRenderer:
    """Draws landmark sets into RGB frames with Pillow (off-screen, no display)."""

    SKIN, SKIN_DARK, HAIR = (236, 196, 166), (205, 160, 130), (70, 48, 40)
    LIP, MOUTH, TEETH = (178, 78, 82), (70, 24, 30), (245, 242, 235)

    def __init__(self, w: int, h: int, supersample: int = 1):
        from PIL import Image, ImageDraw

        self.Image, self.ImageDraw = Image, ImageDraw
        self.w, self.h, self.k = w, h, supersample
        self.s, self.ox, self.oy = _scale(w * supersample, h * supersample)
        # the static part, drawn once: background, neck, ears, hair, nose
        W, H = w * supersample, h * supersample
        y = np.linspace(0, 1, H)[:, None, None]
        grad = (np.array([58, 72, 96]) * (1 - y) + np.array([24, 30, 44]) * y).astype(np.uint8)
        self.bg = Image.fromarray(np.broadcast_to(grad, (H, W, 3)).copy(), "RGB")
        d = ImageDraw.Draw(self.bg)
        d.rectangle(self._box(282, 270, 358, 380), fill=self.SKIN_DARK)
        d.polygon(self._poly([(150, 380), (230, 318), (410, 318), (490, 380)]), fill=(60, 92, 120))
        for cx in (204, 436):
            d.ellipse(self._box(cx - 13, 148, cx + 13, 200), fill=self.SKIN_DARK)
        d.ellipse(self._box(202, 28, 438, 268), fill=self.SKIN)
        d.chord(self._box(196, 20, 444, 200), 180, 360, fill=self.HAIR)
        d.line(self._poly([(320, 172), (312, 214), (324, 218)]), fill=self.SKIN_DARK, width=max(1, int(3 * self.s)))

    def _box(self, x0, y0, x1, y1):
        s, ox, oy = self.s, self.ox, self.oy
        return [x0 * s + ox, y0 * s + oy, x1 * s + ox, y1 * s + oy]

    def _poly(self, pts):
        s, ox, oy = self.s, self.ox, self.oy
        return [(x * s + ox, y * s + oy) for x, y in pts]

    def draw(self, lm: np.ndarray, st: FaceState | None = None) -> bytes:
        """One frame (landmarks of one state, in output pixels) as packed RGB bytes."""
        img = self.bg.copy()
        d = self.ImageDraw.Draw(img)
        k = self.k
        p = [tuple(x) for x in (np.asarray(lm) * k)]
        # lower face down to the jaw line (covers the chin area of the static head)
        d.polygon(p[JAW], fill=self.SKIN)
        d.line(p[JAW], fill=self.SKIN_DARK, width=max(1, int(2 * self.s)))
        for e in (p[EYE_L], p[EYE_R]):
            d.polygon(e, fill=(250, 250, 250), outline=self.SKIN_DARK)
            cx = (e[0][0] + e[2][0]) / 2
            cy = (e[1][1] + e[3][1]) / 2
            r = min(7 * self.s, max(0.0, (e[3][1] - e[1][1]) / 2))
            if r > 0.5:
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(60, 90, 70))
                d.ellipse([cx - r / 2.5, cy - r / 2.5, cx + r / 2.5, cy + r / 2.5], fill=(15, 15, 15))
        for b in (p[BROW_L], p[BROW_R]):
            d.line(b, fill=self.HAIR, width=max(2, int(6 * self.s)), joint="curve")
        outer, inner = p[LIPS_OUTER], p[LIPS_INNER]
        d.polygon(outer, fill=self.LIP)
        if inner[4][1] - inner[1][1] > 1.5 * k:
            d.polygon(inner, fill=self.MOUTH)
            # the upper teeth show in the top of the opening
            tx0, tx1 = inner[1][0], inner[2][0]
            ty = inner[1][1]
            d.rectangle([tx0, ty, tx1, ty + min(5 * self.s, (inner[4][1] - ty) * 0.35)], fill=self.TEETH)
        else:
            d.line([outer[0], inner[1], inner[2], outer[5]], fill=self.MOUTH, width=max(1, int(2 * self.s)))
        if k > 1:
            img = img.resize((self.w, self.h), self.Image.BILINEAR)
        return img.tobytes()
