""".psiarc: the portable ψ archive format (docs/psiarc.md is its specification).

A file is a preamble (magic, format version, flags, a public JSON header and its
CRC-32C), then numbered records -- the manifest, frame chunks, the chunk index, the
footer -- each framed as type/seq/length/payload/CRC-32C, then a 24-byte trailer that
locates the index and the footer for random access.

Chunks carry the stored psi_frames blobs byte for byte (no re-encode), plus surprise
events and band centroids, as entries of one utterance in (ts_epoch_ms, kind, band)
order. Writing and reading hold one chunk at a time: memory does not grow with the
length of an archive (the index grows by 44 bytes a chunk, about 1 MiB of frames).

Encrypted archives seal every record with ChaCha20-Poly1305 under a key derived from a
passphrase by Argon2id (scrypt where the OpenSSL build lacks it) with a random salt kept
in the public header. The nonce of record `seq` is seq itself (a file never holds two
records with one seq, and every file has its own salt and so its own key); the
associated data is the SHA-256 of the preamble and the record's framing, so a record
cannot be moved, renumbered, dropped or taken from another archive without failing
authentication. Only the public header (format, KDF parameters, oscillator counts,
codec versions, sample rates, utterance count) is readable without the passphrase.

This module knows the format only: PostgreSQL lives in psiarc_db.py, the commands in
psiarc_cli.py.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import numpy as np
from crc32c import crc32c as _crc32c

from . import codec_core as cc

MAGIC = b"\x89PSIARC\n"                  # the high byte and the newline catch 7-bit and text-mode transfers
END_MAGIC = b"PSIAEND\n"
FORMAT_VERSION = 1
FLAG_ENCRYPTED = 0x0001

PREAMBLE = struct.Struct("<8sHHI")       # magic, format version, flags, public header length
RECORD = struct.Struct("<BBHII")         # type, flags, reserved, seq, stored payload length
TRAILER = struct.Struct("<QQ8s")         # index record offset, footer record offset, END_MAGIC
CHUNK_HEAD = struct.Struct("<IIqq")      # utterance index, entries, ts_min, ts_max
FRAME = struct.Struct("<BBHHBxqII")      # kind 0, band, duration_ms, frame_count, flags, ts, integrity_crc, blob length
SURPRISE = struct.Struct("<BB6xqff")     # kind 1, band, ts, epsilon, threshold
CENTROID = struct.Struct("<BBH4xqf")     # kind 2, band, dimensions, ts, weight (then float32 x dimensions)
INDEX_ENTRY = struct.Struct("<IQIIqqII")  # seq, offset, record bytes, utterance, ts_min, ts_max, entries, micro frames
EMO = struct.Struct("<3f")

REC_MANIFEST, REC_CHUNK, REC_INDEX, REC_FOOTER = 1, 2, 3, 4
REC_NAMES = {REC_MANIFEST: "manifest", REC_CHUNK: "chunk", REC_INDEX: "index", REC_FOOTER: "footer"}
KIND_FRAME, KIND_SURPRISE, KIND_CENTROID = 0, 1, 2
FRAME_HAS_EMO = 0x01

TAG_BYTES = 16
MAX_PUBLIC_HEADER = 1 << 20
MAX_RECORD = 64 << 20                    # a length field beyond this is damage, not data
DEFAULT_CHUNK_BYTES = 1 << 20
BAND_NAMES = {0: "micro", 1: "meso", 2: "macro"}

# Argon2id at OWASP's first recommendation (19 MiB, 2 passes, 1 lane): memory-hard, and
# small enough that the KDF does not set the peak memory of a psiarc command.
ARGON2 = {"name": "argon2id", "memory_kib": 19456, "iterations": 2, "lanes": 1}
SCRYPT = {"name": "scrypt", "n": 1 << 15, "r": 8, "p": 1}          # 32 MiB


# ------------------------------------------------------------------ errors

class ArchiveError(Exception):
    """An archive refused: the message names the record, chunk, utterance and time where
    they are known. `exit_code` is what the psiarc commands exit with."""
    exit_code = 3

    def __init__(self, msg: str, where: str | None = None):
        super().__init__(f"{where}: {msg}" if where else msg)
        self.where = where


class NotAnArchive(ArchiveError):
    pass


class CorruptArchive(ArchiveError):
    pass


class TruncatedArchive(CorruptArchive):
    pass


class AuthenticationFailed(ArchiveError):
    """Wrong passphrase, or a sealed record that was altered, moved or replaced."""
    exit_code = 4


class PassphraseNeeded(ArchiveError):
    exit_code = 2


# ------------------------------------------------------------------ small helpers

def _crc(*parts: bytes) -> int:
    c = 0
    for p in parts:
        c = _crc32c(p, c)
    return c & 0xFFFFFFFF


def iso_ms(ts_ms: int) -> str:
    try:
        return _dt.datetime.fromtimestamp(ts_ms / 1000, _dt.timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return "out of range"


def nonce(seq: int) -> bytes:
    """The record's nonce: its sequence number. Unique within a file by construction."""
    return struct.pack("<Q", seq) + b"\0\0\0\0"


def derive_key(passphrase: bytes, kdf: dict) -> bytes:
    """32-byte key from the passphrase with the header's KDF parameters."""
    salt = bytes.fromhex(kdf["salt"])
    if kdf["name"] == "argon2id":
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
        return Argon2id(salt=salt, length=32, iterations=int(kdf["iterations"]), lanes=int(kdf["lanes"]),
                        memory_cost=int(kdf["memory_kib"])).derive(passphrase)
    if kdf["name"] == "scrypt":
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
        return Scrypt(salt=salt, length=32, n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"])).derive(passphrase)
    raise NotAnArchive(f"encryption.kdf.name: unknown KDF {kdf['name']!r} (known: argon2id, scrypt)", "public header")


def new_kdf() -> dict:
    """KDF parameters with a fresh random salt: Argon2id where this OpenSSL has it."""
    salt = os.urandom(16).hex()
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
        Argon2id(salt=b"\0" * 16, length=32, iterations=1, lanes=1, memory_cost=8)
        return {**ARGON2, "salt": salt}
    except Exception:        # UnsupportedAlgorithm on an OpenSSL without Argon2
        return {**SCRYPT, "salt": salt}


# ------------------------------------------------------------------ entries

@dataclass
class FrameEntry:
    band: int
    ts: int
    duration_ms: int
    frame_count: int
    blob: bytes
    crc: int
    emo_vec: tuple | None = None
    kind: int = KIND_FRAME

    @property
    def key(self):
        return (self.ts, KIND_FRAME, self.band)


@dataclass
class SurpriseEntry:
    band: int
    ts: int
    epsilon: float
    threshold: float
    kind: int = KIND_SURPRISE

    @property
    def key(self):
        return (self.ts, KIND_SURPRISE, self.band)


@dataclass
class CentroidEntry:
    band: int
    ts: int
    centroid: np.ndarray
    weight: float
    kind: int = KIND_CENTROID

    @property
    def key(self):
        return (self.ts, KIND_CENTROID, self.band)


def pack_entry(e) -> bytes:
    if e.kind == KIND_FRAME:
        emo = e.emo_vec is not None
        head = FRAME.pack(KIND_FRAME, e.band, e.duration_ms, e.frame_count, FRAME_HAS_EMO if emo else 0, e.ts,
                          e.crc, len(e.blob))
        return head + (EMO.pack(*e.emo_vec) if emo else b"") + bytes(e.blob)
    if e.kind == KIND_SURPRISE:
        return SURPRISE.pack(KIND_SURPRISE, e.band, e.ts, e.epsilon, e.threshold)
    c = np.asarray(e.centroid, dtype="<f4")
    return CENTROID.pack(KIND_CENTROID, e.band, c.size, e.ts, e.weight) + c.tobytes()


def unpack_entries(buf: bytes, count: int, where: str) -> list:
    """The entries of a chunk payload (after its CHUNK_HEAD)."""
    out, off, n = [], 0, len(buf)
    mv = memoryview(buf)
    for i in range(count):
        if off >= n:
            raise CorruptArchive(f"entry {i}: the chunk holds fewer entries than its header says ({count})", where)
        kind = buf[off]
        try:
            if kind == KIND_FRAME:
                _, band, dur, fc, flags, ts, crc, blen = FRAME.unpack_from(buf, off)
                off += FRAME.size
                emo = None
                if flags & FRAME_HAS_EMO:
                    emo = EMO.unpack_from(buf, off)
                    off += EMO.size
                if off + blen > n:
                    raise CorruptArchive(f"entry {i}: blob runs past the end of the chunk", where)
                out.append(FrameEntry(band, ts, dur, fc, bytes(mv[off:off + blen]), crc, emo))
                off += blen
            elif kind == KIND_SURPRISE:
                _, band, ts, eps, thr = SURPRISE.unpack_from(buf, off)
                off += SURPRISE.size
                out.append(SurpriseEntry(band, ts, eps, thr))
            elif kind == KIND_CENTROID:
                _, band, dim, ts, w = CENTROID.unpack_from(buf, off)
                off += CENTROID.size
                if off + 4 * dim > n:
                    raise CorruptArchive(f"entry {i}: centroid runs past the end of the chunk", where)
                out.append(CentroidEntry(band, ts, np.frombuffer(buf, dtype="<f4", count=dim, offset=off).copy(), w))
                off += 4 * dim
            else:
                raise CorruptArchive(f"entry {i}: unknown entry kind {kind} (known: 0 frame, 1 surprise, 2 centroid)",
                                     where)
        except struct.error:
            raise CorruptArchive(f"entry {i}: truncated entry", where) from None
    if off != n:
        raise CorruptArchive(f"{n - off} bytes after the last of {count} entries", where)
    return out


@dataclass
class Chunk:
    seq: int
    offset: int
    record_bytes: int
    utterance: int
    ts_min: int
    ts_max: int
    entries: list
    micro_frames: int


@dataclass
class IndexEntry:
    seq: int
    offset: int
    record_bytes: int
    utterance: int
    ts_min: int
    ts_max: int
    entries: int
    micro_frames: int


# ------------------------------------------------------------------ writer

class ArchiveWriter:
    """Writes an archive to a binary file object, chunk by chunk.

    manifest: the utterances (see docs/psiarc.md); summary: the public header's summary
    (derived from the manifest when None). Call begin_utterance(i), then add() entries of
    that utterance in strictly increasing (ts, kind, band) order, then close()."""

    def __init__(self, f: BinaryIO, manifest: dict, passphrase: bytes | None = None,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, created_at: str | None = None, kdf: dict | None = None):
        if not 1024 <= chunk_bytes <= MAX_RECORD // 2:
            raise ValueError(f"chunk_bytes: must be between 1 KiB and {MAX_RECORD // 2 >> 20} MiB, got {chunk_bytes}")
        self.f = f
        self.chunk_bytes = chunk_bytes
        self.manifest = manifest
        self.pos = 0
        self.seq = 0
        self.index: list[IndexEntry] = []
        self.totals = {"chunks": 0, "frame_rows": {"0": 0, "1": 0, "2": 0}, "micro_frames": 0,
                       "surprise_events": 0, "centroids": 0, "blob_bytes": 0, "payload_bytes": 0}
        self._aead = None
        utts = manifest["utterances"]
        public = {"format": "psiarc", "version": FORMAT_VERSION,
                  "created_at": created_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "generator": "psimem",
                  "summary": {"utterances": len(utts),
                              "oscillator_counts": sorted({u["oscillator_count"] for u in utts}),
                              "codec_versions": sorted({u["codec_version"] for u in utts}),
                              "sample_rates": sorted({u["sample_rate"] for u in utts})},
                  "encryption": None}
        if passphrase is not None:
            if not passphrase:
                raise ValueError("passphrase: must not be empty")
            kdf = kdf or new_kdf()
            public["encryption"] = {"aead": "ChaCha20-Poly1305", "nonce": "record seq, u64 LE + 4 zero bytes",
                                    "kdf": kdf}
            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
            self._aead = ChaCha20Poly1305(derive_key(passphrase, kdf))
        self.public = public
        pub = json.dumps(public, separators=(",", ":"), sort_keys=True).encode()
        pre = PREAMBLE.pack(MAGIC, FORMAT_VERSION, FLAG_ENCRYPTED if self._aead else 0, len(pub)) + pub
        pre += struct.pack("<I", _crc(pre))
        self.header_digest = hashlib.sha256(pre).digest()
        self._write(pre)
        self._record(REC_MANIFEST, json.dumps(manifest, separators=(",", ":")).encode())
        self._utt: int | None = None
        self._buf: list[bytes] = []
        self._buf_len = 0
        self._meta = None
        self._last_key = None

    def _write(self, b: bytes) -> None:
        self.f.write(b)
        self.pos += len(b)

    def _record(self, rtype: int, plaintext: bytes) -> tuple[int, int, int]:
        """Frame (and seal) one record; returns (seq, offset, record bytes)."""
        seq, offset = self.seq, self.pos
        length = len(plaintext) + (TAG_BYTES if self._aead else 0)
        if length > MAX_RECORD:
            raise ValueError(f"record: {length} bytes is over the {MAX_RECORD >> 20} MiB limit")
        head = RECORD.pack(rtype, 0, 0, seq, length)
        payload = self._aead.encrypt(nonce(seq), plaintext, self.header_digest + head) if self._aead else plaintext
        self._write(head)
        self._write(payload)
        self._write(struct.pack("<I", _crc(head, payload)))
        self.seq += 1
        self.totals["payload_bytes"] += len(plaintext)
        return seq, offset, self.pos - offset

    # -------- entries
    def begin_utterance(self, i: int) -> None:
        if not 0 <= i < len(self.manifest["utterances"]):
            raise ValueError(f"utterance: index {i} is not in the manifest")
        self._flush_chunk()
        self._utt = i
        self._last_key = None

    def add(self, e) -> None:
        if self._utt is None:
            raise ValueError("add: call begin_utterance first")
        if self._last_key is not None and e.key <= self._last_key:
            raise ValueError(f"entry order: {e.key} after {self._last_key} (entries go in strictly increasing "
                             "(ts_epoch_ms, kind, band) order within an utterance)")
        self._last_key = e.key
        b = pack_entry(e)
        if self._buf and self._buf_len + len(b) > self.chunk_bytes:
            self._flush_chunk()
        if self._meta is None:
            self._meta = [e.ts, e.ts, 0, 0]
        m = self._meta
        m[0], m[1], m[2] = min(m[0], e.ts), max(m[1], e.ts), m[2] + 1
        t = self.totals
        if e.kind == KIND_FRAME:
            t["frame_rows"][str(e.band)] += 1
            t["blob_bytes"] += len(e.blob)
            if e.band == 0:
                m[3] += e.frame_count
                t["micro_frames"] += e.frame_count
        elif e.kind == KIND_SURPRISE:
            t["surprise_events"] += 1
        else:
            t["centroids"] += 1
        self._buf.append(b)
        self._buf_len += len(b)

    def _flush_chunk(self) -> None:
        if not self._buf:
            return
        ts_min, ts_max, n, micro = self._meta
        self._emit_chunk(self._utt, b"".join(self._buf), ts_min, ts_max, n, micro)
        self._buf, self._buf_len, self._meta = [], 0, None

    def _emit_chunk(self, utt, body, ts_min, ts_max, n, micro) -> None:
        seq, off, size = self._record(REC_CHUNK, CHUNK_HEAD.pack(utt, n, ts_min, ts_max) + body)
        self.index.append(IndexEntry(seq, off, size, utt, ts_min, ts_max, n, micro))
        self.totals["chunks"] += 1

    def close(self) -> dict:
        """Last chunk, index, footer, trailer. Returns the footer."""
        self._flush_chunk()
        idx = struct.pack("<I", len(self.index)) + b"".join(
            INDEX_ENTRY.pack(e.seq, e.offset, e.record_bytes, e.utterance, e.ts_min, e.ts_max, e.entries,
                             e.micro_frames) for e in self.index)
        _, index_off, _ = self._record(REC_INDEX, idx)
        footer = {**self.totals, "records": self.seq + 1, "index_offset": index_off}
        _, footer_off, _ = self._record(REC_FOOTER, json.dumps(footer, separators=(",", ":"), sort_keys=True).encode())
        self._write(TRAILER.pack(index_off, footer_off, END_MAGIC))
        self.footer = footer
        return footer


# ------------------------------------------------------------------ reader

class ArchiveReader:
    """Reads an archive from a binary file object (seekable for index() and seek reads).

    The preamble is checked on open. records() / chunks() read sequentially and check
    everything: framing, sequence, CRC-32C, authentication, the index against the chunks
    seen, the footer's totals and the trailer. An encrypted archive needs the passphrase
    for anything past the public header."""

    def __init__(self, f: BinaryIO, passphrase: bytes | None = None):
        self.f = f
        head = f.read(PREAMBLE.size)
        if len(head) < PREAMBLE.size or head[:8] != MAGIC:
            raise NotAnArchive("not a .psiarc archive (magic number missing)", "preamble")
        _, version, flags, publen = PREAMBLE.unpack(head)
        if version != FORMAT_VERSION:
            raise NotAnArchive(f"format version {version} is not one this psimem reads (reads {FORMAT_VERSION})",
                               "preamble")
        if flags & ~FLAG_ENCRYPTED:
            raise CorruptArchive(f"unknown flags 0x{flags:04x}", "preamble")
        if publen > MAX_PUBLIC_HEADER:
            raise CorruptArchive(f"public header length {publen} is over {MAX_PUBLIC_HEADER}", "preamble")
        pub = f.read(publen)
        crc = f.read(4)
        if len(pub) < publen or len(crc) < 4:
            raise TruncatedArchive("file ends inside the public header", "preamble")
        pre = head + pub
        if struct.unpack("<I", crc)[0] != _crc(pre):
            raise CorruptArchive("CRC-32C mismatch", "public header")
        try:
            self.public = json.loads(pub)
        except ValueError as e:
            raise CorruptArchive(f"not JSON ({e})", "public header") from None
        self.encrypted = bool(flags & FLAG_ENCRYPTED)
        if self.encrypted != (self.public.get("encryption") is not None):
            raise CorruptArchive("encryption flag and encryption field disagree", "public header")
        self.header_digest = hashlib.sha256(pre + crc).digest()
        self.data_start = PREAMBLE.size + publen + 4
        self._aead = None
        if self.encrypted and passphrase is not None:
            if not passphrase:
                raise PassphraseNeeded("passphrase: must not be empty")
            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
            self._aead = ChaCha20Poly1305(derive_key(passphrase, self.public["encryption"]["kdf"]))
        self._manifest = None
        self._index_offset_seen = None
        self.footer = None

    @property
    def can_read(self) -> bool:
        return not self.encrypted or self._aead is not None

    # -------- records
    def _read_record(self, expect_seq: int, offset: int) -> tuple[int, bytes, int]:
        """The record at `offset` (the file is positioned there): (type, plaintext, bytes)."""
        where = f"record {expect_seq} at byte {offset}"
        head = self.f.read(RECORD.size)
        if not head:
            raise TruncatedArchive("the file ends before the footer (truncated)", where)
        if len(head) < RECORD.size:
            raise TruncatedArchive("the file ends inside a record header (truncated)", where)
        rtype, rflags, _, seq, length = RECORD.unpack(head)
        if rtype not in REC_NAMES:
            raise CorruptArchive(f"unknown record type {rtype}", where)
        if length > MAX_RECORD:
            raise CorruptArchive(f"record length {length} is over the {MAX_RECORD >> 20} MiB limit", where)
        payload = self.f.read(length)
        crc = self.f.read(4)
        if len(payload) < length or len(crc) < 4:
            raise TruncatedArchive(f"the file ends inside {REC_NAMES[rtype]} record (truncated)", where)
        if struct.unpack("<I", crc)[0] != _crc(head, payload):
            raise CorruptArchive(f"CRC-32C mismatch in {REC_NAMES[rtype]} record", where)
        if seq != expect_seq:
            raise CorruptArchive(f"sequence number {seq} where {expect_seq} belongs: a record was dropped, "
                                 "duplicated or reordered", where)
        if rflags:
            raise CorruptArchive(f"unknown record flags 0x{rflags:02x}", where)
        if self.encrypted:
            if self._aead is None:
                raise PassphraseNeeded("archive is encrypted: a passphrase is needed to read past the public header")
            from cryptography.exceptions import InvalidTag
            if length < TAG_BYTES:
                raise CorruptArchive("sealed record shorter than its tag", where)
            try:
                # our own counter, not the stored seq, makes the nonce and the associated data
                plain = self._aead.decrypt(nonce(expect_seq), payload,
                                           self.header_digest + RECORD.pack(rtype, 0, 0, expect_seq, length))
            except InvalidTag:
                if expect_seq == 0:
                    raise AuthenticationFailed("wrong passphrase (the manifest does not authenticate under this "
                                               "key; or it was deliberately altered)") from None
                raise AuthenticationFailed(f"{REC_NAMES[rtype]} record failed authentication: altered, moved or "
                                           "taken from another archive", where) from None
        else:
            plain = payload
        return rtype, plain, RECORD.size + length + 4

    def manifest(self) -> dict:
        if self._manifest is None:
            self.f.seek(self.data_start)
            rtype, plain, _ = self._read_record(0, self.data_start)
            if rtype != REC_MANIFEST:
                raise CorruptArchive(f"first record is a {REC_NAMES[rtype]}, not the manifest", "record 0")
            try:
                m = json.loads(plain)
            except ValueError as e:
                raise CorruptArchive(f"not JSON ({e})", "manifest") from None
            check_manifest(m)
            self._manifest = m
        return self._manifest

    def where(self, utterance: int | None, ts: int | None = None, chunk_seq: int | None = None,
              offset: int | None = None) -> str:
        """A location as people read it: chunk, utterance (index and uttr_hash), time."""
        parts = []
        if chunk_seq is not None:
            parts.append(f"chunk {chunk_seq}" + (f" (byte {offset})" if offset is not None else ""))
        m = self._manifest
        if utterance is not None:
            if m is not None and 0 <= utterance < len(m["utterances"]):
                u = m["utterances"][utterance]
                parts.append(f"utterance {utterance} ({u['uttr_hash']})")
                if ts is not None:
                    parts.append(f"ts_epoch_ms {ts} ({iso_ms(ts)}, {(ts - u['started_at_ms']) / 1000:+.3f} s "
                                 "into the utterance)")
            else:
                parts.append(f"utterance {utterance}")
                if ts is not None:
                    parts.append(f"ts_epoch_ms {ts} ({iso_ms(ts)})")
        return ", ".join(parts)

    def records(self) -> Iterator[tuple[int, int, int, bytes, int]]:
        """(type, seq, offset, plaintext, bytes) of every record in order, then checks the
        trailer. Stops after the footer."""
        off = self.data_start
        self.f.seek(off)
        seq = 0
        while True:
            rtype, plain, size = self._read_record(seq, off)
            yield rtype, seq, off, plain, size
            if rtype == REC_FOOTER:
                tail = self.f.read(TRAILER.size + 1)
                if len(tail) < TRAILER.size:
                    raise TruncatedArchive("the file ends inside the trailer (truncated)", "trailer")
                if len(tail) > TRAILER.size:
                    raise CorruptArchive("bytes after the trailer", "trailer")
                ioff, foff, end = TRAILER.unpack(tail)
                if end != END_MAGIC:
                    raise CorruptArchive("end magic missing", "trailer")
                if foff != off or ioff != self._index_offset_seen:
                    raise CorruptArchive(f"points at index {ioff} and footer {foff}, found them at "
                                         f"{self._index_offset_seen} and {off}", "trailer")
                return
            if rtype == REC_INDEX:
                self._index_offset_seen = off
            off += size
            seq += 1

    def chunks(self, on_chunk_error=None) -> Iterator[Chunk]:
        """Every chunk in order, entries unpacked and checked for order, with the index,
        footer and trailer checked at the end. on_chunk_error(exc, index_entry) may be
        given to report a bad chunk and go on to the next one (verify); without it the
        first error is raised."""
        m = self.manifest()
        n_utt = len(m["utterances"])
        seen: list[IndexEntry] = []
        last_key: dict[int, tuple] = {}
        totals = {"chunks": 0, "frame_rows": {"0": 0, "1": 0, "2": 0}, "micro_frames": 0, "surprise_events": 0,
                  "centroids": 0, "blob_bytes": 0}
        footer = None
        self._index_offset_seen = None
        index = None
        damaged = False
        expected_index = None
        if on_chunk_error is not None:
            try:
                expected_index = {e.seq: e for e in self.index()}
            except ArchiveError:
                expected_index = None
        it = self.records()
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except ArchiveError as e:
                if on_chunk_error is None or expected_index is None or isinstance(e, PassphraseNeeded):
                    raise
                # damage in the record at the current position: name it from the index and skip to the next
                bad_seq = len(seen) + 1
                ie = expected_index.get(bad_seq)
                if ie is None:
                    raise
                on_chunk_error(e, ie)
                damaged = True
                seen.append(ie)
                it = self._records_from(bad_seq + 1, ie.offset + ie.record_bytes)
                continue
            rtype, seq, off, plain, size = rec
            if rtype == REC_MANIFEST:
                if seq != 0:
                    raise CorruptArchive("a second manifest", f"record {seq}")
                continue
            if seq == 0:
                raise CorruptArchive(f"record 0 is a {REC_NAMES[rtype]}, not the manifest", "record 0")
            if rtype == REC_CHUNK:
                if index is not None:
                    raise CorruptArchive("a chunk after the index", f"record {seq}")
                try:
                    ch = self._parse_chunk(seq, off, size, plain, n_utt, last_key)
                except ArchiveError as e:
                    if on_chunk_error is None or expected_index is None or seq not in expected_index:
                        raise
                    on_chunk_error(e, expected_index[seq])
                    damaged = True
                    seen.append(expected_index[seq])
                    continue
                seen.append(IndexEntry(seq, off, size, ch.utterance, ch.ts_min, ch.ts_max, len(ch.entries),
                                       ch.micro_frames))
                totals["chunks"] += 1
                for e in ch.entries:
                    if e.kind == KIND_FRAME:
                        totals["frame_rows"][str(e.band)] += 1
                        totals["blob_bytes"] += len(e.blob)
                    elif e.kind == KIND_SURPRISE:
                        totals["surprise_events"] += 1
                    else:
                        totals["centroids"] += 1
                totals["micro_frames"] += ch.micro_frames
                yield ch
            elif rtype == REC_INDEX:
                index = parse_index(plain)
                if [_ie_tuple(e) for e in index] != [_ie_tuple(e) for e in seen]:
                    raise CorruptArchive("does not describe the chunks in the file", f"index (record {seq})")
            elif rtype == REC_FOOTER:
                if index is None:
                    raise CorruptArchive("footer before the index", f"record {seq}")
                try:
                    footer = json.loads(plain)
                except ValueError as e:
                    raise CorruptArchive(f"not JSON ({e})", "footer") from None
                if not damaged:
                    for k, v in totals.items():
                        if footer.get(k) != v:
                            raise CorruptArchive(f"{k}: footer says {footer.get(k)}, the chunks hold {v}", "footer")
                if footer.get("records") != seq + 1:
                    raise CorruptArchive(f"records: footer says {footer.get('records')}, the file holds {seq + 1}",
                                         "footer")
        if footer is None:
            raise TruncatedArchive("no footer", "end of file")
        self.footer = footer

    def _records_from(self, seq: int, off: int):
        """records() resumed at a known record boundary (after a damaged chunk)."""
        self.f.seek(off)
        while True:
            rtype, plain, size = self._read_record(seq, off)
            yield rtype, seq, off, plain, size
            if rtype == REC_FOOTER:
                return
            if rtype == REC_INDEX:
                self._index_offset_seen = off
            off += size
            seq += 1

    def _parse_chunk(self, seq, off, size, plain, n_utt, last_key) -> Chunk:
        if len(plain) < CHUNK_HEAD.size:
            raise CorruptArchive("chunk shorter than its header", f"chunk {seq}")
        utt, n, ts_min, ts_max = CHUNK_HEAD.unpack_from(plain, 0)
        if utt >= n_utt:
            raise CorruptArchive(f"utterance index {utt} is not in the manifest ({n_utt} utterances)",
                                 f"chunk {seq} (byte {off})")
        if last_key and utt not in last_key and any(k > utt for k in last_key):
            raise CorruptArchive(f"utterance {utt} after utterance {max(last_key)}: utterances go in manifest order",
                                 f"chunk {seq} (byte {off})")
        if last_key and utt in last_key and utt != max(last_key):
            raise CorruptArchive(f"utterance {utt} resumes after another: an utterance's chunks are contiguous",
                                 f"chunk {seq} (byte {off})")
        where = self.where(utt, None, seq, off)
        entries = unpack_entries(plain[CHUNK_HEAD.size:], n, where)
        micro = 0
        prev = last_key.get(utt)
        lo = hi = None
        for e in entries:
            if prev is not None and e.key <= prev:
                raise CorruptArchive(f"entries out of order ({e.key} after {prev}): (ts_epoch_ms, kind, band) must "
                                     "increase within an utterance", self.where(utt, e.ts, seq, off))
            prev = e.key
            lo = e.ts if lo is None else min(lo, e.ts)
            hi = e.ts if hi is None else max(hi, e.ts)
            if e.kind == KIND_FRAME and e.band == 0:
                micro += e.frame_count
        last_key[utt] = prev
        if entries and (lo, hi) != (ts_min, ts_max):
            raise CorruptArchive(f"header says ts {ts_min}..{ts_max}, entries span {lo}..{hi}", where)
        return Chunk(seq, off, size, utt, ts_min, ts_max, entries, micro)

    def entries(self) -> Iterator[tuple[int, object]]:
        for ch in self.chunks():
            for e in ch.entries:
                yield ch.utterance, e

    # -------- random access
    def trailer(self) -> tuple[int, int]:
        self.f.seek(0, os.SEEK_END)
        end = self.f.tell()
        if end < self.data_start + TRAILER.size:
            raise TruncatedArchive("no trailer (truncated)", "end of file")
        self.f.seek(end - TRAILER.size)
        ioff, foff, magic = TRAILER.unpack(self.f.read(TRAILER.size))
        if magic != END_MAGIC:
            raise TruncatedArchive("no trailer: the file is truncated or still being written", "end of file")
        if not self.data_start <= ioff < foff < end:
            raise CorruptArchive(f"index offset {ioff} / footer offset {foff} are outside the file", "trailer")
        return ioff, foff

    def _record_at(self, off: int, rtype_want: int) -> tuple[int, bytes]:
        self.f.seek(off)
        head = self.f.read(RECORD.size)
        if len(head) < RECORD.size:
            raise TruncatedArchive("truncated", f"record at byte {off}")
        seq = RECORD.unpack(head)[3]
        self.f.seek(off)
        rtype, plain, _ = self._read_record(seq, off)
        if rtype != rtype_want:
            raise CorruptArchive(f"expected a {REC_NAMES[rtype_want]} record, found a {REC_NAMES.get(rtype)}",
                                 f"record at byte {off}")
        return seq, plain

    def index(self) -> list[IndexEntry]:
        """The chunk index, read through the trailer (without reading the chunks)."""
        ioff, _ = self.trailer()
        _, plain = self._record_at(ioff, REC_INDEX)
        return parse_index(plain)

    def footer_record(self) -> dict:
        _, foff = self.trailer()
        _, plain = self._record_at(foff, REC_FOOTER)
        try:
            return json.loads(plain)
        except ValueError as e:
            raise CorruptArchive(f"not JSON ({e})", "footer") from None

    def seek(self, utterance: int, t0: int | None = None, t1: int | None = None) -> Iterator[object]:
        """The entries of one utterance with ts in [t0, t1], reading only the chunks the
        index says can hold them."""
        m = self.manifest()
        for ie in self.index():
            if ie.utterance != utterance or (t1 is not None and ie.ts_min > t1) or (t0 is not None and ie.ts_max < t0 - 10000):
                continue
            self.f.seek(ie.offset)
            rtype, plain, size = self._read_record(ie.seq, ie.offset)
            if rtype != REC_CHUNK:
                raise CorruptArchive("index points at a record that is not a chunk", f"record {ie.seq}")
            ch = self._parse_chunk(ie.seq, ie.offset, size, plain, len(m["utterances"]), {})
            for e in ch.entries:
                # a micro run spans frame_count frames: keep runs that overlap [t0, t1]
                end = e.ts + (e.duration_ms * e.frame_count if e.kind == KIND_FRAME else 0)
                if (t0 is None or end > t0 or e.ts >= t0) and (t1 is None or e.ts <= t1):
                    yield e


def _ie_tuple(e: IndexEntry) -> tuple:
    return (e.seq, e.offset, e.record_bytes, e.utterance, e.ts_min, e.ts_max, e.entries, e.micro_frames)


def parse_index(plain: bytes) -> list[IndexEntry]:
    if len(plain) < 4:
        raise CorruptArchive("shorter than its count", "index")
    (n,) = struct.unpack_from("<I", plain, 0)
    if len(plain) != 4 + n * INDEX_ENTRY.size:
        raise CorruptArchive(f"{len(plain)} bytes cannot hold {n} entries", "index")
    return [IndexEntry(*INDEX_ENTRY.unpack_from(plain, 4 + i * INDEX_ENTRY.size)) for i in range(n)]


# ------------------------------------------------------------------ manifest checks

_UTT_FIELDS = {"uttr_hash": str, "user_id": str, "mode": str, "oscillator_count": int, "codec_version": int,
               "sample_rate": int, "frame_ms": int, "started_at_ms": int, "micro_frames": int, "duration_ms": int}


def check_manifest(m) -> None:
    """Refuses a malformed manifest, naming the field and the rule."""
    if not isinstance(m, dict) or not isinstance(m.get("utterances"), list):
        raise CorruptArchive("utterances: must be a list", "manifest")
    import uuid as _uuid
    for i, u in enumerate(m["utterances"]):
        where = f"manifest utterance {i}"
        if not isinstance(u, dict):
            raise CorruptArchive("must be an object", where)
        for k, t in _UTT_FIELDS.items():
            if not isinstance(u.get(k), t) or isinstance(u.get(k), bool):
                raise CorruptArchive(f"{k}: must be {t.__name__}", where)
        try:
            if len(bytes.fromhex(u["uttr_hash"])) != 16:
                raise ValueError
        except ValueError:
            raise CorruptArchive("uttr_hash: must be 32 hex digits (SipHash-2-4-128)", where) from None
        for k in ("user_id", "entry_id"):
            if k == "entry_id" and u.get(k) is None:
                continue
            try:
                _uuid.UUID(str(u.get(k)))
            except ValueError:
                raise CorruptArchive(f"{k}: must be a uuid", where) from None
        if u["oscillator_count"] not in (128, 256, 512):
            raise CorruptArchive("oscillator_count: must be 128, 256 or 512", where)
        if u["codec_version"] not in (0, 1):
            raise CorruptArchive("codec_version: must be 0 or 1", where)
        if u["mode"] not in ("analysis", "synthesis"):
            raise CorruptArchive("mode: must be analysis or synthesis", where)
        if not 4000 <= u["sample_rate"] <= 192000:
            raise CorruptArchive("sample_rate: must be between 4000 and 192000", where)
        if u["frame_ms"] <= 0 or u["micro_frames"] < 0:
            raise CorruptArchive("frame_ms must be > 0 and micro_frames >= 0", where)
        turn = u.get("turn")
        if turn is not None and not (isinstance(turn, dict) and isinstance(turn.get("content"), str)):
            raise CorruptArchive("turn: must be null or an object with content", where)


# ------------------------------------------------------------------ verify

@dataclass
class Problem:
    where: str
    what: str
    auth: bool = False           # a sealed record failed authentication (tampering), not plain damage

    def __str__(self):
        return f"{self.where}: {self.what}"


@dataclass
class VerifyReport:
    chunks: int = 0
    entries: int = 0
    frames_decoded: int = 0
    micro_frames: int = 0
    bytes_read: int = 0
    problems: list = field(default_factory=list)


def verify(reader: ArchiveReader, progress=None, max_problems: int = 50) -> VerifyReport:
    """Every record's framing, CRC-32C (and tag); every entry's order; every blob's CRC-32C
    against its integrity_crc and its decode (frame count, oscillator count, codec
    version); each utterance's micro frame count against the manifest; the index,
    footer and trailer. Damage is reported with the chunk, utterance and time."""
    rep = VerifyReport()
    m = reader.manifest()
    utts = m["utterances"]
    micro_seen = [0] * len(utts)

    def bad_chunk(exc, ie: IndexEntry):
        where = reader.where(ie.utterance, ie.ts_min, ie.seq, ie.offset)
        span = f" (the chunk holds ts {ie.ts_min}..{ie.ts_max})" if ie.ts_max != ie.ts_min else ""
        rep.problems.append(Problem(where, f"{exc}{span}", isinstance(exc, AuthenticationFailed)))
        micro_seen[ie.utterance] += ie.micro_frames     # counted as seen so the total check names only this chunk
        if progress:
            progress(ie.record_bytes)

    try:
        for ch in reader.chunks(on_chunk_error=bad_chunk):
            rep.chunks += 1
            rep.bytes_read += ch.record_bytes
            u = utts[ch.utterance]
            for e in ch.entries:
                rep.entries += 1
                if e.kind != KIND_FRAME:
                    if e.band not in (0, 1, 2):
                        rep.problems.append(Problem(reader.where(ch.utterance, e.ts, ch.seq, ch.offset),
                                                    f"band {e.band}: must be 0, 1 or 2"))
                    continue
                where = reader.where(ch.utterance, e.ts, ch.seq, ch.offset)
                what = check_frame(e, u)
                if what:
                    rep.problems.append(Problem(where, what))
                else:
                    rep.frames_decoded += e.frame_count
                if e.band == 0:
                    micro_seen[ch.utterance] += e.frame_count
                    rep.micro_frames += e.frame_count
                if len(rep.problems) >= max_problems:
                    return rep
            if progress:
                progress(ch.record_bytes)
    except ArchiveError as e:
        if isinstance(e, PassphraseNeeded) or (isinstance(e, AuthenticationFailed) and e.where is None):
            raise                  # the wrong passphrase: nothing can be checked
        rep.problems.append(Problem(e.where or "archive", str(e).removeprefix(f"{e.where}: ") if e.where else str(e),
                                    isinstance(e, AuthenticationFailed)))
        return rep
    for i, (u, n) in enumerate(zip(utts, micro_seen)):
        if n != u["micro_frames"]:
            rep.problems.append(Problem(reader.where(i), f"micro_frames: manifest says {u['micro_frames']}, "
                                                         f"the chunks hold {n}"))
    return rep


def check_frame(e: FrameEntry, u: dict) -> str | None:
    """What is wrong with one stored frame run (None when it is sound)."""
    if e.band not in (0, 1, 2):
        return f"band {e.band}: must be 0, 1 or 2"
    crc = cc.crc32c(e.blob)
    if crc != e.crc:
        return f"{BAND_NAMES[e.band]} blob: CRC-32C is {crc}, integrity_crc says {e.crc}"
    try:
        ph, amp, vec = cc.decode(e.blob)
        version, kind, n, frames = cc.blob_info(e.blob)
    except cc.CodecError as ex:
        return f"{BAND_NAMES[e.band]} blob does not decode: {ex}"
    if frames != e.frame_count:
        return f"frame_count: entry says {e.frame_count}, blob holds {frames}"
    if e.band == 0:
        if kind != cc.KIND_PHASE_AMP:
            return "micro blob holds vectors, not phases and amplitudes"
        if n != u["oscillator_count"]:
            return f"micro blob has {n} oscillators, the utterance {u['oscillator_count']}"
        if version != u["codec_version"]:
            return f"micro blob is codec v{version}, the utterance v{u['codec_version']}"
        if e.duration_ms != u["frame_ms"]:
            return f"duration_ms {e.duration_ms}: micro frames of this utterance are {u['frame_ms']} ms"
    elif kind != cc.KIND_VECTOR:
        return f"{BAND_NAMES[e.band]} blob holds phases and amplitudes, not a vector"
    return None
