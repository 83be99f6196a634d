"""ψ archives and PostgreSQL: export utterances to a .psiarc, import one back.

Export reads the selected utterances' rows through one server-side cursor in the
archive's order (utterance, then ts_epoch_ms, kind, band) and hands the stored blobs to
the writer byte for byte; each blob's CRC-32C is checked against its integrity_crc on
the way out, so a row damaged in the database never reaches an archive.

Import is one transaction: the archive is read and checked chunk by chunk while its
rows go by binary COPY into temporary staging tables; only once the footer has checked
out are they inserted into the psi tables, acting for each row's user in turn
(memory.act_for), with ON CONFLICT DO NOTHING on the natural keys ((uttr_hash, user_id) for
utterances, (uttr_hash, band, ts_epoch_ms, user_id) for frames, surprise events and
centroids: every key holds user_id, revision 0018, so no other user's row can conflict),
so importing twice adds nothing. A row whose key is taken by different content (another
oscillator count, another blob) refuses the whole import. Every psi_frames row passes
the table's CRC trigger as the realtime writer's rows do.

An utterance whose turn (entry_id) is absent from the target database is kept with
entry_id NULL, as retention leaves utterances whose turn it deleted, and the import
says which; the utterance's user must exist, and its rows go to that user only.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import numpy as np
import psycopg

from . import codec_core as cc
from .psiarc import (KIND_FRAME, KIND_SURPRISE, ArchiveReader, ArchiveWriter, CentroidEntry, CorruptArchive,
                     FrameEntry, SurpriseEntry, iso_ms)
from .writer import TABLES, _typed


class SelectionError(ValueError):
    """The export selection names nothing, or names it wrongly (argument named)."""


class ImportRefused(Exception):
    """The database refused the archive's rows; nothing was written."""


def parse_time(arg: str, value: str | None) -> int | None:
    """An ISO 8601 date or timestamp (UTC when it names no zone) as epoch ms."""
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SelectionError(f"{arg}: {value!r} is not an ISO 8601 date or timestamp (e.g. 2024-05-01 or "
                             "2024-05-01T12:00:00+02:00)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp() * 1000)


def _user_id(conn, ref: str):
    row = conn.execute("SELECT user_id FROM memory.users WHERE user_id::text = %s OR external_ref = %s",
                       (ref, ref)).fetchone()
    if row is None:
        raise SelectionError(f"--user: no user {ref!r} (give a user id or external reference)")
    return row[0]


def _session_id(conn, ref: str):
    row = conn.execute("SELECT session_id FROM memory.sessions WHERE session_id::text = %s OR external_ref = %s",
                       (ref, ref)).fetchone()
    if row is None:
        raise SelectionError(f"--session: no session {ref!r} (give a session id or external reference)")
    return row[0]


def select_utterances(conn, utterances=(), session: str | None = None, user: str | None = None,
                      since: str | None = None, until: str | None = None) -> list[bytes]:
    """uttr_hashes of the selection, oldest first: named utterances (hash, prefix or
    entry_id), a session's, a user's; --since / --until bound started_at_ms."""
    from .replay import resolve

    if not utterances and session is None and user is None:
        raise SelectionError("selection: give --utterance, --session or --user")
    t0, t1 = parse_time("--since", since), parse_time("--until", until)
    if t0 is not None and t1 is not None and t1 <= t0:
        raise SelectionError("--until: must be later than --since")
    hashes: list[bytes] = []
    for ref in utterances:
        try:
            hashes.append(resolve(conn, ref))
        except LookupError as e:
            raise SelectionError(str(e).replace("UTTERANCE", "--utterance", 1)) from None
    where, params = [], []
    if session is not None:
        where.append("d.session_id = %s")
        params.append(_session_id(conn, session))
    if user is not None:
        where.append("u.user_id = %s")
        params.append(_user_id(conn, user))
    if hashes:
        where.append("u.uttr_hash = ANY(%s)")
        params.append(hashes)
    if t0 is not None:
        where.append("u.started_at_ms >= %s")
        params.append(t0)
    if t1 is not None:
        where.append("u.started_at_ms < %s")
        params.append(t1)
    rows = conn.execute("SELECT u.uttr_hash FROM psi.utterances u LEFT JOIN memory.day_table d USING (entry_id) "
                        f"WHERE {' AND '.join(where)} ORDER BY u.started_at_ms, u.uttr_hash", params).fetchall()
    if not rows:
        raise SelectionError("selection: no recorded utterance matches")
    return [bytes(r[0]) for r in rows]


def build_manifest(conn, hashes: list[bytes], selection: dict | None = None) -> dict:
    """The archive manifest: each utterance with its turn, user and frame totals."""
    rows = conn.execute("""
        SELECT u.uttr_hash, u.user_id::text, u.entry_id::text, u.mode, u.oscillator_count, u.codec_version,
               u.sample_rate, u.frame_ms, u.started_at_ms, u.created_at,
               d.session_id::text, d.role, d.content, d.created_at, d.turn_number,
               coalesce((SELECT sum(frame_count) FROM psi.psi_frames f
                         WHERE f.uttr_hash = u.uttr_hash AND f.band = 0), 0)::bigint
        FROM unnest(%s::bytea[]) WITH ORDINALITY AS sel(h, i)
        JOIN psi.utterances u ON u.uttr_hash = sel.h
        LEFT JOIN memory.day_table d ON d.entry_id = u.entry_id
        ORDER BY sel.i""", (hashes,)).fetchall()
    utts, users = [], {}
    for (h, user, entry, mode, n, codec, rate, frame_ms, start, created, session, role, content, turn_at,
         turn_no, micro) in rows:
        utts.append({"uttr_hash": bytes(h).hex(), "user_id": user, "entry_id": entry, "mode": mode,
                     "oscillator_count": n, "codec_version": codec, "sample_rate": rate, "frame_ms": frame_ms,
                     "started_at_ms": start, "created_at": created.isoformat(),
                     "micro_frames": int(micro), "duration_ms": int(micro) * frame_ms,
                     "turn": None if content is None else {"session_id": session, "role": role, "content": content,
                                                          "created_at": turn_at.isoformat(),
                                                          "turn_number": turn_no}})
        users[user] = None
    for uid, ref, tier in conn.execute("SELECT user_id::text, external_ref, tier FROM memory.users "
                                       "WHERE user_id = ANY(%s::uuid[])", (list(users),)):
        users[uid] = {"user_id": uid, "external_ref": ref, "tier": tier}
    return {"exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "selection": selection or {}, "users": [v for v in users.values() if v], "utterances": utts}


_ROWS_SQL = """
SELECT sel.i, x.kind, x.band, x.ts_epoch_ms, x.duration_ms, x.frame_count, x.psi_blob, x.emo_vec, x.integrity_crc,
       x.epsilon, x.threshold, x.centroid, x.weight
FROM unnest(%s::bytea[]) WITH ORDINALITY AS sel(h, i)
CROSS JOIN LATERAL (
    SELECT 0 AS kind, f.band, f.ts_epoch_ms, f.duration_ms, f.frame_count, f.psi_blob, f.emo_vec, f.integrity_crc,
           NULL::real AS epsilon, NULL::real AS threshold, NULL::real[] AS centroid, NULL::real AS weight
    FROM psi.psi_frames f WHERE f.uttr_hash = sel.h
    UNION ALL
    SELECT 1, s.band, s.ts_epoch_ms, NULL, NULL, NULL, NULL, NULL, s.epsilon, s.threshold, NULL, NULL
    FROM psi.surprise_events s WHERE s.uttr_hash = sel.h
    UNION ALL
    SELECT 2, c.band, c.ts_epoch_ms, NULL, NULL, NULL, NULL, NULL, NULL, NULL, c.centroid, c.weight
    FROM psi.band_centroids c WHERE c.uttr_hash = sel.h
) x
ORDER BY sel.i, x.ts_epoch_ms, x.kind, x.band
"""


def _by_user(conn, hashes: list[bytes]) -> list[tuple[str, list[bytes]]]:
    """The selection grouped by user, each group in selection order (users in order of
    their first utterance): rows are read acting for their user."""
    owner = {bytes(h): str(u) for h, u in conn.execute(
        "SELECT uttr_hash, user_id FROM psi.utterances WHERE uttr_hash = ANY(%s)", (hashes,)).fetchall()}
    missing = [h.hex() for h in hashes if h not in owner]
    if missing:
        raise SelectionError(f"selection: utterance {missing[0]} is not recorded (or not visible to this login)")
    groups: dict[str, list[bytes]] = {}
    for h in dict.fromkeys(hashes):
        groups.setdefault(owner[h], []).append(h)
    return list(groups.items())


def export(conn, hashes: list[bytes], f, passphrase: bytes | None = None, chunk_bytes: int | None = None,
           selection: dict | None = None, progress=None) -> dict:
    """Write the utterances' rows to the binary file object f as a .psiarc. progress(n)
    is called with the blob bytes written. Returns the footer, manifest and public header."""
    groups = _by_user(conn, hashes)
    manifest = None
    for uid, hs in groups:
        conn.execute("SELECT memory.act_for(%s)", (uid,))
        part = build_manifest(conn, hs, selection)
        if manifest is None:
            manifest = part
        else:
            manifest["utterances"] += part["utterances"]
            manifest["users"] += part["users"]
    kw = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    w = ArchiveWriter(f, manifest, passphrase, **kw)
    utts = manifest["utterances"]
    base = 0
    for uid, hs in groups:
        conn.execute("SELECT memory.act_for(%s)", (uid,))
        current = None
        with conn.cursor(name="psiarc_export", binary=True) as cur:
            cur.itersize = 128            # rows in flight: up to ~4 MB of 512-oscillator runs
            cur.execute(_ROWS_SQL, (hs,))
            for i, kind, band, ts, dur, count, blob, emo, crc, eps, thr, cen, weight in cur:
                i = base + i - 1
                if i != current:
                    w.begin_utterance(i)
                    current = i
                if kind == KIND_FRAME:
                    blob = bytes(blob)
                    if cc.crc32c(blob) != crc:
                        raise ImportRefused(f"psi_frames: the stored row of utterance {utts[i]['uttr_hash']} band "
                                            f"{band} at ts_epoch_ms {ts} ({iso_ms(ts)}) is corrupt in the database "
                                            f"(CRC-32C {cc.crc32c(blob)}, integrity_crc {crc}); see psi.verify")
                    w.add(FrameEntry(band, ts, dur, count, blob, crc, None if emo is None else tuple(emo)))
                    if progress:
                        progress(len(blob))
                elif kind == KIND_SURPRISE:
                    w.add(SurpriseEntry(band, ts, eps, thr))
                else:
                    w.add(CentroidEntry(band, ts, np.asarray(cen, dtype=np.float32), weight))
        base += len(hs)
    footer = w.close()
    return {"footer": footer, "manifest": manifest, "public": w.public}


# ------------------------------------------------------------------ import

@dataclass
class ImportReport:
    utterances_new: int = 0
    utterances_present: int = 0
    rows_new: dict = field(default_factory=lambda: {"psi_frames": 0, "surprise_events": 0, "band_centroids": 0})
    rows_present: dict = field(default_factory=lambda: {"psi_frames": 0, "surprise_events": 0, "band_centroids": 0})
    turn_absent: list = field(default_factory=list)          # uttr_hashes kept with entry_id NULL
    bytes_read: int = 0

    @property
    def nothing_new(self) -> bool:
        return self.utterances_new == 0 and not any(self.rows_new.values())


def _stage(cur, table: str, rows: list) -> None:
    cols, types, _ = TABLES[table]
    with cur.copy(f"COPY _psiarc_{table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(list(types))
        for r in rows:
            cp.write_row(_typed(r, types))


def import_archive(conn, reader: ArchiveReader, progress=None) -> ImportReport:
    """Import an opened archive in one transaction (see the module docstring). Raises
    ArchiveError (damage: nothing written) or ImportRefused (the database's refusal)."""
    rep = ImportReport()
    m = reader.manifest()
    utts = m["utterances"]
    users = sorted({u["user_id"] for u in utts})
    known_refs = {u["user_id"]: u.get("external_ref") for u in m.get("users", []) if isinstance(u, dict)}
    for i, u in enumerate(utts):
        # a plain archive has only CRCs: its manifest must at least agree with itself
        if u.get("entry_id") and u.get("turn") is not None:
            want = cc.utterance_hash(uuid.UUID(u["entry_id"]).bytes, u["turn"]["content"]).hex()
            if want != u["uttr_hash"]:
                raise CorruptArchive(f"uttr_hash {u['uttr_hash']} is not SipHash-2-4-128 of its turn's text "
                                     f"(expected {want})", f"manifest utterance {i}")
    try:
        with conn.transaction():
            with conn.cursor() as cur:
                for t, (cols, _, _) in TABLES.items():
                    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS _psiarc_{t} ON COMMIT DROP AS "
                                f"SELECT {', '.join(cols)} FROM psi.{t} WITH NO DATA")
                    cur.execute(f"TRUNCATE _psiarc_{t}")
                # the users must exist; entry_ids absent here become NULL
                present_entries = set()
                for uid in users:
                    cur.execute("SELECT memory.act_for(%s)", (uid,))
                    if cur.execute("SELECT 1 FROM memory.users WHERE user_id = %s", (uid,)).fetchone() is None:
                        ref = known_refs.get(uid)
                        raise ImportRefused(f"user_id: user {uid}" + (f" ({ref!r})" if ref else "") +
                                            " does not exist in this database; an archive's rows go only to the "
                                            "user they belong to (create the user first)")
                    entries = [u["entry_id"] for u in utts if u["user_id"] == uid and u.get("entry_id")]
                    if entries:
                        present_entries |= {str(r[0]) for r in cur.execute(
                            "SELECT entry_id FROM memory.day_table WHERE entry_id = ANY(%s::uuid[])",
                            (entries,)).fetchall()}
                urows = []
                for u in utts:
                    entry = u.get("entry_id")
                    if entry and entry not in present_entries:
                        rep.turn_absent.append(u["uttr_hash"])
                        entry = None
                    urows.append((bytes.fromhex(u["uttr_hash"]), u["user_id"], entry, u["mode"],
                                  u["oscillator_count"], u["codec_version"], u["sample_rate"], u["frame_ms"],
                                  u["started_at_ms"]))
                _stage(cur, "utterances", urows)
                # frames, surprise events, centroids: staged chunk by chunk as the archive is checked
                for ch in reader.chunks():
                    u = utts[ch.utterance]
                    h, uid = bytes.fromhex(u["uttr_hash"]), u["user_id"]
                    frames, surprises, cents = [], [], []
                    for e in ch.entries:
                        if e.kind == KIND_FRAME:
                            if cc.crc32c(e.blob) != e.crc:
                                raise CorruptArchive("blob CRC-32C mismatch", reader.where(ch.utterance, e.ts, ch.seq))
                            frames.append((h, uid, e.ts, e.band, e.duration_ms, e.frame_count, e.blob,
                                           None if e.emo_vec is None else [float(x) for x in e.emo_vec], e.crc))
                        elif e.kind == KIND_SURPRISE:
                            surprises.append((h, uid, e.band, e.ts, float(e.epsilon), float(e.threshold)))
                        else:
                            cents.append((h, uid, e.band, e.ts, [float(x) for x in e.centroid], float(e.weight)))
                    for t, rows in (("psi_frames", frames), ("surprise_events", surprises),
                                    ("band_centroids", cents)):
                        if rows:
                            _stage(cur, t, rows)
                    rep.bytes_read += ch.record_bytes
                    if progress:
                        progress(ch.record_bytes)
                # the archive checked out: write, acting for each user in turn (row-level security
                # shows each user's stored rows only while acting for that user)
                for uid in users:
                    cur.execute("SELECT memory.act_for(%s)", (uid,))
                    _check_conflicts(cur, uid)
                    for t in ("utterances", "psi_frames", "surprise_events", "band_centroids"):
                        cols, _, key = TABLES[t]
                        collist = ", ".join(cols)
                        cur.execute(f"INSERT INTO psi.{t} ({collist}) SELECT {collist} FROM _psiarc_{t} "
                                    f"WHERE user_id = %s ON CONFLICT {key} DO NOTHING", (uid,))
                        n = cur.rowcount
                        total = cur.execute(f"SELECT count(*) FROM _psiarc_{t} WHERE user_id = %s",
                                            (uid,)).fetchone()[0]
                        if t == "utterances":
                            rep.utterances_new += n
                            rep.utterances_present += total - n
                        else:
                            rep.rows_new[t] += n
                            rep.rows_present[t] += total - n
    except psycopg.Error as e:
        diag = e.diag.message_primary or str(e)
        raise ImportRefused(f"the database refused the archive ({type(e).__name__}): {diag}") from None
    return rep


def _check_conflicts(cur, user_id: str) -> None:
    """Rows whose natural key is already taken must hold the same content, or the import
    would silently keep the old one (e.g. an utterance migrated to another oscillator count)."""
    row = cur.execute("""
        SELECT encode(s.uttr_hash, 'hex'), u.oscillator_count, s.oscillator_count, u.codec_version, s.codec_version,
               u.started_at_ms, s.started_at_ms
        FROM _psiarc_utterances s JOIN psi.utterances u USING (uttr_hash, user_id)
        WHERE s.user_id = %s
          AND (u.oscillator_count, u.codec_version, u.sample_rate, u.started_at_ms)
              IS DISTINCT FROM (s.oscillator_count, s.codec_version, s.sample_rate, s.started_at_ms)
        LIMIT 1""", (user_id,)).fetchone()
    if row:
        h, n_db, n_arc, c_db, c_arc, t_db, t_arc = row
        raise ImportRefused(f"uttr_hash {h}: this database holds the utterance with {n_db} oscillators, codec v{c_db}, "
                            f"started at {t_db}; the archive with {n_arc}, v{c_arc}, {t_arc}: delete it first to "
                            "replace it (import never overwrites)")
    row = cur.execute("""
        SELECT encode(s.uttr_hash, 'hex'), s.band, s.ts_epoch_ms, f.integrity_crc, s.integrity_crc
        FROM _psiarc_psi_frames s JOIN psi.psi_frames f USING (uttr_hash, band, ts_epoch_ms, user_id)
        WHERE s.user_id = %s AND (f.integrity_crc <> s.integrity_crc OR f.frame_count <> s.frame_count)
        LIMIT 1""", (user_id,)).fetchone()
    if row:
        h, band, ts, c_db, c_arc = row
        raise ImportRefused(f"psi_frames ({h}, band {band}, ts_epoch_ms {ts}): this database holds another blob "
                            f"(CRC-32C {c_db}, the archive's {c_arc}); import never overwrites")
