"""The ψ codec: round trips over random and structured frames at every N, the error
budget, the size targets, version tags, and one decoder source for Python and SQL."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from realtime import codec_core as cc
from realtime.codec_sql import LOADER, SQL_FILE, render
from realtime.core import OscillatorCore, prosody_events
from realtime.replay import phase_error

NS = (128, 256, 512)
# sha256 of _golden_inputs()' blobs, computed with the codec as first committed (before the
# shared zstd contexts and reconstruct=False): encoding must keep giving these bytes
GOLDEN_DIGEST = "7fb286a373e3800c2dce57a95f86192e8b68c0c6f8419b0eead24bd334f2a5cc"


@st.composite
def frames(draw):
    n = draw(st.sampled_from(NS))
    f = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["random", "network", "silence", "extreme"]))
    if kind == "random":
        ph = rng.uniform(-20, 20, (f, n))
        amp = rng.lognormal(-3, 4, (f, n)) * (rng.random((f, n)) > 0.2)
    elif kind == "network":   # phases advancing by ω·dt plus jitter, smooth amplitudes
        omega = rng.uniform(0, 2 * np.pi * 4000, n)
        ph = np.mod(rng.uniform(0, 2 * np.pi, n) + np.outer(np.arange(f), omega * 0.02)
                    + rng.normal(0, 0.002, (f, n)), 2 * np.pi)
        amp = np.abs(np.sin(np.linspace(0, 3, n)))[None] * np.linspace(0.5, 1.5, f)[:, None]
    elif kind == "silence":
        ph, amp = np.zeros((f, n)), np.zeros((f, n))
    else:
        ph = rng.choice([0.0, np.nextafter(2 * np.pi, 0), np.pi, -1e-9], (f, n))
        amp = rng.choice([0.0, 1e-30, 2.0 ** -21, 2.0 ** -20, 1.0, 1e4, 3e38], (f, n))
    return ph.astype(np.float32), amp.astype(np.float32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.sampled_from([0, 1]))
def test_decode_is_bit_exact_with_the_encoders_reconstruction(fr, version):
    ph, amp = fr
    blob, rp, ra = cc.encode(ph, amp, version)
    assert cc.blob_info(blob)[:4] == (version, cc.KIND_PHASE_AMP, ph.shape[1], ph.shape[0])
    dp, da, vec = cc.decode(blob)
    assert vec is None and np.array_equal(dp, rp) and np.array_equal(da, ra)
    if version == 1:
        err = phase_error(rp, ph)
        assert err.max() <= cc.PHASE_STEP / 2 + 1e-6                      # the phase grid's bound
        big = (amp >= 2.0 ** cc.AMP_FLOOR_EXP) & (amp < 1e30)
        assert np.all(np.abs(ra[big] - amp[big]) <= amp[big] / 2 ** (cc.AMP_MANTISSA_BITS + 1) * 1.0001)
        assert np.all(ra[amp < 2.0 ** (cc.AMP_FLOOR_EXP - 1)] == 0)


def test_phase_error_mean_is_inside_the_budget_on_uniform_phases():
    rng = np.random.default_rng(1)
    ph = rng.uniform(0, 2 * np.pi, (50, 256)).astype(np.float32)
    _, rp, _ = cc.encode_v1(ph, np.ones_like(ph))
    assert phase_error(rp, ph).mean() < 1e-3


def test_network_frames_fit_300_bytes_and_predicted_modes_win():
    core = OscillatorCore(256, seed=2)
    steps = [core.step_network(f0, env, fm) for frames, f0, env, fm in
             prosody_events("Well, I think we should go to the lake this weekend, don't you?") for _ in range(frames)]
    ph = np.stack([s.phases for s in steps][:200])
    amp = np.stack([s.amps for s in steps][:200])
    sizes, modes = 0, set()
    for i in range(0, 200, 50):
        blob, _, _ = cc.encode_v1(ph[i:i + 50], amp[i:i + 50])
        sizes += len(blob)
        modes.add(cc._V1_HEADER.unpack_from(blob, 0)[7])
    assert sizes / 200 <= 300 and modes <= {cc.PH_ADVANCE, cc.PH_SECOND_ORDER}


def test_vectors_are_lossless_and_refusals_name_the_rule():
    v = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    blob, rv = cc.encode_vector(v)
    assert np.array_equal(cc.decode(blob)[2], v)
    with pytest.raises(cc.CodecError, match="finite"):
        cc.encode_v1(np.full((1, 128), np.nan), np.ones((1, 128)))
    with pytest.raises(cc.CodecError, match="amplitudes: must be >= 0"):
        cc.encode_v1(np.zeros((1, 128)), -np.ones((1, 128)))
    with pytest.raises(cc.CodecError, match="unknown codec version 7"):
        cc.decode(b"\x07" + blob[1:])
    blob, _, _ = cc.encode_v1(np.zeros((2, 128)), np.ones((2, 128)))
    with pytest.raises(cc.CodecError):
        cc.decode(blob[:-3])


def test_siphash_reference_vectors_and_canonical_text():
    key = bytes(range(16))
    assert cc.siphash24_128(key, b"").hex() == "a3817f04ba25a8e66df67214c7550293"
    assert cc.siphash24_128(key, bytes(range(15))).hex() == "5493e99933b0a8117e08ec0f97cfc3d9"
    assert cc.utterance_hash(key, "  Caf\u0065\u0301   ok ") == cc.utterance_hash(key, "Caf\u00e9 ok")


def test_the_sql_codec_is_the_python_codec():
    """db/functions/psi_codec.sql is generated from codec_core.py; every PL/Python function
    loads it the same way. Regenerate with `python -m realtime.codec_sql --write`."""
    assert SQL_FILE.read_text() == render()
    for f in SQL_FILE.parent.parent.glob("*/psi_*.sql"):
        if f == SQL_FILE:  # holds psi._codec_install(), the loader itself
            continue
        text = f.read_text()
        assert text.count("LANGUAGE plpython3u") == text.count(LOADER), f


def _golden_inputs():
    rng = np.random.default_rng(11)
    out = []
    for n in NS:
        for f in (1, 2, 7, 50):
            ph = rng.uniform(-20, 20, (f, n))
            amp = rng.lognormal(-3, 4, (f, n)) * (rng.random((f, n)) > 0.2)
            out.append((ph.astype(np.float32), amp.astype(np.float32)))
        omega = rng.uniform(0, 2 * np.pi * 4000, n)        # a network-like run: predicted modes win
        ph = np.mod(rng.uniform(0, 2 * np.pi, n) + np.outer(np.arange(50), omega * 0.02)
                    + rng.normal(0, 0.002, (50, n)), 2 * np.pi)
        amp = np.abs(np.sin(np.linspace(0, 3, n)))[None] * np.linspace(0.5, 1.5, 50)[:, None]
        out.append((ph.astype(np.float32), amp.astype(np.float32)))
    return out


def test_encoded_bytes_are_those_of_the_released_codec():
    """Stored blobs must not change when the encoder is made faster: the digest of these
    runs' blobs (v0 and v1) is the one the codec gave when v1 was released. Encoding
    without the reconstruction gives the same blob."""
    import hashlib
    h = hashlib.sha256()
    for ph, amp in _golden_inputs():
        for version in (0, 1):
            blob = cc.encode(ph, amp, version)[0]
            assert cc.encode(ph, amp, version, reconstruct=False) == (blob, None, None)
            h.update(blob)
    assert h.hexdigest() == GOLDEN_DIGEST
