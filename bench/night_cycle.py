"""Night Cycle: CALL memory.night_cycle() against today's single-transaction cycle, in one run.

Data: conversations of 100 turns per session, 10 sessions per user, synthetic perplexity
arcs (a spike, a fall, two stable turns, every ~30 turns) and embedding-like 768-d universal
vectors (runs of 10 turns on one topic); native vectors are left out (NULL) to keep the 1M
load in budget, and the day table's HNSW indexes are dropped while loading (the cycle does
not use them; per-user recall ranks its few rows exactly). Each size is loaded once into a
template database; every side below runs on its own copy of it.

Sides, each on a fresh copy, each started the same way (PostgreSQL restarted, then the day
table, its TOAST and indexes and the sessions read into shared buffers with pg_prewarm, so
no side inherits a cache another side warmed):
- old: memory.run_night_cycle() as it was before it became a procedure (one transaction), on a
  server of its own (same settings) whose database is migrated by the source tree of the
  commit before that change (`git archive`; its schema has neither the gap blocks nor the
  kept turns later revisions added, so it does less work per turn), holding the same rows
  (copied from the template, the flux marks included);
- new: CALL memory.night_cycle() (commits per user; backfill mode as configured);
- new, no backfill (with --sides): the same with the HNSW indexes of the blocks and of the turns
  they keep left in place and inserted into;
- Python: arcs detected client-side from the perplexities themselves (the day_table
  trigger's rules: rolling baseline, spike, stabilisation) over the fetched turns, written
  back with COPY; compared with the new cycle's stages 0 and 1 (pick sessions, group the
  trigger's marks into arcs and store them), whose per-turn half the trigger already paid
  at insert time. Its arc count is checked against the database's.

Each side runs alone (--repeat times: its wall time, turns/s, time per stage), then once
more under load: writer threads record turns into sessions the cycle holds locked
at that moment (read with pgrowlocks: old holds every session it took until it commits, new
those of the user in flight) and reader threads recall for random users (each version's own:
memory.recall_hippocampus before, memory.recall now). Reported: each record_turn's and
recall's latency (max, p99 / p95), counting for a blocked thread the calls its schedule (a
write every 0.2 s, a recall every 0.1 s) would have made meanwhile, each waiting until the
same moment.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg
from common import BENCH_CONF, Timer, embedding_like, percentile_ms, report, say

from loaders.turns import ingest_rows
from psimem import migrate
from psimem.cluster import Cluster
from psimem.connect import connect

PER_SESSION, SESSIONS_PER_USER = 100, 10
HNSW = ("idx_day_table_universal_embedding", "idx_day_table_native_embedding")
REPO = Path(__file__).resolve().parent.parent
CONF = {**BENCH_CONF, "shared_buffers": "'6GB'", "max_connections": "60", "log_min_messages": "warning"}
FLUX = {"window": 20, "sigma": 1.5, "stable_derivative": 0.1, "stabilization": 2, "min_baseline": 3}


def bench_cluster() -> Cluster:
    home = os.environ.get("PSIMEM_BENCH_HOME", "/var/tmp/psimem-bench-night")
    return Cluster(Path(home), int(os.environ.get("PSIMEM_BENCH_PORT", "55491")), dbname="nightbench", conf=CONF)


def admin(cl: Cluster) -> psycopg.Connection:
    return psycopg.connect(cl.conninfo("postgres"), autocommit=True)


def exists(cl: Cluster, db: str) -> bool:
    with admin(cl) as c:
        return c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is not None


def copy_database(cl: Cluster, template: str, name: str) -> None:
    with admin(cl) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        # pg_cron's launcher stays connected to its database (the migrated base): it comes back
        # when the server restarts, which every side does.
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (template,))
        c.execute(f"CREATE DATABASE {name} TEMPLATE {template}")


def drop_database(cl: Cluster, name: str) -> None:
    with admin(cl) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def cold_start(cl: Cluster, db: str, relations: tuple[str, ...]) -> None:
    """The same cache for every side: a restarted server with these relations (and their
    TOAST tables and indexes) read into shared buffers."""
    cl.stop(say)
    cl.start(say)
    with psycopg.connect(cl.conninfo(db), autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        c.execute("CREATE EXTENSION IF NOT EXISTS pgrowlocks")
        for rel in relations:
            c.execute("""SELECT sum(pg_prewarm(x::regclass)) FROM (
                SELECT %s::regclass::oid AS x
                UNION ALL SELECT reltoastrelid FROM pg_class WHERE oid = %s::regclass AND reltoastrelid <> 0
                UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass) r""", (rel, rel, rel))


def perplexities(rng: np.random.Generator, n: int) -> np.ndarray:
    base = rng.uniform(15, 30)
    p = base * np.exp(0.05 * rng.standard_normal(n))
    i = int(rng.integers(8, 20))
    while i + 6 < n:
        p[i:i + 5] = base * np.array([3.0, 2.0, 1.3, 1.05, 1.04])
        i += int(rng.integers(25, 35))
    return p


def load_template(cl: Cluster, n: int) -> str:
    """A database holding n turns, loaded once and kept: sides run on copies of it."""
    name = f"nc_t{n}_v2"  # v2: every session idle when loaded
    if exists(cl, name):
        with psycopg.connect(cl.conninfo(name)) as c:
            if c.execute("SELECT count(*) FROM memory.day_table").fetchone()[0] == n:
                say(f"template {name} already holds {n} turns")
                return name
    copy_database(cl, cl.dbname, name)
    rng = np.random.default_rng(n)
    uni = embedding_like(n, 768, n, sequential=True)
    t0 = datetime.now(timezone.utc) - timedelta(hours=20)
    sessions = n // PER_SESSION
    with connect(cl.conninfo(name)) as conn:
        for i in HNSW:
            conn.execute(f"DROP INDEX IF EXISTS memory.{i}")
        conn.commit()
        say(f"loading {n} turns into {name}")
        with Timer() as t:
            for lo in range(0, sessions, 100):  # 10k turns per transaction
                recs = []
                for s in range(lo, min(sessions, lo + 100)):
                    ppl = perplexities(rng, PER_SESSION)
                    start = t0 + timedelta(seconds=s * 68400 / sessions)  # 20 to 1 hours ago: all idle
                    for k in range(PER_SESSION):
                        recs.append({"user": f"nb-u{s // SESSIONS_PER_USER}", "session": f"nb-s{s}",
                                     "role": "user" if k % 2 == 0 else "assistant",
                                     "content": f"turn {k} of session {s}. Some words about the topic at hand.",
                                     "created_at": (start + timedelta(seconds=k)).isoformat(), "turn_number": k + 1,
                                     "universal_embedding": uni[s * PER_SESSION + k], "perplexity_score": float(ppl[k])})
                ingest_rows(conn, recs)
                conn.commit()
        say(f"loaded {n} turns in {t.seconds:.0f} s")
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE memory.day_table")
        conn.execute("VACUUM ANALYZE memory.sessions")
    return name


def removal_commit() -> str:
    """The commit that removed the single-transaction driver."""
    return subprocess.run(["git", "rev-list", "-1", "HEAD", "--", "db/functions/memory_run_night_cycle.sql"], cwd=REPO,
                          check=True, capture_output=True, text=True).stdout.strip()


def before_procedure(path: str) -> str:
    """A file as it was before the Night Cycle became a procedure."""
    return subprocess.run(["git", "show", f"{removal_commit()}^:{path}"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout


def old_cluster(cl: Cluster) -> Cluster:
    """The old side's server: the same settings, its own data directory and port (pg_cron
    lets one database per server be migrated, and the old schema needs its own)."""
    return Cluster(cl.home.parent / (cl.home.name + "-old"), cl.port + 1, dbname=cl.dbname, conf=CONF)


def old_source(ocl: Cluster) -> Path:
    """The source tree as it was before the Night Cycle became a procedure (git archive)."""
    commit = removal_commit()
    src = ocl.home / f"src-{commit[:12]}"
    if not (src / "psimem").exists():
        src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", f"{commit}^"], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    return src


def common_columns(src: psycopg.Connection, dst: psycopg.Connection, table: str) -> list[str]:
    q = ("SELECT column_name FROM information_schema.columns WHERE table_schema || '.' || table_name = %s "
         "AND is_generated = 'NEVER' ORDER BY ordinal_position")
    have = {r[0] for r in src.execute(q, (table,))}
    return [c for (c,) in dst.execute(q, (table,)) if c in have]


def load_old_template(cl: Cluster, ocl: Cluster, template: str, n: int) -> str:
    """The template's rows in a database of the old server, migrated by the old source."""
    name = f"nc_old_t{n}"
    ocl.start(say)
    if exists(ocl, name):
        with psycopg.connect(ocl.conninfo(name)) as c:
            if c.execute("SELECT count(*) FROM memory.day_table").fetchone()[0] == n:
                say(f"old template {name} already holds {n} turns")
                return name
    src = old_source(ocl)
    subprocess.run([sys.executable, "-c", "import sys; from psimem import migrate; migrate.upgrade(sys.argv[1])", ocl.url()],
                   cwd=src, env={**os.environ, "PYTHONPATH": str(src)}, check=True)
    copy_database(ocl, ocl.dbname, name)
    say(f"copying {n} turns into the old schema ({name})")
    with psycopg.connect(cl.conninfo(template)) as a, psycopg.connect(ocl.conninfo(name)) as b:
        for i in HNSW:
            b.execute(f"DROP INDEX IF EXISTS memory.{i}")
        b.execute("SET session_replication_role = replica")  # rows as they are: no trigger counts them again
        for table in ("memory.users", "memory.sessions", "memory.day_table"):
            cols = ", ".join(common_columns(a, b, table))
            with a.cursor().copy(f"COPY (SELECT {cols} FROM {table}) TO STDOUT (FORMAT binary)") as out, \
                    b.cursor().copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT binary)") as into:
                for chunk in out:
                    into.write(chunk)
        b.commit()
    with psycopg.connect(ocl.conninfo(name), autocommit=True) as b:
        b.execute("VACUUM ANALYZE memory.day_table")
        b.execute("VACUUM ANALYZE memory.sessions")
    return name


def record(samples: list[float], started: float, ended: float, interval: float) -> None:
    """A call's latency, and that of each call the thread would have made on its schedule
    (every `interval` s) while this one was blocked: those would have waited until the same
    moment. Without them a blocked thread reports one slow call where a steady client (an
    agent recalling every 0.1 s) meets many (coordinated omission)."""
    samples.append(ended - started)
    slot = started + interval
    while slot < ended:
        samples.append(ended - slot)
        slot += interval


class Load:
    """Writers into sessions the cycle takes and readers recalling, while the cycle runs."""

    def __init__(self, url: str, old: bool, writers: int = 4, readers: int = 2, dim: int = 768):
        self.url, self.dim = url, dim
        self.recall = ("SELECT count(*) FROM memory.recall_hippocampus(%(v)s::real[], %(u)s, NULL, 10)" if old else
                       "SELECT count(*) FROM memory.recall(%(u)s, NULL, %(v)s::real[], NULL, 10)")
        self.writer_pids: list[int] = []
        self.stop = threading.Event()
        self.writes: list[float] = []
        self.recalls: list[float] = []
        with psycopg.connect(url) as c:
            self.users = [r[0] for r in c.execute("SELECT user_id FROM memory.users")]
        self.threads = [threading.Thread(target=self.writer, args=(i,), daemon=True) for i in range(writers)] + \
                       [threading.Thread(target=self.reader, args=(i,), daemon=True) for i in range(readers)] + \
                       [threading.Thread(target=self.progress, daemon=True)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(3600)

    def target(self, c):
        """A session the cycle holds locked right now (pgrowlocks reads the lockers without
        locking anything: a probe that locked rows could make the cycle skip them)."""
        # The cycle locks in subtransactions, whose lockers have no pid: told apart by the lock
        # mode (the old cycle: FOR SHARE; the new: FOR NO KEY UPDATE, then its own UPDATE) and
        # by not being a writer's (FOR UPDATE in the trigger).
        row = c.execute("SELECT s.session_id FROM pgrowlocks('memory.sessions') p JOIN memory.sessions s ON s.ctid = p.locked_row "
                        "WHERE p.modes && ARRAY['For Share', 'For No Key Update', 'No Key Update'] "
                        "AND NOT p.pids && %s::int[] ORDER BY random() LIMIT 1", (self.writer_pids,)).fetchone()
        return row and row[0]

    def writer(self, i: int) -> None:
        rng = np.random.default_rng(100 + i)
        with psycopg.connect(self.url, autocommit=True) as c:
            self.writer_pids.append(c.info.backend_pid)
            while not self.stop.is_set():
                sid = self.target(c)
                if sid is None:
                    time.sleep(0.05)
                    continue
                v = rng.standard_normal(self.dim).astype(np.float32)
                t0 = time.perf_counter()
                c.execute("SELECT memory.record_turn(p_session_id => %s, p_role => 'user', p_content => 'a late turn', "
                          "p_universal_embedding => %s::real[], p_perplexity_score => 20)", (sid, (v / np.linalg.norm(v)).tolist()))
                record(self.writes, t0, time.perf_counter(), 0.2)
                time.sleep(0.2)

    def reader(self, i: int) -> None:
        rng = np.random.default_rng(200 + i)
        with psycopg.connect(self.url, autocommit=True) as c:
            while not self.stop.is_set():
                v = rng.standard_normal(self.dim).astype(np.float32)
                t0 = time.perf_counter()
                c.execute(self.recall, {"v": (v / np.linalg.norm(v)).tolist(),
                                        "u": self.users[int(rng.integers(len(self.users)))]})
                record(self.recalls, t0, time.perf_counter(), 0.1)
                time.sleep(0.1)

    def progress(self, every: float = 60) -> None:
        """The figures so far, in the log every minute: a run of an hour or more that is killed
        (the OOM killer ended one at 1M turns) keeps what it measured until then."""
        while not self.stop.wait(every):
            f = self.figures()
            say(f"under load so far: {f['writes']} writes, max {f['write_max_ms']} ms, p99 {f['write_p99_ms']} ms; "
                f"{f['recalls']} recalls, p95 {f['recall_p95_ms']} ms")

    def figures(self) -> dict:
        w, r = list(self.writes) or [0.0], list(self.recalls) or [0.0]
        return {"writes": len(self.writes), "write_max_ms": round(max(w) * 1000, 1),
                "write_p99_ms": round(percentile_ms(w, 99), 1), "recalls": len(self.recalls),
                "recall_p95_ms": round(percentile_ms(r, 95), 1), "_writes": self.writes, "_recalls": self.recalls}


class NoLoad:
    """No concurrent work: the cycle's own wall time."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def figures(self) -> dict:
        return {}


def run_cycle(clusters: dict, templates: dict, n: int, side: str, loaded: bool) -> dict:
    """One run of a side on a fresh copy of its template, the other server stopped."""
    old = side == "old"
    cl, other = (clusters["old"], clusters["new"]) if old else (clusters["new"], clusters["old"])
    other.stop(say)
    cl.start(say)
    db = f"nc_{side.replace(' ', '_').replace(',', '')}"
    copy_database(cl, templates["old" if old else "new"], db)
    url = cl.url(db)
    if not old:
        migrate.upgrade(url)  # the checkout's code files, whatever the template was copied with
    if side == "new, no backfill":
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("SELECT ops.set_setting('night.index_rebuild_min_blocks', '1000000000')")
    cold_start(cl, db, ("memory.day_table", "memory.sessions"))
    call = "SELECT memory.run_night_cycle()" if old else "CALL memory.night_cycle()"
    say(f"{side}: {call} over {n} turns" + " under load" * loaded)
    load_avg = os.getloadavg()[0]
    with psycopg.connect(url, autocommit=True) as c:
        with Load(url, old) if loaded else NoLoad() as load, Timer() as t:
            c.execute(call)
    with psycopg.connect(url) as c:
        run_id = c.execute("SELECT max(run_id) FROM ops.cycle_runs").fetchone()[0]
        stages = {f"{s} {name}{' (run-wide)' * whole}": round(float(ms) / 1000, 2) for s, name, whole, ms in c.execute(
            "SELECT stage, stage_name, user_id IS NULL, sum(duration_ms) FROM ops.cycle_stage_log WHERE run_id = %s "
            "GROUP BY 1, 2, 3 ORDER BY 1, 3", (run_id,))}
        arcs, blocks, failed = c.execute("SELECT (SELECT count(*) FROM memory.flux_arcs), "
                                         "(SELECT count(*) FROM memory.holographic_blocks), "
                                         "(SELECT users_failed FROM ops.cycle_runs WHERE run_id = %s)", (run_id,)).fetchone()
    drop_database(cl, db)
    return {"side": side, "turns": n, "under_load": loaded, "seconds": round(t.seconds, 2), "turns_per_s": round(n / t.seconds),
            "arcs": arcs, "blocks": blocks, "users_failed": failed, "stage_seconds": stages,
            "load_average_at_start": round(load_avg, 2), **load.figures()}


def detect_arcs(sessions: dict) -> list[dict]:
    """The day_table trigger's flux rules, in Python, from each session's perplexities."""
    arcs = []
    for sid, turns in sessions.items():
        recent: list[np.float32] = []
        open_, stable, baseline, arc = False, 0, None, None
        for turn, p, at in turns:
            n = len(recent)
            mean = float(np.mean(recent, dtype=np.float64)) if n else None
            sd = float(np.std(recent, ddof=1, dtype=np.float64)) if n > 1 else 0.0
            prev = float(recent[-1]) if n else None
            in_arc = open_  # a turn belongs to the arc from the spike to the stable turn closing it
            if not open_:
                if n >= FLUX["min_baseline"] and p > mean + FLUX["sigma"] * sd:
                    open_, in_arc, stable, baseline = True, True, 0, float(np.float32(mean))
                    arc = {"session": sid, "start": turn, "peak_turn": turn, "peak": p, "baseline": mean, "sigma": sd,
                           "resolved": False, "start_time": at}
                    arcs.append(arc)
            else:
                stable = stable + 1 if abs(p - prev) < FLUX["stable_derivative"] * baseline else 0
                if p > arc["peak"]:
                    arc.update(peak=p, peak_turn=turn)
                if stable >= FLUX["stabilization"]:
                    open_, stable = False, 0
                    arc["resolved"] = True
            if in_arc:
                arc.update(end=turn, final=p, end_time=at)
            recent = (recent + [np.float32(p)])[-FLUX["window"]:]
    return arcs


def python_flux(cl: Cluster, template: str, closing: int = 5) -> dict:
    db = "nc_python"
    copy_database(cl, template, db)
    cold_start(cl, db, ("memory.day_table", "memory.sessions"))
    with connect(cl.conninfo(db)) as conn, Timer() as t:
        sessions: dict = {}
        with conn.cursor(name="turns") as cur:
            cur.itersize = 20000
            cur.execute("SELECT d.session_id, d.turn_number, d.perplexity_score, d.created_at FROM memory.day_table d "
                        "JOIN memory.sessions s USING (session_id) WHERE d.perplexity_score IS NOT NULL "
                        "AND s.last_turn_at <= now() - (SELECT (value #>> '{}')::interval FROM ops.settings "
                        "WHERE key = 'night.session_idle') ORDER BY d.session_id, d.turn_number")
            for sid, turn, p, at in cur:
                sessions.setdefault(sid, []).append((turn, p, at))
        conn.commit()
        arcs = detect_arcs(sessions)
        open_sessions = [a["session"] for a in arcs if not a["resolved"]]
        emb = dict(conn.execute(
            "SELECT s, l2_normalize(avg(e))::text FROM (SELECT d.session_id s, d.universal_embedding e, row_number() OVER "
            "(PARTITION BY d.session_id ORDER BY d.turn_number DESC) r FROM memory.day_table d "
            "WHERE d.session_id = ANY(%s)) x WHERE r <= %s GROUP BY s", (open_sessions, closing)).fetchall()) if open_sessions else {}
        conn.execute("CREATE TEMP TABLE py_arcs (session_id uuid, start_turn int, peak_turn int, end_turn int, resolved bool, "
                     "baseline float8, sigma float8, peak float8, final float8, quality float8, duration int, "
                     "start_time timestamptz, end_time timestamptz, open_arc_embedding text)")
        with conn.cursor() as cur, cur.copy("COPY py_arcs FROM STDIN") as cp:
            for a in arcs:
                d = a["end"] - a["start"] + 1
                cp.write_row((a["session"], a["start"], a["peak_turn"], a["end"], a["resolved"], a["baseline"], a["sigma"],
                              a["peak"], a["final"], (a["peak"] - a["final"]) * d, d, a["start_time"], a["end_time"],
                              emb.get(a["session"])))
        conn.commit()
    drop_database(cl, db)
    return {"seconds": round(t.seconds, 2), "arcs": len(arcs), "turns": sum(len(v) for v in sessions.values())}


def summary(runs: list[dict], loaded: list[dict]) -> dict:
    """One side at one size: the median wall time of its runs alone (with --repeat 0, of its
    run under load); the latencies (over every call) and wall time of its runs under load."""
    alone = bool(runs)
    runs = runs or loaded
    secs = sorted(r["seconds"] for r in runs)
    med = secs[len(secs) // 2]
    w = [x for r in loaded for x in r.pop("_writes")]
    q = [x for r in loaded for x in r.pop("_recalls")]
    return {"side": runs[0]["side"], "turns": runs[0]["turns"], "repeats": len(runs) if alone else 0, "seconds_median": med,
            "seconds_all": secs, "turns_per_s": round(runs[0]["turns"] / med), "arcs": runs[0]["arcs"],
            "blocks": runs[0]["blocks"], "users_failed": max(r["users_failed"] for r in runs),
            "stage_seconds_of_median_run": next(r["stage_seconds"] for r in runs if r["seconds"] == med),
            "seconds_under_load": [r["seconds"] for r in loaded],
            "writes": len(w), "write_max_ms": round(max(w or [0]) * 1000, 1), "write_p99_ms": round(percentile_ms(w or [0], 99), 1),
            "writes_over_1s": sum(x > 1 for x in w), "recalls": len(q), "recall_p50_ms": round(percentile_ms(q or [0], 50), 1),
            "recall_p95_ms": round(percentile_ms(q or [0], 95), 1), "recall_max_ms": round(max(q or [0]) * 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated turn counts")
    ap.add_argument("--sides", default="old,new", help="which cycles to run (old, new, new, no backfill)")
    ap.add_argument("--repeat", default="3,3,1", help="runs of each side alone per size (comma-separated, one per "
                                                      "size), interleaved; the median wall time is reported; then "
                                                      "one run of each under load (0: only that one, whose wall "
                                                      "time is then reported)")
    ap.add_argument("--report", default="night_cycle", help="name of the JSON report in bench/out")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    repeats = [int(x) for x in args.repeat.split(",")] + [1] * len(sizes)
    sides = [s.strip() for s in re.split(r",(?! no)", args.sides)]
    cl = bench_cluster()
    ocl = old_cluster(cl)
    cl.start(say)
    migrate.upgrade(cl.url())
    res = {"data": "synthetic perplexity arcs, 768-d embedding-like universal vectors (runs of 10 turns on one topic), "
                   "no native vectors, day_table HNSW dropped; 100 turns per session, 10 sessions per user",
           "load": "4 writer threads (record_turn, 0.2 s apart, into a session the cycle holds locked) and 2 reader threads "
                   "(every 0.1 s: old memory.recall_hippocampus, new memory.recall) during each cycle",
           "machine": f"{os.cpu_count()} cores shared with other work (load average at each start is recorded)",
           "runs": [], "summary": [], "python_flux": []}
    for n, repeat in zip(sizes, repeats):
        cl.start(say)
        template = load_template(cl, n)
        templates = {"new": template, "old": load_old_template(cl, ocl, template, n) if "old" in sides else None}
        ocl.stop(say)
        py = python_flux(cl, template)
        res["python_flux"].append(py)
        runs = {(side, loaded): [] for side in sides for loaded in (False, True)}
        for rep in range(repeat + 1):  # the sides alone `repeat` times, then once each under load
            for side in sides:
                r = run_cycle({"new": cl, "old": ocl}, templates, n, side, loaded=rep == repeat)
                runs[side, rep == repeat].append(r)
                res["runs"].append({k: v for k, v in r.items() if not k.startswith("_")})
                say(f"{side} {n}{' under load' * (rep == repeat)}: {r['seconds']} s "
                    f"(load average {r['load_average_at_start']})")
                report(args.report, res)
        for side in sides:
            sm = summary(runs[side, False], runs[side, True])
            if side == "new":
                sql = sum(v for k, v in sm["stage_seconds_of_median_run"].items() if k.split()[0] in ("0", "1"))
                py.update(sql_stages_0_1_seconds=round(sql, 2),
                          ratio_python_vs_sql_stages_0_1=round(py["seconds"] / sql, 2) if sql else None,
                          sql_arcs=sm["arcs"])
            res["summary"].append(sm)
        report(args.report, res)
    for side in sides:
        rows = [r for r in res["summary"] if r["side"] == side]
        if len(rows) > 1:
            xs, ys = np.log([r["turns"] for r in rows]), np.log([r["seconds_median"] for r in rows])
            res.setdefault("cost_exponent", {})[side] = round(float(np.polyfit(xs, ys, 1)[0]), 3)
    print("\nNight Cycle, 100 turns per session: alone (median of the repeats), then under 4 writers and 2 readers:")
    for r in res["summary"]:
        print(f"  {r['side']:<17} {r['turns']:>8} turns: {r['seconds_median']:>8.1f} s {r['turns_per_s']:>7} turns/s "
              f"(runs: {r['seconds_all']})  {r['arcs']} arcs, {r['blocks']} blocks, {r['users_failed']} users failed")
        print(f"      under load: {r['seconds_under_load']} s; record_turn into taken sessions: {r['writes']} calls, max {r['write_max_ms']} ms, "
              f"p99 {r['write_p99_ms']} ms, {r['writes_over_1s']} over 1 s; recall: {r['recalls']} calls, "
              f"p50 {r['recall_p50_ms']} ms, p95 {r['recall_p95_ms']} ms, max {r['recall_max_ms']} ms")
        print("      per stage (s): " + ", ".join(f"{k} {v}" for k, v in r["stage_seconds_of_median_run"].items()))
    for p in res["python_flux"]:
        if "sql_stages_0_1_seconds" in p:
            print(f"  arcs from perplexities in Python over {p['turns']} fetched turns: {p['seconds']} s, {p['arcs']} arcs "
                  f"(database: {p['sql_arcs']}) = {p['ratio_python_vs_sql_stages_0_1']}x the new cycle's stages 0+1 "
                  f"({p['sql_stages_0_1_seconds']} s)")
    for side, e in res.get("cost_exponent", {}).items():
        print(f"  {side}: time ~ turns^{e} (1.0 is linear)")
    report(args.report, res)
    for c in (ocl, cl):
        c.stop(say)


if __name__ == "__main__":
    main()
