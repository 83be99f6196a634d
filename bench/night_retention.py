"""Retention at 1M turns: DELETE from day_table (today) against day_table partitioned by day.

The Night Cycle's cleanup deletes the turns whose retention has passed; with raw turns kept
one to seven cycles, each night removes a large share of an HNSW-indexed table, and vacuum
then repairs the graph around every deleted row. Partitioned by day, whole expired days
could be dropped instead. Measured here on the same 1M turns (bench/night_cycle.py's 1M
template, its sessions spread over 4 days, 250k turns a day, the universal HNSW index built
as the schema defines it: m 32, ef_construction 128):

- delete: memory.day_table as shipped; the oldest day deleted (DELETE, as stage 9 does; timed,
  with the WAL it wrote) and vacuumed (VACUUM, what autovacuum would do after it; timed), or
  with --repair reindex its HNSW index rebuilt over the rows left (REINDEX INDEX CONCURRENTLY,
  which recall can run beside) before the VACUUM, which then has only the heap to clean;
- partitioned: a copy of day_table partitioned by day (4 partitions, each with the same
  btree and HNSW indexes); the oldest day dropped (DROP TABLE of its partition; timed, with
  its WAL).

Recall before and after, on both (and on day_table between its DELETE and its VACUUM, what
recall meets while autovacuum works): the two shapes memory._recall_recent runs, per user (the
user's last 7 days: a selective filter, ranked on the stored binary codes then exactly) and
nearest turns over the whole table (the HNSW path), p50 and p95 over the same queries; and
what the cycle's per-turn reads cost on both: a session's turns by (session_id, turn_number),
which a table partitioned by time must probe in every partition.

Every step records its figures in nr_bench's bench_state table as it ends, and a run that
dies resumes after the last step done: at 1M turns on 2 cores the index build over the one
table takes over an hour and the VACUUM far longer (at 100k turns it took 5.4 times the
build), so --sides runs one side alone. The VACUUM runs in one process, so
the partitions' HNSW indexes are built beside it on the other core (its WAL is therefore not
reported: the builds write WAL too); the recall figures are taken with nothing else running.
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import numpy as np
import psycopg
from psimem import migrate
from psycopg import sql
from psycopg.types.json import Jsonb

from common import percentile_ms, report, say
from night_cycle import bench_cluster, cold_start, copy_database, exists, load_template

DAYS = 4
DB = "nr_bench"


def wal_bytes(c) -> int:
    return c.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()[0]


def timed(c, statement: str, params=()) -> tuple[float, int]:
    w0 = wal_bytes(c)
    t0 = time.perf_counter()
    c.execute(statement, params)
    return time.perf_counter() - t0, int(wal_bytes(c) - w0)


HNSW = ("CREATE INDEX {name} ON {table} USING hnsw (universal_embedding vector_cosine_ops) "
        "WITH (m = 32, ef_construction = 128)")


def stored(c) -> dict:
    """What earlier runs finished: every step records its figures in bench_state."""
    c.execute("CREATE TABLE IF NOT EXISTS bench_state (key text PRIMARY KEY, value jsonb NOT NULL)")
    return dict(c.execute("SELECT key, value FROM bench_state").fetchall())


def step(c, state: dict, key: str, work):
    """state[key], running work() and recording its result first if no run has done so."""
    if key not in state:
        state[key] = work()
        c.execute("INSERT INTO bench_state VALUES (%s, %s)", (key, Jsonb(state[key])))
        say(f"{key}: {state[key]}")
    return state[key]


def spread(c) -> int:
    say(f"spreading the sessions over {DAYS} days")
    # Every session keeps its time of day (the template spans 19 hours) on one of DAYS dates.
    c.execute(f"""UPDATE memory.day_table d
                  SET created_at = (current_date - 1 - (s.n % {DAYS})::int)::timestamptz + (d.created_at - t.first)
                  FROM (SELECT session_id, row_number() OVER (ORDER BY session_id) AS n FROM memory.sessions) s,
                       (SELECT min(created_at) AS first FROM memory.day_table) t
                  WHERE s.session_id = d.session_id""")
    c.execute("VACUUM (FULL, ANALYZE) memory.day_table")
    return DAYS


def index_whole(c) -> float:
    say("building the HNSW index on day_table (1 index over all rows)")
    return round(timed(c, HNSW.format(name="idx_day_table_universal_embedding", table="memory.day_table"))[0], 1)


def partition(c) -> list:
    """day_table_p: day_table's columns, partitioned by day, with the btree indexes the
    recall and the cycle read through (the HNSW indexes come later, one per partition).
    Its partitions and their row counts, oldest first."""
    c.execute("DROP TABLE IF EXISTS memory.day_table_p")
    lo, hi = c.execute("SELECT date_trunc('day', min(created_at)), date_trunc('day', max(created_at)) + interval '1 day' "
                       "FROM memory.day_table").fetchone()
    cols = [r[0] for r in c.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'memory.day_table'::regclass "
                                    "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum")]
    c.execute("CREATE TABLE memory.day_table_p (LIKE memory.day_table INCLUDING DEFAULTS INCLUDING GENERATED) "
              "PARTITION BY RANGE (created_at)")
    day = lo
    while day < hi:
        c.execute(sql.SQL("CREATE TABLE {} PARTITION OF memory.day_table_p FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier("memory", f"day_table_p_{day:%Y%m%d}"), sql.Literal(day), sql.Literal(day + timedelta(days=1))))
        day += timedelta(days=1)
    say("copying day_table into day_table_p")
    c.execute(f"INSERT INTO memory.day_table_p ({', '.join(cols)}) SELECT {', '.join(cols)} FROM memory.day_table")
    c.execute("CREATE INDEX ON memory.day_table_p (session_id, turn_number)")
    c.execute("CREATE INDEX ON memory.day_table_p (user_id, created_at)")
    c.execute("VACUUM ANALYZE memory.day_table_p")
    parts = [r[0] for r in c.execute("SELECT inhrelid::regclass::text FROM pg_inherits "
                                     "WHERE inhparent = 'memory.day_table_p'::regclass ORDER BY 1")]
    return [(p, c.execute(f"SELECT count(*) FROM {p}").fetchone()[0]) for p in parts]


def recall_figures(c, table: str, queries: np.ndarray, users: list) -> dict:
    """The two shapes of memory._recall_recent on `table`, and the cycle's per-session read,
    after a warm-up pass over the first 20 queries."""
    per_user, whole, session = [], [], []
    c.execute("SET hnsw.ef_search = 40")
    c.execute("SET hnsw.iterative_scan = relaxed_order")
    for i, q in enumerate(np.concatenate([queries[:20], queries])):
        v, user = q.tolist(), users[i % len(users)]
        t0 = time.perf_counter()
        c.execute(f"""WITH candidates AS MATERIALIZED (
                SELECT d.entry_id, d.universal_embedding AS v FROM {table} d
                WHERE d.user_id = %s AND d.created_at > now() - interval '7 days'
                ORDER BY d.universal_embedding_bq <~> binary_quantize(%s::vector) LIMIT 400)
            SELECT entry_id FROM candidates ORDER BY v <=> %s::vector LIMIT 10""", (user, v, v)).fetchall()
        per_user.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        c.execute(f"SELECT entry_id FROM {table} ORDER BY universal_embedding <=> %s::vector LIMIT 10", (v,)).fetchall()
        whole.append(time.perf_counter() - t0)
        sid = c.execute("SELECT session_id FROM memory.sessions WHERE user_id = %s LIMIT 1", (user,)).fetchone()[0]
        t0 = time.perf_counter()
        c.execute(f"SELECT turn_number, perplexity_score FROM {table} WHERE session_id = %s AND turn_number BETWEEN 20 AND 40",
                  (sid,)).fetchall()
        session.append(time.perf_counter() - t0)
    return {name: {"p50_ms": round(percentile_ms(x[20:], 50), 2), "p95_ms": round(percentile_ms(x[20:], 95), 2)}
            for name, x in (("recall_per_user", per_user), ("recall_whole_table_hnsw", whole),
                            ("session_turns_read", session))}


def vacuum_day_table(cl) -> float:
    with psycopg.connect(cl.conninfo(DB), autocommit=True) as c:
        say("VACUUM day_table")
        t0 = time.perf_counter()
        c.execute("VACUUM memory.day_table")
        return round(time.perf_counter() - t0, 1)


def stored_turns(cl) -> int | None:
    with psycopg.connect(cl.conninfo(DB), autocommit=True) as c:
        return stored(c).get("turns")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=1_000_000, help="turns loaded (default %(default)s)")
    ap.add_argument("--queries", type=int, default=200, help="recall queries per measurement (default %(default)s)")
    ap.add_argument("--sides", default="delete,partitioned",
                    help="delete (day_table: its HNSW index, DELETE, VACUUM), partitioned (day_table_p: its "
                         "partitions' HNSW indexes, DROP), or both (comma-separated)")
    ap.add_argument("--repair", choices=("vacuum", "reindex"), default="vacuum",
                    help="after the DELETE: VACUUM (what autovacuum does), or REINDEX INDEX CONCURRENTLY "
                         "and then VACUUM (default %(default)s)")
    args = ap.parse_args()
    sides = set(args.sides.split(","))
    if not sides or sides - {"delete", "partitioned"}:
        ap.error(f"--sides: delete, partitioned or both, not {args.sides!r}")
    cl = bench_cluster()
    cl.start(say)
    migrate.upgrade(cl.url())
    template = load_template(cl, args.turns)
    if not exists(cl, DB) or stored_turns(cl) != args.turns:
        copy_database(cl, template, DB)
    rng = np.random.default_rng(7)
    queries = rng.standard_normal((args.queries, 768)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    with psycopg.connect(cl.conninfo(DB), autocommit=True) as c:
        state = stored(c)
        step(c, state, "turns", lambda: args.turns)
        step(c, state, "days", lambda: spread(c))
        if "delete" in sides:
            step(c, state, "hnsw_build_s_whole", lambda: index_whole(c))
        parts = step(c, state, "partitions", lambda: partition(c))
    # a partitioned table has no storage of its own: its partitions are read into the cache
    (oldest, rows), others = parts[0], parts[1:]
    cached = [*(["memory.day_table"] if "delete" in sides else []),
              *(p for p, _ in (others if "drop" in state else parts) if "partitioned" in sides)]
    cold_start(cl, DB, (*cached, "memory.sessions"))
    with psycopg.connect(cl.conninfo(DB), autocommit=True) as c, ThreadPoolExecutor(1) as pool:
        users = [r[0] for r in c.execute("SELECT user_id FROM memory.users ORDER BY user_id")]
        vacuum = None
        if "delete" in sides:
            vacuum = delete_side(c, state, cl, pool, rows, queries, users, args.repair)
        for p, _ in parts if "partitioned" in sides else ():  # step() skips the ones built
            def build(p=p) -> dict:
                workers = 0 if vacuum and not vacuum.done() else 1  # the leader builds too
                c.execute(f"SET max_parallel_maintenance_workers = {workers}")
                say(f"building the HNSW index on {p}")
                seconds = timed(c, HNSW.format(name=f"{p.split('.')[1]}_universal", table=p))[0]
                return {"s": round(seconds, 1), "processes": workers + 1}
            step(c, state, f"hnsw_build: {p}", build)
        if vacuum:
            step(c, state, "vacuum", vacuum.result)
        if "delete" in sides and args.repair == "vacuum":
            step(c, state, "after: memory.day_table", lambda: recall_figures(c, "memory.day_table", queries, users))
        if "partitioned" in sides:
            step(c, state, "before: memory.day_table_p", lambda: recall_figures(c, "memory.day_table_p", queries, users))

            def drop() -> dict:
                seconds, wal = timed(c, f"DROP TABLE {oldest}")
                return {"rows": rows, "s": round(seconds, 3), "wal_mb": round(wal / 2**20, 3)}
            step(c, state, "drop", drop)
            step(c, state, "after: memory.day_table_p", lambda: recall_figures(c, "memory.day_table_p", queries, users))
    report(f"night_retention_{args.turns}", state)
    print(f"\nRetention over {args.turns} turns in {DAYS} days (the oldest day, {rows} turns, goes):")
    if "vacuum" in state:
        d = state["delete"]
        print(f"  DELETE {d['s']} s ({d['wal_mb']} MB WAL) + VACUUM {state['vacuum']} s; "
              f"HNSW build over the one table {state['hnsw_build_s_whole']} s (3 processes)")
    if "vacuum after reindex" in state:
        d, r = state["delete"], state["reindex"]
        print(f"  DELETE {d['s']} s ({d['wal_mb']} MB WAL) + REINDEX CONCURRENTLY {r['s']} s ({r['wal_mb']} MB WAL) "
              f"+ VACUUM {state['vacuum after reindex']} s; HNSW build over the one table "
              f"{state['hnsw_build_s_whole']} s (3 processes)")
    if "drop" in state:
        x = state["drop"]
        print(f"  DROP partition {x['s']} s ({x['wal_mb']} MB WAL); HNSW build, one per day: "
              + ", ".join("{s} s ({processes} processes)".format(**state["hnsw_build: " + p]) for p, _ in parts))
    for key, figs in state.items():
        if isinstance(figs, dict) and "recall_per_user" in figs:
            print(f"  {key:<34} " + ", ".join(f"{k} p50 {v['p50_ms']} ms p95 {v['p95_ms']} ms" for k, v in figs.items()))


def delete_side(c, state: dict, cl, pool, rows: int, queries, users, repair: str):
    """Recall on day_table, the oldest day's DELETE, recall with the VACUUM pending; then the
    repair: the VACUUM, started in the pool (the running future, or None if a run already timed
    it), or the index rebuilt (REINDEX CONCURRENTLY), the VACUUM after it and recall once more."""
    other = {"vacuum": "reindex", "reindex": "vacuum"}[repair]
    if other in state:
        raise SystemExit(f"--repair {repair}: this copy of the turns was repaired by {other} already "
                         f"(DROP DATABASE {DB} to start over)")
    step(c, state, "before: memory.day_table", lambda: recall_figures(c, "memory.day_table", queries, users))

    def delete() -> dict:
        # the oldest day: the rows of the oldest partition (which a partitioned side may have dropped)
        bound = c.execute("SELECT date_trunc('day', min(created_at)) + interval '1 day' FROM memory.day_table").fetchone()[0]
        # so that autovacuum does not start the VACUUM timed below
        c.execute("ALTER TABLE memory.day_table SET (autovacuum_enabled = off)")
        seconds, wal = timed(c, "DELETE FROM memory.day_table WHERE created_at < %s", (bound,))
        return {"rows": rows, "s": round(seconds, 1), "wal_mb": round(wal / 2**20, 1)}
    step(c, state, "delete", delete)
    # until (auto)vacuum ends, recall steps over the dead rows' index entries
    step(c, state, "vacuum pending: memory.day_table", lambda: recall_figures(c, "memory.day_table", queries, users))
    if repair == "vacuum":
        return None if "vacuum" in state else pool.submit(vacuum_day_table, cl)

    def reindex() -> dict:
        # an interrupted REINDEX CONCURRENTLY leaves its new index behind, invalid
        c.execute("DROP INDEX IF EXISTS memory.idx_day_table_universal_embedding_ccnew")
        say("REINDEX INDEX CONCURRENTLY on day_table's HNSW index (the live rows only)")
        seconds, wal = timed(c, "REINDEX INDEX CONCURRENTLY memory.idx_day_table_universal_embedding")
        return {"s": round(seconds, 1), "wal_mb": round(wal / 2**20, 1)}
    step(c, state, "reindex", reindex)
    # the new index holds no dead rows: what is left for VACUUM is the heap
    step(c, state, "vacuum after reindex", lambda: vacuum_day_table(cl))
    step(c, state, "after reindex: memory.day_table", lambda: recall_figures(c, "memory.day_table", queries, users))
    return None


if __name__ == "__main__":
    main()
