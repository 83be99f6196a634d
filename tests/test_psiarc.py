""".psiarc archives: export -> import round trips bit for bit, idempotently; every kind of
damage (a flipped bit anywhere, truncation, reordered or dropped chunks) and every
kind of tampering or wrong passphrase is refused, and a refused import writes nothing."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import uuid

import psycopg
import pytest

from helpers import new_session, new_user, record
from realtime import psiarc
from realtime.psiarc import RECORD, ArchiveError, ArchiveReader, AuthenticationFailed, verify
from realtime.psiarc_db import export, import_archive
from realtime.process import Turn

PSIMEM = [sys.executable, "-m", "psimem"]
KEY = b"correct horse battery staple"
TEXTS = ["Good morning! The tea is ready, and the garden looks wonderful today.",
         "Shall we walk to the market after lunch?"]


def run(*args, env=None, input=None):
    return subprocess.run([*PSIMEM, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          input=input)


def psi_rows(conn, hashes):
    """Every psi row of the utterances, in key order (what a round trip must reproduce)."""
    out = []
    for t, key in (("utterances", "uttr_hash"), ("psi_frames", "uttr_hash, band, ts_epoch_ms"),
                   ("surprise_events", "uttr_hash, band, ts_epoch_ms"), ("band_centroids", "uttr_hash, band, ts_epoch_ms")):
        cols = "uttr_hash, user_id, entry_id, mode, oscillator_count, codec_version, sample_rate, frame_ms, " \
               "started_at_ms" if t == "utterances" else "*"
        q = f"SELECT {cols} FROM psi.{t} WHERE uttr_hash = ANY(%s) ORDER BY {key}"
        rows = conn.execute(q, (hashes,)).fetchall()
        out.append([tuple(v for i, v in enumerate(r) if not (t == "psi_frames" and i == 0)) for r in rows])
    return out


def count_rows(conn, hashes):
    return sum(conn.execute(f"SELECT count(*) FROM psi.{t} WHERE uttr_hash = ANY(%s)", (hashes,)).fetchone()[0]
               for t in ("utterances", "psi_frames", "surprise_events", "band_centroids"))


@pytest.fixture(scope="module")
def recorded(db_url, tmp_path_factory):
    """One user with two voiced replies (synthesis mode, 128 oscillators), committed."""
    from realtime.commands import record as record_turns

    tmp = tmp_path_factory.mktemp("psiarc")
    with psycopg.connect(db_url) as c:
        user = new_user(c, f"psiarc-{uuid.uuid4()}")
        s = new_session(c, user, f"psiarc-session-{uuid.uuid4()}")
        entries = [record(c, s, content=t, role="assistant") for t in TEXTS]
        ref = c.execute("SELECT external_ref FROM memory.users WHERE user_id = %s", (user,)).fetchone()[0]
        c.commit()
    r = record_turns(db_url, [Turn(str(e), str(user), t) for e, t in zip(entries, TEXTS)], 128, mode="synthesis",
                     spool=tmp / "spool.jsonl", keep_live=False, quiet=True)
    hashes = [bytes.fromhex(u["uttr_hash"]) for u in r["utterances"]]
    with psycopg.connect(db_url) as c:
        snapshot = psi_rows(c, hashes)
    yield {"url": db_url, "user": user, "user_ref": ref, "session": s, "entries": entries, "hashes": hashes,
           "rows": snapshot, "tmp": tmp}
    with psycopg.connect(db_url) as c:
        c.execute("DELETE FROM memory.users WHERE user_id = %s", (user,))


@pytest.fixture(scope="module")
def archives(recorded):
    """The two utterances exported plain and encrypted, in 4 KiB chunks (several per utterance)."""
    out = {}
    with psycopg.connect(recorded["url"]) as c:
        for name, key in (("plain", None), ("sealed", KEY)):
            buf = io.BytesIO()
            export(c, recorded["hashes"], buf, key, chunk_bytes=4096)
            out[name] = buf.getvalue()
    return out


def layout(data: bytes, key):
    r = ArchiveReader(io.BytesIO(data), key)
    index = r.index()
    ioff, foff = r.trailer()
    return r.data_start, index, ioff, foff


def flip(data: bytes, pos: int, bit: int = 0x10) -> bytes:
    b = bytearray(data)
    b[pos] ^= bit
    return bytes(b)


def refix_crc(data: bytearray, off: int) -> None:
    """Recompute one record's CRC-32C, as someone altering the file on purpose would."""
    rtype, flags, _, seq, length = RECORD.unpack_from(data, off)
    end = off + RECORD.size + length
    data[end:end + 4] = struct.pack("<I", psiarc._crc(bytes(data[off:end][:RECORD.size]), bytes(data[off + RECORD.size:end])))


def damaged_copies(data: bytes, key):
    start, index, ioff, foff = layout(data, key)
    c2, c3 = index[1], index[2]
    rec = lambda e: data[e.offset:e.offset + e.record_bytes]  # noqa: E731
    yield "public header bit", flip(data, 24)
    yield "manifest bit", flip(data, start + RECORD.size + 7)
    yield "chunk payload bit", flip(data, c2.offset + RECORD.size + 60)
    yield "chunk framing bit", flip(data, c2.offset + 4)
    yield "chunk CRC bit", flip(data, c2.offset + c2.record_bytes - 2)
    yield "index bit", flip(data, ioff + RECORD.size + 9)
    yield "footer bit", flip(data, foff + RECORD.size + 3)
    yield "trailer bit", flip(data, len(data) - 12, 0x01)
    yield "truncated inside a chunk", data[:c2.offset + 30]
    yield "truncated before the footer", data[:foff]
    yield "truncated trailer", data[:-5]
    yield "chunks reordered", data[:c2.offset] + rec(c3) + rec(c2) + data[c3.offset + c3.record_bytes:]
    yield "chunk dropped", data[:c2.offset] + data[c2.offset + c2.record_bytes:]
    yield "chunk duplicated", data[:c3.offset] + rec(c2) + data[c3.offset:]


def problems_of(data: bytes, key):
    """What verify reports (a refusal on opening counts as one problem)."""
    try:
        rep = verify(ArchiveReader(io.BytesIO(data), key))
        return [str(p) for p in rep.problems]
    except ArchiveError as e:
        return [str(e)]


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "encrypted"])
def test_every_kind_of_damage_is_refused_and_imports_nothing(conn, recorded, archives, sealed):
    data, key = (archives["sealed"], KEY) if sealed else (archives["plain"], None)
    hashes = recorded["hashes"]
    conn.execute("DELETE FROM psi.utterances WHERE uttr_hash = ANY(%s)", (hashes,))
    assert problems_of(data, key) == [] and count_rows(conn, hashes) == 0
    cases = list(damaged_copies(data, key))
    assert len(cases) == 14
    for name, bad in cases:
        found = problems_of(bad, key)
        assert found, f"{name}: not detected"
        with pytest.raises(ArchiveError):
            import_archive(conn, ArchiveReader(io.BytesIO(bad), key))
        assert count_rows(conn, hashes) == 0, f"{name}: a refused import wrote rows"
        if name.startswith(("chunk payload", "chunk CRC")):
            # named by chunk, utterance and time, as a person reads them
            assert "chunk 2" in found[0] and f"utterance 0 ({hashes[0].hex()})" in found[0] and "ts_epoch_ms" in found[0]


def test_tampering_with_sealed_records_fails_authentication(recorded, archives):
    data = archives["sealed"]
    start, index, ioff, foff = layout(data, KEY)
    c2, c3 = index[1], index[2]
    # a ciphertext bit flipped and the CRC recomputed: only the tag catches it
    b = bytearray(flip(data, c2.offset + RECORD.size + 50))
    refix_crc(b, c2.offset)
    rep = verify(ArchiveReader(io.BytesIO(bytes(b)), KEY))
    assert len(rep.problems) == 1 and rep.problems[0].auth
    assert "chunk 2" in str(rep.problems[0]) and "failed authentication" in str(rep.problems[0])
    with pytest.raises(AuthenticationFailed, match="record 2 at byte .*failed authentication"):
        list(ArchiveReader(io.BytesIO(bytes(b)), KEY).entries())
    # two chunks swapped with their sequence numbers rewritten and CRCs fixed: bound by nonce and associated data
    b = bytearray(data[:c2.offset] + data[c3.offset:c3.offset + c3.record_bytes] +
                  data[c2.offset:c2.offset + c2.record_bytes] + data[c3.offset + c3.record_bytes:])
    struct.pack_into("<I", b, c2.offset + 4, 2)
    struct.pack_into("<I", b, c2.offset + c3.record_bytes + 4, 3)
    refix_crc(b, c2.offset)
    refix_crc(b, c2.offset + c3.record_bytes)
    with pytest.raises(AuthenticationFailed):
        list(ArchiveReader(io.BytesIO(bytes(b)), KEY).entries())
    assert verify(ArchiveReader(io.BytesIO(bytes(b)), KEY)).problems[0].auth
    # a public header changed (and its CRC fixed): every record's associated data changes
    pub_len = struct.unpack_from("<I", data, 12)[0]
    head = bytearray(data[:16 + pub_len])
    i = head.index(b'"utterances":2')
    head[i + 13] = ord("3")
    fixed = bytes(head) + struct.pack("<I", psiarc._crc(bytes(head))) + data[16 + pub_len + 4:]
    with pytest.raises(AuthenticationFailed):
        ArchiveReader(io.BytesIO(fixed), KEY).manifest()
    with pytest.raises(AuthenticationFailed, match="wrong passphrase"):
        ArchiveReader(io.BytesIO(data), b"Tr0ub4dor&3").manifest()


def test_sealed_archive_shows_only_its_public_header_and_new_salts_give_new_ciphertext(recorded, archives):
    data = archives["sealed"]
    for text in TEXTS:
        assert text.encode() not in data
    for h in recorded["hashes"]:
        assert h.hex().encode() not in data and h not in data
    r = ArchiveReader(io.BytesIO(data))
    assert r.encrypted and not r.can_read
    assert r.public["summary"] == {"utterances": 2, "oscillator_counts": [128], "codec_versions": [1],
                                   "sample_rates": [8000]}
    assert r.public["encryption"]["aead"] == "ChaCha20-Poly1305" and r.public["encryption"]["kdf"]["name"] in (
        "argon2id", "scrypt")
    with pytest.raises(psiarc.PassphraseNeeded):
        r.manifest()
    with psycopg.connect(recorded["url"]) as c:
        again = io.BytesIO()
        export(c, recorded["hashes"], again, KEY, chunk_bytes=4096)
    other = ArchiveReader(io.BytesIO(again.getvalue()))
    assert other.public["encryption"]["kdf"]["salt"] != r.public["encryption"]["kdf"]["salt"]
    a, b = ArchiveReader(io.BytesIO(data), KEY), ArchiveReader(io.BytesIO(again.getvalue()), KEY)
    ea = [(u, e.key, getattr(e, "blob", None)) for u, e in a.entries()]
    assert ea == [(u, e.key, getattr(e, "blob", None)) for u, e in b.entries()]
    assert data[a.data_start + 200:a.data_start + 400] != again.getvalue()[b.data_start + 200:b.data_start + 400]


def test_cli_export_import_round_trip_is_bit_identical_idempotent_and_verified(recorded):
    url, hashes, tmp = recorded["url"], recorded["hashes"], recorded["tmp"]
    env = {"PSIMEM_DATABASE_URL": url}
    f = tmp / "user.psiarc"
    ex = run("psiarc", "export", "--user", recorded["user_ref"], "-o", str(f), env=env)
    assert ex.returncode == 0 and "2 utterance(s)" in ex.stdout, ex.stderr
    info = run("psiarc", "info", str(f), env=env)
    assert info.returncode == 0 and all(h.hex() in info.stdout for h in hashes) and TEXTS[1][:30] in info.stdout
    vf = run("psiarc", "verify", str(f), env=env)
    assert vf.returncode == 0 and ": ok:" in vf.stdout, vf.stderr
    with psycopg.connect(url) as c:
        c.execute("DELETE FROM psi.utterances WHERE uttr_hash = ANY(%s)", (hashes,))
    imp = run("psiarc", "import", str(f), env=env)
    assert imp.returncode == 0 and "2 new utterance(s)" in imp.stdout, imp.stderr
    with psycopg.connect(url) as c:
        assert psi_rows(c, hashes) == recorded["rows"]          # every column of every row, blobs bit for bit
        assert c.execute("SELECT count(*), count(*) FILTER (WHERE NOT ok) FROM psi.verify(%s)",
                         (hashes[0],)).fetchone()[1] == 0
    again = run("psiarc", "import", str(f), env=env)
    assert again.returncode == 0 and again.stdout.startswith("nothing new")
    with psycopg.connect(url) as c:
        assert psi_rows(c, hashes) == recorded["rows"]
    # selections that name nothing are refused with the argument named
    none = run("psiarc", "export", "--user", recorded["user_ref"], "--since", "2999-01-01", "-o", str(tmp / "x.psiarc"),
               env=env)
    assert none.returncode == 2 and "no recorded utterance matches" in none.stderr and not (tmp / "x.psiarc").exists()
    bad = run("psiarc", "export", "--session", str(recorded["session"]), "--since", "yesterday", "-o", str(tmp / "x.psiarc"),
              env=env)
    assert bad.returncode == 2 and "--since" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_cli_encryption_passphrases_wrong_keys_and_conversion(recorded):
    url, tmp = recorded["url"], recorded["tmp"]
    env = {"PSIMEM_DATABASE_URL": url, "ARC_KEY": KEY.decode()}
    f, plain, resealed = tmp / "sealed.psiarc", tmp / "opened.psiarc", tmp / "resealed.psiarc"
    keyfile, wrong = tmp / "key.txt", tmp / "wrong.txt"
    keyfile.write_text(KEY.decode() + "\n")
    wrong.write_text("not the passphrase\n")
    ex = run("psiarc", "export", "--utterance", recorded["hashes"][0].hex(), "--encrypt", "--passphrase-env", "ARC_KEY",
             "-o", str(f), env=env)
    assert ex.returncode == 0 and "encrypted" in ex.stdout, ex.stderr
    info = run("psiarc", "info", str(f), env=env)
    assert info.returncode == 0 and "encrypted: ChaCha20-Poly1305" in info.stdout
    assert recorded["hashes"][0].hex() not in info.stdout and "sealed" in info.stdout
    no_tty = run("psiarc", "verify", str(f), env=env, input="")
    assert no_tty.returncode == 2 and "--passphrase-file or --passphrase-env" in no_tty.stderr
    bad = run("psiarc", "verify", str(f), "--passphrase-file", str(wrong), env=env)
    assert bad.returncode == 4 and "wrong passphrase" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    with psycopg.connect(url) as c:
        before = count_rows(c, recorded["hashes"])
    imp = run("psiarc", "import", str(f), "--passphrase-file", str(wrong), env=env)
    assert imp.returncode == 4
    ok = run("psiarc", "verify", str(f), "--passphrase-file", str(keyfile), env=env)
    assert ok.returncode == 0 and "CRC-32C and tag" in ok.stdout, ok.stderr
    dec = run("psiarc", "decrypt", str(f), str(plain), "--passphrase-file", str(keyfile), env=env)
    assert dec.returncode == 0, dec.stderr
    assert recorded["hashes"][0].hex() in run("psiarc", "info", str(plain), env=env).stdout
    enc = run("psiarc", "encrypt", str(plain), str(resealed), "--passphrase-env", "ARC_KEY", env=env)
    assert enc.returncode == 0, enc.stderr
    a = ArchiveReader(open(f, "rb"), KEY)
    b = ArchiveReader(open(resealed, "rb"), KEY)
    assert [(u, e.key) for u, e in a.entries()] == [(u, e.key) for u, e in b.entries()]
    assert a.public["encryption"]["kdf"]["salt"] != b.public["encryption"]["kdf"]["salt"]
    # a flipped bit in a sealed chunk: damaged (exit 3), and import writes nothing
    start, index, _, _ = layout(f.read_bytes(), KEY)
    damaged = tmp / "damaged.psiarc"
    damaged.write_bytes(flip(f.read_bytes(), index[0].offset + RECORD.size + 40))
    v = run("psiarc", "verify", str(damaged), "--passphrase-env", "ARC_KEY", env=env)
    assert v.returncode == 3 and "chunk 1" in v.stderr and "CRC-32C mismatch" in v.stderr
    i = run("psiarc", "import", str(damaged), "--passphrase-env", "ARC_KEY", env=env)
    assert i.returncode == 3 and "CRC-32C mismatch" in i.stderr
    with psycopg.connect(url) as c:
        assert count_rows(c, recorded["hashes"]) == before


def test_import_keeps_an_utterance_whose_turn_is_absent_and_refuses_unknown_users(conn, recorded, archives):
    hashes = recorded["hashes"]
    conn.execute("DELETE FROM psi.utterances WHERE uttr_hash = ANY(%s)", (hashes,))
    conn.execute("DELETE FROM memory.day_table WHERE entry_id = %s", (recorded["entries"][0],))
    rep = import_archive(conn, ArchiveReader(io.BytesIO(archives["plain"])))
    assert rep.turn_absent == [hashes[0].hex()] and rep.utterances_new == 2
    got = dict(conn.execute("SELECT uttr_hash, entry_id FROM psi.utterances WHERE uttr_hash = ANY(%s)",
                            (hashes,)).fetchall())
    assert got == {hashes[0]: None, hashes[1]: recorded["entries"][1]}
    conn.execute("DELETE FROM memory.users WHERE user_id = %s", (recorded["user"],))
    from realtime.psiarc_db import ImportRefused
    with pytest.raises(ImportRefused, match=f"user_id: user {recorded['user']} .* does not exist"):
        import_archive(conn, ArchiveReader(io.BytesIO(archives["plain"])))
    assert count_rows(conn, hashes) == 0


def test_seeking_by_utterance_and_time_reads_only_matching_chunks(recorded, archives):
    r = ArchiveReader(io.BytesIO(archives["plain"]))
    m = r.manifest()
    u = m["utterances"][1]
    t0 = u["started_at_ms"] + 1000
    got = list(r.seek(1, t0, t0 + 500))
    assert got and all(e.ts <= t0 + 500 for e in got)
    micro = [e for e in got if e.kind == 0 and e.band == 0]
    assert micro and all(e.ts + 20 * e.frame_count > t0 for e in micro)
    every = [e for ui, e in ArchiveReader(io.BytesIO(archives["plain"])).entries() if ui == 1]
    want = [e for e in every if e.ts <= t0 + 500 and (e.ts >= t0 or e.ts + (e.duration_ms * e.frame_count if
                                                                              e.kind == 0 else 0) > t0)]
    assert [e.key for e in got] == [e.key for e in want]


def test_a_writer_login_imports_two_users_rows_each_to_its_own_user(conn, recorded):
    """Import as a psimem_writer login under row-level security: it acts for each user in
    turn, so both users' rows land, each with its own user_id, and nothing else."""
    import numpy as np

    from realtime import codec_core as cc

    b = new_user(conn, f"psiarc-b-{uuid.uuid4()}")
    text = "A second user's reply."
    entry = record(conn, new_session(conn, b), content=text, role="assistant")
    hb = cc.utterance_hash(uuid.UUID(str(entry)).bytes, text)
    conn.execute("INSERT INTO psi.utterances (uttr_hash, user_id, entry_id, mode, oscillator_count, codec_version, "
                 "sample_rate, started_at_ms) VALUES (%s, %s, %s, 'synthesis', 128, 1, 8000, 1700000000000)",
                 (hb, b, entry))
    rng = np.random.default_rng(5)
    blob = cc.encode(rng.uniform(0, 6.2, (10, 128)), rng.lognormal(-3, 1, (10, 128)), 1)[0]
    conn.execute("INSERT INTO psi.psi_frames (uttr_hash, user_id, ts_epoch_ms, band, duration_ms, frame_count, psi_blob, "
                 "integrity_crc) VALUES (%s, %s, 1700000000000, 0, 20, 10, %s, %s)", (hb, b, blob, cc.crc32c(blob)))
    hashes = [recorded["hashes"][0], hb]
    buf = io.BytesIO()
    export(conn, hashes, buf)
    want = psi_rows(conn, hashes)
    conn.execute("DELETE FROM psi.utterances WHERE uttr_hash = ANY(%s)", (hashes,))
    conn.execute("CREATE ROLE psiarc_importer LOGIN IN ROLE psimem_writer")
    conn.execute("SET LOCAL ROLE psiarc_importer")
    rep = import_archive(conn, ArchiveReader(io.BytesIO(buf.getvalue())))
    assert rep.utterances_new == 2 and rep.rows_new["psi_frames"] == len(want[1])
    conn.execute("RESET ROLE")
    assert psi_rows(conn, hashes) == want
    owners = dict(conn.execute("SELECT uttr_hash, user_id FROM psi.utterances WHERE uttr_hash = ANY(%s)",
                               (hashes,)).fetchall())
    assert owners == {recorded["hashes"][0]: recorded["user"], hb: b}
