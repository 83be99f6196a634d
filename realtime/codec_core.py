"""ψ-frame codec: the one source of the decoder that Python and PL/Python both run.

This module is embedded verbatim in db/functions/psi_codec.sql (regenerate with
`python -m realtime.codec_sql`; a test checks the two agree), so it may import only
what Debian's python3 has for PL/Python: the standard library, numpy >= 1.24,
zstandard (python3-zstandard) and crc32c (python3-crc32c).

A blob holds a *run* of F frames of one band of one utterance (F = 1 is the spec's
one-frame row). Every blob starts with its codec version byte, so old rows stay
readable when the codec improves.

Codec v0 -- the seed's pipeline, kept for comparison: phase -> int16 (32767/2π),
amplitude -> int16 (natural log, 2048 steps per neper), delta along the oscillator
index, zstd level 22.

Codec v1 -- quantisation from the error budget, packing, prediction, zstd level 3:
  * phase: a uniform grid of PHASE_LEVELS = 1625 steps of 2π/1625, whose mean absolute
    error on uniformly spread phases is step/4 = 0.967e-3 rad (< the 1e-3 budget);
    1625**3 < 2**32, so three phases pack into 32 bits (10.67 bits each). Per run the
    encoder keeps the smallest of: intra (packed), first-order prediction with a per-run
    advance a_i (the network's ω_i·dt on the grid, stored as int16) and second-order
    prediction (velocity from the two previous frames); predicted residuals are
    zigzagged, split into byte planes and zstd-compressed.
  * amplitude: a mini-float grid (AMP_MANTISSA_BITS = 5 bits of mantissa, relative error
    <= 1/64), exact in float32, so dequantisation needs no exp() and is bit-identical on
    every numpy; index 0 is silence (below 2**AMP_FLOOR_EXP). The index is predicted
    along the oscillator index or along time (the smaller wins), zigzagged, byte-planed
    and zstd-compressed.
  * vector frames (meso state, macro emotion/tempo): float32, lossless.
Decoding reproduces the encoder's own reconstruction bit for bit.
"""
import struct
import threading
import unicodedata

import numpy as np
import zstandard

try:
    from crc32c import crc32c as _crc32c
except ImportError:  # pragma: no cover - crc32c is a declared dependency
    _crc32c = None

TWO_PI = 6.283185307179586
PHASE_LEVELS = 1625            # 1625**3 < 2**32: three phases per uint32
PHASE_STEP = TWO_PI / PHASE_LEVELS
AMP_MANTISSA_BITS = 5
AMP_FLOOR_EXP = -20            # amplitudes below 2**-20 (about -120 dB re 1.0) are silence
ZSTD_LEVEL = 3

KIND_PHASE_AMP = 0             # micro frames: phases and amplitudes, N oscillators
KIND_VECTOR = 1                # meso / macro frames: one float32 vector of N values

PH_INTRA, PH_ADVANCE, PH_SECOND_ORDER = 0, 1, 2
AMP_FREQ, AMP_TIME, AMP_TIME_FREQ = 0, 1, 2

# version, kind, N, F, phase levels, mantissa bits, floor exponent, phase mode, amp mode, phase bytes
_V1_HEADER = struct.Struct("<BBHHHBbBBI")
_V0_HEADER = struct.Struct("<BBHH")


class CodecError(ValueError):
    """A blob or frame the codec refuses; the message names the field and the rule."""


def crc32c(data):
    """CRC-32C (Castagnoli) of bytes, as an unsigned 32-bit int."""
    return _crc32c(bytes(data)) & 0xFFFFFFFF


# ---------------------------------------------------------------- SipHash-2-4 (128-bit)

_M64 = 0xFFFFFFFFFFFFFFFF


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & _M64


def _sipround(v0, v1, v2, v3):
    v0 = (v0 + v1) & _M64; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M64; v3 = _rotl(v3, 16); v3 ^= v2
    v0 = (v0 + v3) & _M64; v3 = _rotl(v3, 21); v3 ^= v0
    v2 = (v2 + v1) & _M64; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash24_128(key, msg):
    """SipHash-2-4 with 128-bit output (Aumasson & Bernstein), 16-byte key."""
    if len(key) != 16:
        raise CodecError("key: SipHash needs 16 bytes")
    k0, k1 = struct.unpack("<QQ", key)
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D ^ 0xEE
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573
    msg = bytes(msg)
    tail = len(msg) % 8
    for i in range(0, len(msg) - tail, 8):
        m = struct.unpack_from("<Q", msg, i)[0]
        v3 ^= m
        v0, v1, v2, v3 = _sipround(*_sipround(v0, v1, v2, v3))
        v0 ^= m
    b = (len(msg) & 0xFF) << 56
    for j, c in enumerate(msg[len(msg) - tail:]):
        b |= c << (8 * j)
    v3 ^= b
    v0, v1, v2, v3 = _sipround(*_sipround(v0, v1, v2, v3))
    v0 ^= b
    v2 ^= 0xEE
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    out1 = v0 ^ v1 ^ v2 ^ v3
    v1 ^= 0xDD
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    out2 = v0 ^ v1 ^ v2 ^ v3
    return struct.pack("<QQ", out1, out2)


def canonical_text(text):
    """Unicode NFC, whitespace runs collapsed to one space, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def utterance_hash(entry_id_bytes, text):
    """uttr_hash: SipHash-2-4-128 of the canonical utterance text, keyed by the 16 bytes of
    the day_table turn it voices (so the same words said in two turns are two utterances)."""
    return siphash24_128(bytes(entry_id_bytes), canonical_text(text).encode("utf-8"))


# ---------------------------------------------------------------- shared pieces

def _zigzag(r):
    r = r.astype(np.int64)
    return ((r << 1) ^ (r >> 63)).astype(np.uint32)


def _unzigzag(z):
    z = z.astype(np.int64)
    return (z >> 1) ^ -(z & 1)


def _planes(z):
    """Zigzagged residuals (< 2**24) as byte planes, low byte first: entropy coding sees
    the mostly-zero high planes as long runs."""
    if z.size and int(z.max()) >= (1 << 24):
        raise CodecError("residual: too large to code")
    z = z.ravel()
    return b"".join(((z >> s) & 0xFF).astype(np.uint8).tobytes() for s in (0, 8, 16))


def _unplanes(buf, count):
    a = np.frombuffer(buf, dtype=np.uint8)
    if a.size != 3 * count:
        raise CodecError("psi_blob: residual planes have the wrong length")
    a = a.reshape(3, count).astype(np.uint32)
    return a[0] | (a[1] << 8) | (a[2] << 16)


_zstd = threading.local()      # one compressor per thread (it is not thread-safe)


def _zc(data):
    c = getattr(_zstd, "c", None)
    if c is None:
        c = _zstd.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return c.compress(data)


def _zd(data, size):
    """Decompress one zstd section of exactly `size` bytes that fills `data` exactly: a
    declared size that differs, a truncated stream or bytes after its end are corrupt."""
    data = bytes(data)
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as e:
        raise CodecError(f"psi_blob: zstd frame header is corrupt ({e})")
    if declared != size:
        raise CodecError(f"psi_blob: compressed section declares {declared} bytes, expected {size}")
    d = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = d.decompress(data)
    except zstandard.ZstdError as e:
        raise CodecError(f"psi_blob: zstd stream is corrupt ({e})")
    if not d.eof:
        raise CodecError("psi_blob: zstd stream is truncated")
    if d.unused_data:
        raise CodecError(f"psi_blob: {len(d.unused_data)} bytes after the end of the compressed section")
    if len(out) != size:
        raise CodecError("psi_blob: decompressed section has the wrong length")
    return out


def _pack_phases(q):
    """Three phase indices (< 1625) per little-endian uint32; a trailing 1 or 2 in one."""
    q = q.ravel().astype(np.uint64)
    n3 = q.size // 3 * 3
    L = PHASE_LEVELS
    words = (q[0:n3:3] + L * q[1:n3:3] + L * L * q[2:n3:3]).astype("<u4").tobytes()
    rest = q[n3:]
    if rest.size:
        words += struct.pack("<I", int(rest[0]) + (L * int(rest[1]) if rest.size > 1 else 0))
    return words


def _unpack_phases(buf, count):
    L = PHASE_LEVELS
    n3 = count // 3 * 3
    nwords = -(-count // 3)
    if len(buf) != 4 * nwords:
        raise CodecError("psi_blob: packed phase section has the wrong length")
    w = np.frombuffer(buf, dtype="<u4").astype(np.int64)
    out = np.empty(count, dtype=np.int64)
    full = w[: n3 // 3]
    out[0:n3:3] = full % L
    out[1:n3:3] = (full // L) % L
    out[2:n3:3] = full // (L * L)
    if count > n3:
        out[n3] = w[-1] % L
        if count - n3 > 1:
            out[n3 + 1] = (w[-1] // L) % L
    if out.size and (out.max() >= L or out.min() < 0):
        raise CodecError("psi_blob: phase index out of range")
    return out


def quantize_phases(phases):
    p = np.asarray(phases, dtype=np.float64)
    return np.rint(np.mod(p, TWO_PI) / PHASE_STEP).astype(np.int64) % PHASE_LEVELS


def dequantize_phases(q):
    return (np.asarray(q, dtype=np.int64) * PHASE_STEP).astype(np.float32)


def quantize_amplitudes(amps):
    a = np.asarray(amps, dtype=np.float64)
    m, e = np.frexp(a)                      # a = m * 2**e, m in [0.5, 1)
    mq = np.rint((2.0 * m - 1.0) * (1 << AMP_MANTISSA_BITS)).astype(np.int64)
    e = e.astype(np.int64) - 1              # a = (1 + mq/2**M) * 2**e
    carry = mq == (1 << AMP_MANTISSA_BITS)
    mq[carry] = 0
    e[carry] += 1
    idx = 1 + ((e - AMP_FLOOR_EXP) << AMP_MANTISSA_BITS) + mq
    floor = 2.0 ** AMP_FLOOR_EXP
    idx = np.where(a >= floor, idx, np.where(a >= floor / 2, 1, 0))
    return idx


def dequantize_amplitudes(idx):
    idx = np.asarray(idx, dtype=np.int64)
    k = np.maximum(idx - 1, 0)
    mant = 1.0 + (k & ((1 << AMP_MANTISSA_BITS) - 1)) / float(1 << AMP_MANTISSA_BITS)
    out = np.ldexp(mant, (k >> AMP_MANTISSA_BITS) + AMP_FLOOR_EXP)
    return np.where(idx > 0, out, 0.0).astype(np.float32)


def _check_frames(phases, amps):
    phases = np.asarray(phases, dtype=np.float32)
    amps = np.asarray(amps, dtype=np.float32)
    if phases.ndim == 1:
        phases, amps = phases[None], amps[None]
    if phases.ndim != 2 or phases.shape != amps.shape:
        raise CodecError(f"frames: phases {phases.shape} and amplitudes {amps.shape} must both be F x N")
    if not 1 <= phases.shape[0] <= 65535 or not 1 <= phases.shape[1] <= 65535:
        raise CodecError(f"frames: F and N must be between 1 and 65535, got {phases.shape}")
    if not (np.isfinite(phases).all() and np.isfinite(amps).all()):
        raise CodecError("frames: phases and amplitudes must be finite (no NaN or Inf)")
    if (amps < 0).any():
        raise CodecError("amplitudes: must be >= 0")
    return phases, amps


# ---------------------------------------------------------------- codec v1

def _phase_section(q):
    """The smallest phase coding of a run of phase indices (F x N): (mode, bytes)."""
    F, N = q.shape
    L = PHASE_LEVELS
    best = (PH_INTRA, _pack_phases(q))
    if F >= 2:
        half = L // 2
        d = (q[1:] - q[:-1]) % L
        adv = np.median(np.where(d >= half, d - L, d), axis=0).astype(np.int64)  # ω_i·dt on the grid
        r = (q[1:] - q[:-1] - adv) % L
        r = np.where(r >= half, r - L, r)
        body = adv.astype("<i2").tobytes() + _pack_phases(q[0]) + _planes(_zigzag(r))
        cand = (PH_ADVANCE, struct.pack("<I", len(body)) + _zc(body))
        if len(cand[1]) < len(best[1]):
            best = cand
        pred = np.empty_like(q[1:])
        pred[0] = q[0]
        pred[1:] = 2 * q[1:-1] - q[:-2]
        r = (q[1:] - pred) % L
        r = np.where(r >= half, r - L, r)
        body = _pack_phases(q[0]) + _planes(_zigzag(r))
        cand = (PH_SECOND_ORDER, struct.pack("<I", len(body)) + _zc(body))
        if len(cand[1]) < len(best[1]):
            best = cand
    return best


def _amp_section(idx):
    F, N = idx.shape
    r = idx.copy()
    r[:, 1:] = idx[:, 1:] - idx[:, :-1]
    body = _planes(_zigzag(r))
    best = (AMP_FREQ, struct.pack("<I", len(body)) + _zc(body))
    if F >= 2:
        r = idx.copy()
        r[1:] = idx[1:] - idx[:-1]
        r[0, 1:] = idx[0, 1:] - idx[0, :-1]
        body = _planes(_zigzag(r))
        cand = (AMP_TIME, struct.pack("<I", len(body)) + _zc(body))
        if len(cand[1]) < len(best[1]):
            best = cand
        r2 = r.copy()                      # a gain change moves every bin alike: delta it away
        r2[1:, 1:] = r[1:, 1:] - r[1:, :-1]
        body = _planes(_zigzag(r2))
        cand = (AMP_TIME_FREQ, struct.pack("<I", len(body)) + _zc(body))
        if len(cand[1]) < len(best[1]):
            best = cand
    return best


def encode_v1(phases, amps, reconstruct=True):
    """Encode a run of F micro frames (F x N phases and amplitudes) with codec v1.
    Returns (blob, phases, amplitudes): the blob and the encoder's own reconstruction,
    which decode(blob) reproduces bit for bit (None, None with reconstruct=False, for
    callers that only store the blob)."""
    phases, amps = _check_frames(phases, amps)
    F, N = phases.shape
    q = quantize_phases(phases)
    idx = quantize_amplitudes(amps)
    pmode, psec = _phase_section(q)
    amode, asec = _amp_section(idx)
    head = _V1_HEADER.pack(1, KIND_PHASE_AMP, N, F, PHASE_LEVELS, AMP_MANTISSA_BITS, AMP_FLOOR_EXP,
                           pmode, amode, len(psec))
    if not reconstruct:
        return head + psec + asec, None, None
    return head + psec + asec, dequantize_phases(q), dequantize_amplitudes(idx)


def encode_vector(vectors, version=1):
    """Meso / macro frames: F x N float32 values, lossless."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or not np.isfinite(v).all():
        raise CodecError("vectors: must be a finite F x N array")
    F, N = v.shape
    head = _V1_HEADER.pack(version, KIND_VECTOR, N, F, 0, 0, 0, 0, 0, 4 * F * N)
    return head + v.astype("<f4").tobytes(), v


def _decode_v1(blob):
    if len(blob) < _V1_HEADER.size:
        raise CodecError("psi_blob: shorter than the v1 header")
    ver, kind, N, F, L, M, fe, pmode, amode, plen = _V1_HEADER.unpack_from(blob, 0)
    off = _V1_HEADER.size
    if kind == KIND_VECTOR:
        if len(blob) != off + 4 * F * N or plen != 4 * F * N:
            raise CodecError("psi_blob: vector frame has the wrong length")
        return None, None, np.frombuffer(blob, dtype="<f4", offset=off).reshape(F, N).astype(np.float32)
    if kind != KIND_PHASE_AMP:
        raise CodecError(f"psi_blob: unknown frame kind {kind}")
    if (L, M, fe) != (PHASE_LEVELS, AMP_MANTISSA_BITS, AMP_FLOOR_EXP):
        raise CodecError(f"psi_blob: v1 grid ({L}, {M}, {fe}) is not this decoder's")
    if len(blob) < off + plen:
        raise CodecError("psi_blob: truncated phase section")
    psec, asec = blob[off:off + plen], blob[off + plen:]
    Lh = L // 2
    nq0 = 4 * (-(-N // 3))
    if pmode == PH_INTRA:
        q = _unpack_phases(psec, F * N).reshape(F, N)
    elif pmode in (PH_ADVANCE, PH_SECOND_ORDER):
        (size,) = struct.unpack_from("<I", psec, 0)
        body = _zd(psec[4:], size)
        pos = 0
        if pmode == PH_ADVANCE:
            adv = np.frombuffer(body, dtype="<i2", count=N).astype(np.int64)
            pos = 2 * N
        q = np.empty((F, N), dtype=np.int64)
        q[0] = _unpack_phases(body[pos:pos + nq0], N)
        r = _unzigzag(_unplanes(body[pos + nq0:], (F - 1) * N)).reshape(F - 1, N)
        for t in range(1, F):
            if pmode == PH_ADVANCE:
                pred = q[t - 1] + adv
            else:
                pred = q[0] if t == 1 else 2 * q[t - 1] - q[t - 2]
            q[t] = (pred + r[t - 1]) % L
        if q.min() < 0 or q.max() >= L:
            raise CodecError("psi_blob: phase index out of range")
    else:
        raise CodecError(f"psi_blob: unknown phase mode {pmode}")
    if len(asec) < 4:
        raise CodecError("psi_blob: truncated amplitude section")
    (size,) = struct.unpack_from("<I", asec, 0)
    r = _unzigzag(_unplanes(_zd(asec[4:], size), F * N)).reshape(F, N)
    if amode == AMP_FREQ:
        idx = np.cumsum(r, axis=1)
    elif amode in (AMP_TIME, AMP_TIME_FREQ):
        if amode == AMP_TIME_FREQ:
            r[1:] = np.cumsum(r[1:], axis=1)
        r[0] = np.cumsum(r[0])
        idx = np.cumsum(r, axis=0)
    else:
        raise CodecError(f"psi_blob: unknown amplitude mode {amode}")
    if idx.min() < 0:
        raise CodecError("psi_blob: amplitude index out of range")
    return dequantize_phases(q), dequantize_amplitudes(idx), None


# ---------------------------------------------------------------- codec v0 (the seed's)

V0_PHASE_SCALE = 32767.0 / TWO_PI
V0_LOGAMP_SCALE = 2048.0
V0_LOGAMP_MIN = -15.99


def encode_v0(phases, amps, level=22, reconstruct=True):
    """The seed's pipeline: float32 -> int16 (phase mod 2π; amplitude log-scaled), delta
    along the oscillator index, zstd --ultra -22. Returns (blob, phases, amplitudes), the
    last two None with reconstruct=False."""
    phases, amps = _check_frames(phases, amps)
    F, N = phases.shape
    p16 = np.rint(np.mod(phases.astype(np.float64), TWO_PI) * V0_PHASE_SCALE).astype(np.int64)
    la = np.log(np.maximum(amps.astype(np.float64), 1e-30))
    a16 = np.rint(np.clip(la, V0_LOGAMP_MIN, 15.99) * V0_LOGAMP_SCALE).astype(np.int64)
    a16 = np.where(amps > 0, a16, -32768)
    both = np.concatenate([p16, a16], axis=1).astype(np.int16)
    delta = both.copy()
    delta[:, 1:] = both[:, 1:] - both[:, :-1]          # wraps in int16, as the seed's would
    body = zstandard.ZstdCompressor(level=level).compress(delta.astype("<i2").tobytes())
    blob = _V0_HEADER.pack(0, KIND_PHASE_AMP, N, F) + body
    if not reconstruct:
        return blob, None, None
    return (blob,) + _v0_values(both, N)


def _v0_values(both, N):
    both = both.astype(np.int64)
    ph = (both[:, :N] / V0_PHASE_SCALE).astype(np.float32)
    a = both[:, N:]
    amp = np.where(a == -32768, 0.0, np.exp(a / V0_LOGAMP_SCALE)).astype(np.float32)
    return ph, amp


def _decode_v0(blob):
    if len(blob) < _V0_HEADER.size:
        raise CodecError("psi_blob: shorter than the v0 header")
    _, kind, N, F = _V0_HEADER.unpack_from(blob, 0)
    if kind != KIND_PHASE_AMP:
        raise CodecError(f"psi_blob: v0 holds only phase/amplitude frames, got kind {kind}")
    raw = _zd(blob[_V0_HEADER.size:], F * 2 * N * 2)
    delta = np.frombuffer(raw, dtype="<i2").reshape(F, 2 * N)
    both = np.cumsum(delta, axis=1, dtype=np.int16)     # undoes the int16-wrapping delta
    ph, amp = _v0_values(both, N)
    return ph, amp, None


# ---------------------------------------------------------------- entry points

def blob_info(blob):
    """(version, kind, N, F) from a blob's header, checked."""
    blob = bytes(blob)
    if not blob:
        raise CodecError("psi_blob: empty")
    if blob[0] == 0 and len(blob) >= _V0_HEADER.size:
        return _V0_HEADER.unpack_from(blob, 0)
    if blob[0] == 1 and len(blob) >= _V1_HEADER.size:
        return _V1_HEADER.unpack_from(blob, 0)[:4]
    raise CodecError(f"psi_blob: unknown codec version {blob[0]} or truncated header")


def decode(blob, crc=None):
    """Decode a blob of any known codec version into (phases, amplitudes, vectors), each
    an F x N float32 array or None: phase/amplitude runs fill the first two, vector runs
    (meso/macro) the third. With `crc` (the row's integrity_crc) the blob's CRC-32C is
    checked first: a damaged blob can still parse, so every decode from storage passes it."""
    blob = bytes(blob)
    if crc is not None and crc32c(blob) != crc:
        raise CodecError(f"psi_blob: CRC-32C is {crc32c(blob)}, the row's integrity_crc is {crc}: corrupt")
    version = blob_info(blob)[0]
    return _decode_v0(blob) if version == 0 else _decode_v1(blob)


def encode(phases, amps, version=1, reconstruct=True):
    """Encode a run of micro frames with codec `version` (0 or 1); see encode_v0/encode_v1."""
    if version == 0:
        return encode_v0(phases, amps, reconstruct=reconstruct)
    if version == 1:
        return encode_v1(phases, amps, reconstruct=reconstruct)
    raise CodecError(f"version: codec {version} is unknown (known: 0, 1)")
