"""The realtime writer: micro frames buffered in RAM and written with binary COPY per
utterance (or after 2 s idle); meso/macro frames, surprise events and centroids written
on event; everything spooled to a local file while the database is unreachable and
written on reconnect, without duplicates.

Rows go through per-connection temporary staging tables (binary COPY) and then
`INSERT ... SELECT ... ON CONFLICT DO NOTHING` on each table's natural key, in one
transaction per flush, so a batch that was committed just before the connection broke
(and so was also spooled) is not written twice, and a refused row leaves nothing of its
batch written.

Two things keep the caller's 20 ms tick loop smooth:
* encoding is queued: a closed run of micro frames waits in a FIFO and tick(deadline)
  encodes queued runs until the deadline (at least one per tick), so the runs that all
  streams close on the same tick are spread over the following ticks; an utterance's rows
  are written once all its runs are encoded, and flush() / close() encode whatever is
  still queued first;
* the database write runs on a writer thread fed by a queue of batches (the batches
  waiting when it wakes are written as one transaction, so a refused row loses them all,
  as a refused row lost its own flush before), so a COPY, a reconnect or spooling never
  stalls a tick. flush() and close() wait for it; an error it meets (a refused row) is
  raised in the caller at the next tick, flush or close.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

from . import codec_core as cc

# table -> (columns, COPY types, natural key); bytea columns are spooled as base64
TABLES = {
    "utterances": (("uttr_hash", "user_id", "entry_id", "mode", "oscillator_count", "codec_version",
                    "sample_rate", "frame_ms", "started_at_ms"),
                   ("bytea", "uuid", "uuid", "text", "int2", "int2", "int4", "int2", "int8"),
                   "(uttr_hash, user_id)"),
    "psi_frames": (("uttr_hash", "user_id", "ts_epoch_ms", "band", "duration_ms", "frame_count", "psi_blob",
                    "emo_vec", "integrity_crc"),
                   ("bytea", "uuid", "int8", "int2", "int2", "int2", "bytea", "float4[]", "int8"),
                   "(uttr_hash, band, ts_epoch_ms, user_id)"),
    "surprise_events": (("uttr_hash", "user_id", "band", "ts_epoch_ms", "epsilon", "threshold"),
                        ("bytea", "uuid", "int2", "int8", "float4", "float4"),
                        "(uttr_hash, band, ts_epoch_ms, user_id)"),
    "band_centroids": (("uttr_hash", "user_id", "band", "ts_epoch_ms", "centroid", "weight"),
                       ("bytea", "uuid", "int2", "int8", "float4[]", "float4"),
                       "(uttr_hash, band, ts_epoch_ms, user_id)"),
}
ORDER = ("utterances", "psi_frames", "surprise_events", "band_centroids")
DURATION_MS = {0: 20, 1: 250, 2: 2000}


@dataclass
class Utterance:
    uttr_hash: bytes
    user_id: str
    entry_id: str
    mode: str
    oscillators: int
    codec_version: int
    sample_rate: int
    started_at_ms: int

    def row(self) -> tuple:
        return (self.uttr_hash, self.user_id, self.entry_id, self.mode, self.oscillators, self.codec_version,
                self.sample_rate, 20, self.started_at_ms)


@dataclass(eq=False)
class _Run:
    """A closed run of micro frames: raw until encoded, then its psi_frames row."""
    utt: Utterance
    run_start: int
    phases: list | None
    amps: list | None
    row: tuple | None = None


@dataclass(eq=False)
class _Micro:
    utt: Utterance
    run_start: int | None = None
    phases: list = field(default_factory=list)
    amps: list = field(default_factory=list)
    runs: list = field(default_factory=list)      # closed runs held in RAM until the utterance flushes
    held_frames: int = 0
    last_ms: float = 0.0


class PsiWriter:
    def __init__(self, url: str, spool_path: str | Path, frames_per_row: int = 50, codec_version: int = 1,
                 flush_idle_s: float = 2.0, reconnect_every_s: float = 1.0, clock=time.monotonic, say=None,
                 max_held_frames: int = 500):
        if not 1 <= frames_per_row <= 500:
            raise ValueError(f"frames_per_row: must be between 1 and 500, got {frames_per_row}")
        # a long utterance is written every max_held_frames (10 s) as well as at its end,
        # so the writer's memory does not grow with an utterance's length
        self.max_held_frames = max_held_frames
        self.url = url
        self.spool_path = Path(spool_path)
        self.frames_per_row = frames_per_row
        self.codec_version = codec_version
        self.flush_idle_s = flush_idle_s
        self.reconnect_every_s = reconnect_every_s
        self.clock = clock
        self.say = say or (lambda m: None)
        self.conn: psycopg.Connection | None = None
        self._last_attempt = -1e9
        self._pending: dict[str, list] = {t: [] for t in ORDER}
        self._micro: dict[bytes, _Micro] = {}
        self._encq: deque[_Run] = deque()          # closed runs waiting to be encoded, oldest first
        self._held: list[list[_Run]] = []          # released runs waiting for their encodes
        self._bypass_rls = False
        self._q: queue.Queue = queue.Queue()       # batches for the writer thread; None stops it
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.stats = {"rows": 0, "frames": 0, "flushes": 0, "spooled_rows": 0, "replayed_rows": 0,
                      "blob_bytes": 0, "copy_seconds": 0.0, "encode_seconds": 0.0, "encode_queue_max": 0,
                      "write_queue_max": 0}

    # ------------------------------------------------------------ connection
    def _connect(self) -> bool:
        if self.conn is not None and not self.conn.closed:
            return True
        now = self.clock()
        if now - self._last_attempt < self.reconnect_every_s:
            return False
        self._last_attempt = now
        try:
            self.conn = psycopg.connect(self.url, connect_timeout=2)
        except psycopg.OperationalError as e:
            self.say(f"database unreachable, spooling to {self.spool_path} ({str(e).strip().splitlines()[0]})")
            self.conn = None
            return False
        with self.conn.cursor() as cur:
            for t, (cols, _, _) in TABLES.items():
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS _psi_stage_{t} ON COMMIT DELETE ROWS AS "
                            f"SELECT {', '.join(cols)} FROM psi.{t} WITH NO DATA")
            cur.execute("SELECT rolsuper OR rolbypassrls OR pg_has_role(current_user, 'psimem_admin', 'member') "
                        "OR pg_has_role(current_user, (SELECT tableowner FROM pg_tables WHERE schemaname = 'psi' "
                        "AND tablename = 'psi_frames'), 'member') FROM pg_roles WHERE rolname = current_user")
            self._bypass_rls = bool(cur.fetchone()[0])
        self.conn.commit()
        return True

    def _drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        self.conn = None
        self._last_attempt = self.clock()

    # ------------------------------------------------------------ input
    def begin(self, utt: Utterance) -> None:
        """A new utterance: its row is written with the next flush (before its frames)."""
        self._pending["utterances"].append(utt.row())
        self._micro[utt.uttr_hash] = _Micro(utt, last_ms=self.clock())

    def micro(self, uttr_hash: bytes, ts_epoch_ms: int, phases: np.ndarray, amps: np.ndarray) -> None:
        m = self._micro[uttr_hash]
        if m.run_start is None:
            m.run_start = ts_epoch_ms
        m.phases.append(np.asarray(phases, dtype=np.float32))
        m.amps.append(np.asarray(amps, dtype=np.float32))
        m.last_ms = self.clock()
        if len(m.phases) >= self.frames_per_row:
            self._close_run(m)

    def micro_rows(self, utts: list[Utterance], offset_ms: int, phases: np.ndarray, amps: np.ndarray) -> None:
        """One tick's micro frames of several utterances at once (row k of the S x N arrays
        is utts[k]'s frame, offset_ms after its start): micro() without its per-frame
        conversions. Rows are kept as views of the tick's arrays until their run closes."""
        phases = np.asarray(phases, dtype=np.float32)
        amps = np.asarray(amps, dtype=np.float32)
        now = self.clock()
        for k, u in enumerate(utts):
            m = self._micro[u.uttr_hash]
            if m.run_start is None:
                m.run_start = u.started_at_ms + offset_ms
            m.phases.append(phases[k])
            m.amps.append(amps[k])
            m.last_ms = now
            if len(m.phases) >= self.frames_per_row:
                self._close_run(m)

    def _close_run(self, m: _Micro) -> None:
        if not m.phases:
            return
        run = _Run(m.utt, m.run_start, m.phases, m.amps)
        m.runs.append(run)
        m.held_frames += len(m.phases)
        self._encq.append(run)
        self.stats["encode_queue_max"] = max(self.stats["encode_queue_max"], len(self._encq))
        m.phases, m.amps, m.run_start = [], [], None
        if m.held_frames >= self.max_held_frames:
            self._held.append(m.runs)
            m.runs, m.held_frames = [], 0

    def _encode(self, run: _Run) -> None:
        t0 = time.perf_counter()
        blob = cc.encode(np.stack(run.phases), np.stack(run.amps), self.codec_version, reconstruct=False)[0]
        run.row = (run.utt.uttr_hash, run.utt.user_id, run.run_start, 0, 20, len(run.phases),
                   blob, None, cc.crc32c(blob))
        self.stats["frames"] += len(run.phases)
        self.stats["blob_bytes"] += len(blob)
        run.phases = run.amps = None
        self.stats["encode_seconds"] += time.perf_counter() - t0

    def encode_queued(self, deadline: float | None = None) -> int:
        """Encode queued runs, oldest first: all of them, or (deadline, a time.perf_counter()
        value) until the deadline has passed, but at least one. Returns how many."""
        n = 0
        while self._encq and (deadline is None or n == 0 or time.perf_counter() < deadline):
            self._encode(self._encq.popleft())
            n += 1
        return n

    def band_frame(self, uttr_hash: bytes, user_id: str, band: int, ts_epoch_ms: int, vector, emo_vec=None) -> None:
        """A meso (1) or macro (2) frame: appended on event."""
        blob, _ = cc.encode_vector(vector)
        self._pending["psi_frames"].append((uttr_hash, user_id, ts_epoch_ms, band, DURATION_MS[band], 1, blob,
                                            None if emo_vec is None else [float(x) for x in emo_vec],
                                            cc.crc32c(blob)))

    def surprise(self, uttr_hash: bytes, user_id: str, ts_epoch_ms: int, epsilon: float, threshold: float) -> None:
        self._pending["surprise_events"].append((uttr_hash, user_id, 0, ts_epoch_ms, float(epsilon), float(threshold)))

    def centroid(self, uttr_hash: bytes, user_id: str, band: int, ts_epoch_ms: int, vector) -> None:
        self._pending["band_centroids"].append((uttr_hash, user_id, band, ts_epoch_ms,
                                                [float(x) for x in vector], 1.0))

    def end(self, uttr_hash: bytes, flush: bool = True) -> None:
        """The utterance is over: its last partial run is closed and its frames written
        (now, or with flush=False by a later tick once its runs are encoded, together with
        other streams' ends)."""
        m = self._micro.pop(uttr_hash, None)
        if m is not None:
            self._release(m)
        if flush:
            self.flush()

    def _release(self, m: _Micro) -> None:
        self._close_run(m)
        if m.runs:
            self._held.append(m.runs)
            m.runs, m.held_frames = [], 0

    def _settle(self) -> None:
        """Released runs whose encodes are all done become pending psi_frames rows."""
        waiting = []
        for runs in self._held:
            if all(r.row is not None for r in runs):
                self._pending["psi_frames"].extend(r.row for r in runs)
            else:
                waiting.append(runs)
        self._held = waiting

    def tick(self, deadline: float | None = None) -> None:
        """Call every micro frame: encodes queued runs (until `deadline`, a time.perf_counter()
        value, but at least one; all of them without a deadline), releases utterances idle
        for flush_idle_s, and hands pending rows (ended utterances whose runs are encoded,
        meso/macro frames, surprise events, centroids: written on event) to the writer thread."""
        self._check_error()
        self.encode_queued(deadline)
        now = self.clock()
        for m in self._micro.values():
            if (m.phases or m.runs) and now - m.last_ms >= self.flush_idle_s:
                self._release(m)
        self._settle()
        if any(self._pending.values()):
            self._submit()

    def flush(self) -> None:
        """Write everything released so far, encoding what is still queued, and wait until it
        is written (or spooled). With nothing to write, replays a spool left behind."""
        self.encode_queued()
        self._settle()
        self._submit()
        self.wait()

    def close(self) -> None:
        """Flush everything (SIGTERM path): open utterances' partial runs too; stop the writer
        thread. The writer stays usable (a later write starts the thread again)."""
        for h in list(self._micro):
            self._release(self._micro.pop(h))
        try:
            self.flush()
        finally:
            if self._thread is not None:
                self._q.put(None)
                self._thread.join()
                self._thread = None
            if self.conn is not None:
                self.conn.close()
                self.conn = None

    # ------------------------------------------------------------ the writer thread
    def _submit(self) -> None:
        batch, self._pending = self._pending, {t: [] for t in ORDER}
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="psi-writer", daemon=True)
            self._thread.start()
        self._q.put(batch)
        self.stats["write_queue_max"] = max(self.stats["write_queue_max"], self._q.qsize())

    def wait(self) -> None:
        """Until the writer thread has written (or spooled) every batch handed to it."""
        if self._thread is not None:
            self._q.join()
        self._check_error()

    def _check_error(self) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self._q.get()]
            while True:                    # batches that queued up meanwhile go in one transaction
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            batches = [b for b in items if b is not None]
            stop = len(batches) < len(items)
            try:
                if batches:
                    merged = {t: [r for b in batches for r in b[t]] for t in ORDER}
                    self._flush_batch(merged)
            except BaseException as e:      # raised in the caller's thread (tick / flush / close)
                self._error = e
            finally:
                for _ in items:
                    self._q.task_done()

    # ------------------------------------------------------------ output
    def _flush_batch(self, batch: dict[str, list]) -> None:
        """Write one batch (on the writer thread): spool it if the database is unreachable,
        after writing an earlier spool first if there is one."""
        if not any(batch.values()):
            if self.spool_path.exists() and self._connect():
                self._replay_spool()
            return
        if not self._connect():
            self._spool(batch)
            return
        if self.spool_path.exists() and self.spool_path.stat().st_size:
            if not self._replay_spool():
                self._spool(batch)
                return
        try:
            self._write(batch)
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            self.say(f"write failed ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}); "
                     f"spooling {sum(map(len, batch.values()))} rows")
            self._drop_connection()
            self._spool(batch)

    def _write(self, batch: dict[str, list]) -> None:
        t0 = time.perf_counter()
        conn = self.conn
        with conn.transaction():
            with conn.cursor() as cur:
                users = sorted({r[1] for rows in batch.values() for r in rows}, key=str)
                for t in ORDER:
                    rows = batch.get(t) or []
                    if not rows:
                        continue
                    cols, types, key = TABLES[t]
                    with cur.copy(f"COPY _psi_stage_{t} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as cp:
                        cp.set_types(list(types))
                        for r in rows:
                            cp.write_row(_typed(r, types))
                    collist = ", ".join(cols)
                    if self._bypass_rls:
                        cur.execute(f"INSERT INTO psi.{t} ({collist}) SELECT {collist} FROM _psi_stage_{t} "
                                    f"ON CONFLICT {key} DO NOTHING")
                    else:  # row-level security: act for each user in turn, in the same transaction
                        for u in users:
                            cur.execute("SELECT memory.act_for(%s)", (str(u),))
                            cur.execute(f"INSERT INTO psi.{t} ({collist}) SELECT {collist} FROM _psi_stage_{t} "
                                        f"WHERE user_id = %s ON CONFLICT {key} DO NOTHING", (str(u),))
                    self.stats["rows"] += len(rows)
        self.stats["flushes"] += 1
        self.stats["copy_seconds"] += time.perf_counter() - t0

    # ------------------------------------------------------------ spool
    def _spool(self, batch: dict[str, list]) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({t: [_jsonable(r) for r in rows] for t, rows in batch.items() if rows}) + "\n"
        with open(self.spool_path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.stats["spooled_rows"] += sum(map(len, batch.values()))

    def _replay_spool(self) -> bool:
        """Write every spooled batch in one transaction, then empty the spool. A torn last
        line (a crash mid-append) is skipped: its rows were never acknowledged."""
        merged: dict[str, list] = {t: [] for t in ORDER}
        with open(self.spool_path) as f:
            for line in f:
                for t, rows in _loads_or_empty(line).items():
                    merged[t].extend(_from_json(t, r) for r in rows)
        n = sum(map(len, merged.values()))
        try:
            self._write(merged)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self._drop_connection()
            return False
        self.spool_path.unlink()
        self.stats["replayed_rows"] += n
        self.say(f"database back: wrote {n} spooled rows")
        return True

    def spooled(self) -> int:
        """Rows waiting in the spool file (not yet in the database)."""
        if not self.spool_path.exists():
            return 0
        with open(self.spool_path) as f:
            return sum(len(rows) for line in f if line.strip()
                       for rows in _loads_or_empty(line).values())

    def replay_spool(self) -> int:
        """Write a spool left by an earlier run, if any and the database is reachable."""
        self.wait()
        before = self.stats["replayed_rows"]
        if self.spool_path.exists() and self._connect():
            self._replay_spool()
        return self.stats["replayed_rows"] - before


def _loads_or_empty(line: str) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError:      # a torn last line: never acknowledged, never written
        return {}


def _typed(row: tuple, types: tuple) -> tuple:
    return tuple(uuid.UUID(str(v)) if t == "uuid" and v is not None else v for v, t in zip(row, types))


def _jsonable(row: tuple) -> list:
    return [{"b64": base64.b64encode(v).decode()} if isinstance(v, (bytes, bytearray)) else
            (str(v) if isinstance(v, uuid.UUID) else v) for v in row]


def _from_json(table: str, row: list) -> tuple:
    return tuple(base64.b64decode(v["b64"]) if isinstance(v, dict) else v for v in row)
