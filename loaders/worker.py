"""psimem worker: takes the jobs the Night Cycle queues in ops.jobs and does the Python half.

cortex_migrate  moves blocks into the LanceDB Cortex (memory.blocks_for_transfer gives
                them with their prose already compressed), then marks them migrated
                (memory.mark_migrated) and finishes the jobs in one PostgreSQL transaction.
                The LanceDB write is a merge-insert on block_id, so a crash between the two
                steps leaves the job running; it is taken back once its heartbeat is stale
                and redone without a duplicate. A block the Cortex holds for another user
                (a packet imported there) is not replaced: the job fails naming it.
cluster_update  re-clusters the users whose Cortex changed (loaders.raptor) and replaces
                their trees atomically.

Any number of workers may run against one database and one Cortex (a local directory
or S3): ops.take_jobs hands each job to one of them, LanceDB commit conflicts between
them are retried (loaders.cortex), and a worker whose jobs were taken back while it
was stalled drops them when PostgreSQL refuses its finish (the worker that took them
redoes the write, which replaces rather than duplicates).

Every queue step is one SQL function of db/functions/ops_jobs.sql. The worker registers
(refused when its SQL code version differs from the database's), heartbeats from a
background thread, wakes on NOTIFY psimem_jobs and polls every worker.poll_interval
seconds anyway. --once drains the ready jobs and exits. SIGTERM/SIGINT stop it: a job in
hand is released back to the queue (ops.stop_worker), not lost.

Fault injection for tests, PSIMEM_WORKER_FAULT: `exit_after_cortex_write` (os._exit(97)
after the LanceDB write, before the PostgreSQL mark), `sleep_before_cortex_write:SECONDS`,
`sleep_after_cortex_write:SECONDS` (a window for a test to kill the worker between the
write and the mark), `raise_in_migrate` (every migration fails).
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from psimem.connect import connect, database_url
from psimem.sqlfiles import code_version

from .cortex import Cortex, row_from_pg
from .raptor import RaptorParams, cluster_cortex


class Shutdown(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT."""


class WorkerRefused(RuntimeError):
    pass


def _fault() -> str:
    return os.environ.get("PSIMEM_WORKER_FAULT", "")


def _say(msg: str) -> None:
    print(f"psimem worker: {msg}", file=sys.stderr, flush=True)


@dataclass
class Worker:
    url: str | None = None
    cortex_uri: str | None = None
    worker_id: str | None = None
    say: callable = _say
    stats: dict = field(default_factory=lambda: {"migrated": 0, "clustered": 0, "failed": 0, "released": 0,
                                                 "lost": 0, "conflicts_retried": 0})

    def __post_init__(self):
        self.url = self.url or database_url()
        self.worker_id = self.worker_id or f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"
        self.held: list[int] = []
        self._stop = threading.Event()
        self._dirty = False

    # -- plumbing -------------------------------------------------------------------------
    def _connect(self, **kw) -> psycopg.Connection:
        return connect(self.url, **kw)

    def _settings(self) -> dict:
        rows = self.conn.execute("SELECT key, value FROM ops.settings WHERE split_part(key, '.', 1) IN "
                                 "('worker', 'cortex', 'raptor')").fetchall()
        self.conn.commit()
        return dict(rows)

    def register(self) -> None:
        self.conn = self._connect()
        self.cortex = Cortex.for_database(self.conn, self.cortex_uri)
        try:
            self.conn.execute("SELECT ops.register_worker(%s, %s, %s, %s, %s)",
                              (self.worker_id, socket.gethostname(), os.getpid(), code_version(), self.cortex.uri))
            self.conn.commit()
        except psycopg.errors.ObjectNotInPrerequisiteState as e:
            self.conn.close()
            raise WorkerRefused(str(e).splitlines()[0]) from None
        self.settings = self._settings()
        self.say(f"{self.worker_id} registered; Cortex at {self.cortex.uri}")

    def _heartbeat_loop(self) -> None:
        interval = float(self.settings["worker.heartbeat_interval"])
        hb = None
        while not self._stop.wait(interval):
            try:  # a failed beat is retried on the next one, over a new connection if need be
                if hb is None or hb.closed:
                    hb = self._connect(autocommit=True)
                hb.execute("SELECT ops.worker_heartbeat(%s)", (self.worker_id,))
            except Exception as e:
                self.say(f"heartbeat failed (retrying): {e}")
                if hb is not None:
                    hb.close()
                hb = None
        if hb is not None:
            hb.close()

    def _wait_for_work(self, timeout: float) -> None:
        for _ in self.listener.notifies(timeout=timeout, stop_after=1):
            pass

    # -- the loop -------------------------------------------------------------------------
    def run(self, once: bool = False, install_signals: bool = False) -> dict:
        """Works until stopped (or, with once, until no job is ready). Returns counts of what it did."""
        self.register()
        if install_signals:
            def _handler(signum, frame):
                raise Shutdown(signal.Signals(signum).name)
            old = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
        hb = threading.Thread(target=self._heartbeat_loop, name="psimem-heartbeat", daemon=True)
        hb.start()
        self.listener = self._connect(autocommit=True)
        self.listener.execute("LISTEN psimem_jobs")
        try:
            while True:
                jobs = self._take()
                if not jobs:
                    self._maintain()
                    if once:
                        break
                    self._wait_for_work(float(self.settings["worker.poll_interval"]))
                    continue
                self._work(jobs)
        except Shutdown as s:
            self.say(f"{s} received; releasing {len(self.held)} job(s) and stopping")
            self.stats["released"] += len(self.held)
        finally:
            self._stop.set()
            self.stats["conflicts_retried"] = self.cortex.conflicts
            if install_signals:
                for s, h in old.items():
                    signal.signal(s, h)
            self._close()
        return self.stats

    def _close(self) -> None:
        # A fresh connection: the main one may have been interrupted mid-statement.
        try:
            self.conn.close()
        except Exception:
            pass
        with self._connect(autocommit=True) as c:
            c.execute("SELECT ops.stop_worker(%s)", (self.worker_id,))
        self.listener.close()
        self.held = []

    def _take(self) -> list[dict]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            jobs = cur.execute("SELECT * FROM ops.take_jobs(%s, %s)",
                               (self.worker_id, int(self.settings["worker.batch_size"]))).fetchall()
        self.conn.commit()
        self.held = [j["job_id"] for j in jobs]
        return jobs

    def _work(self, jobs: list[dict]) -> None:
        kind = jobs[0]["kind"]
        handler = {"cortex_migrate": self._migrate, "cluster_update": self._cluster}[kind]
        try:
            handler(jobs)
        except Shutdown:
            raise
        except psycopg.errors.LockNotAvailable:
            # ops.finish_jobs: the jobs are no longer ours. This worker stalled past
            # worker.stale_after and another took them; that one redoes the write.
            self.conn.rollback()
            self.stats["lost"] += len(jobs)
            self.say(f"{len(jobs)} {kind} job(s) were taken back by another worker while this one stalled; dropped")
        except Exception as e:
            self.conn.rollback()
            if len(jobs) > 1:  # find the bad one: every job on its own
                self.say(f"{kind} batch of {len(jobs)} failed ({e}); retrying them one by one")
                for j in jobs:
                    self.held = [j["job_id"]]
                    self._work([j])
                return
            err = "".join(traceback.format_exception_only(type(e), e)).strip()
            state = self.conn.execute("SELECT ops.fail_job(%s, %s, %s)",
                                      (self.worker_id, jobs[0]["job_id"], err)).fetchone()[0]
            self.conn.commit()
            self.stats["failed"] += 1
            self.say(f"job {jobs[0]['job_id']} ({kind}) failed, now {state}: {err}")
        self.held = []

    # -- the jobs -------------------------------------------------------------------------
    def _migrate(self, jobs: list[dict]) -> None:
        fault = _fault()
        if fault == "raise_in_migrate":
            raise RuntimeError("injected fault (PSIMEM_WORKER_FAULT=raise_in_migrate)")
        ids = [j["payload"]["block_id"] for j in jobs]
        t0 = time.perf_counter()
        with self.conn.cursor(row_factory=dict_row) as cur:
            blocks = cur.execute("SELECT * FROM memory.blocks_for_transfer(%s::uuid[], true)", (ids,),
                                 binary=True).fetchall()
        self.conn.commit()
        found = {str(b["block_id"]) for b in blocks}
        todo = [b for b in blocks if b["migrated_at"] is None]
        done_before = [str(b["block_id"]) for b in blocks if b["migrated_at"] is not None]
        if done_before:  # marked already (a job re-run after the mark): the Cortex must have them
            have = {r["block_id"] for r in self.cortex.get_blocks(done_before, ["block_id"])}
            lost = sorted(set(done_before) - have)
            if lost:
                raise RuntimeError(f"block_id: {len(lost)} block(s) marked migrated are missing from the Cortex "
                                   f"at {self.cortex.uri}, e.g. {lost[0]}")
        written = {}
        t1 = time.perf_counter()
        if todo:
            if fault.startswith("sleep_before_cortex_write:"):
                time.sleep(float(fault.split(":", 1)[1]))
            self._refuse_other_users(todo)
            rows = [row_from_pg(b, self.cortex.udim, self.cortex.ndim) for b in todo]
            written = self.cortex.upsert_blocks(rows)
            self._dirty = True
            if fault == "exit_after_cortex_write":
                os._exit(97)
            if fault.startswith("sleep_after_cortex_write:"):
                time.sleep(float(fault.split(":", 1)[1]))
        t2 = time.perf_counter()
        before = sum(b["prose_bytes_before"] for b in todo)
        after = sum(b["prose_bytes_after"] for b in todo)
        result = {"blocks": len(todo), "already_migrated": len(done_before), "missing": len(set(ids) - found),
                  "cortex_version": written.get("version"), "cortex_inserted": written.get("inserted", 0),
                  "cortex_replaced": written.get("updated", 0), "cortex_attempts": written.get("attempts", 0),
                  "prose_bytes_before": before, "prose_bytes_after": after}
        self.conn.execute("SELECT memory.mark_migrated(%s::uuid[])", ([b["block_id"] for b in todo],))
        self.conn.execute("SELECT ops.finish_jobs(%s, %s, %s::jsonb)",
                          (self.worker_id, [j["job_id"] for j in jobs], psycopg.types.json.Jsonb(result)))
        self.conn.commit()
        self.stats["migrated"] += len(todo)
        for k, v in (("read_s", t1 - t0), ("cortex_write_s", t2 - t1), ("mark_s", time.perf_counter() - t2)):
            self.stats[k] = round(self.stats.get(k, 0) + v, 3)

    def _refuse_other_users(self, blocks: list[dict]) -> None:
        """A block id the Cortex already holds for another user (imported there from a packet) is
        not overwritten by this user's block: the batch fails naming it, and the operator decides."""
        owner = {str(b["block_id"]): str(b["user_id"]) for b in blocks}
        for r in self.cortex.get_blocks(list(owner), ["block_id", "user_id"]):
            if r["user_id"] != owner[r["block_id"]]:
                raise RuntimeError(f"block_id: block {r['block_id']} is in the Cortex at {self.cortex.uri} for another "
                                   "user (imported from a packet); not replaced")

    def _cluster(self, jobs: list[dict]) -> None:
        self._maintain()
        result = cluster_cortex(self.cortex, RaptorParams.from_settings(self.settings))
        self.conn.execute("SELECT ops.finish_jobs(%s, %s, %s::jsonb)",
                          (self.worker_id, [j["job_id"] for j in jobs], psycopg.types.json.Jsonb(result)))
        self.conn.commit()
        self.stats["clustered"] += 1
        self.say(f"RAPTOR trees of {result['users_reclustered']} of {result['users']} users rebuilt "
                 f"({result.get('clusters_kept', 0)} clusters kept their ids): {result['levels']} in {result['seconds']}s")

    def _maintain(self) -> None:
        """After a run of migrations: compact the Cortex and index it once it is big enough."""
        if not self._dirty:
            return
        self.cortex.optimize()
        info = self.cortex.ensure_vector_index(int(self.settings["cortex.index_min_rows"]),
                                               str(self.settings["cortex.index_type"]))
        for space in info["created"]:
            self.say(f"vector index {info['vector_index'][space]} on {space}_embedding built ({info['rows']} Cortex blocks)")
        self._dirty = False
