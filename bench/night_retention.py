"""Retention at 1M turns: DELETE from day_table (today) against day_table partitioned by day.

The Night Cycle's cleanup deletes the turns whose retention has passed; with raw turns kept
one to seven cycles, each night removes a large share of an HNSW-indexed table, and vacuum
then repairs the graph around every deleted row. Partitioned by day, whole expired days
could be dropped instead. Measured here on the same 1M turns (bench/night_cycle.py's 1M
template, its sessions spread over 4 days, 250k turns a day, the universal HNSW index built
as the schema defines it: m 32, ef_construction 128):

- delete: memory.day_table as shipped; the oldest day deleted (DELETE, as stage 9 does) and
  vacuumed (VACUUM, what autovacuum would do after it), each timed, with the WAL it wrote;
- partitioned: a copy of day_table partitioned by day (4 partitions, each with the same
  btree and HNSW indexes); the oldest day dropped (DROP TABLE of its partition).

Recall before and after, on both (and on day_table between its DELETE and its VACUUM, what
recall meets while autovacuum works): the two shapes memory._recall_recent runs, per user (the
user's last 7 days: a selective filter, ranked on the stored binary codes then exactly) and
nearest turns over the whole table (the HNSW path), p50 and p95 over the same queries; and
what the cycle's per-turn reads cost on both: a session's turns by (session_id, turn_number),
which a table partitioned by time must probe in every partition.

The two index builds take about an hour each at 1M turns on 2 cores: a run that dies after
one resumes after it (the steps done are recorded in nr_bench's bench_state table, which
the retention step drops before it changes anything).
"""
from __future__ import annotations

import argparse
import time
from datetime import timedelta

import numpy as np
import psycopg
from psimem import migrate
from psycopg import sql

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
    """What an earlier run of prepare() finished: each step records its figure in
    bench_state, so a run that died after an hour of index building resumes after it."""
    c.execute("CREATE TABLE IF NOT EXISTS bench_state (key text PRIMARY KEY, value float8 NOT NULL)")
    return dict(c.execute("SELECT key, value FROM bench_state").fetchall())


def prepare(cl, template: str, turns: int) -> dict:
    """The template's sessions spread over DAYS days, the HNSW index built, and the
    partitioned copy beside it."""
    fresh = True
    if exists(cl, DB):
        with psycopg.connect(cl.conninfo(DB), autocommit=True) as c:
            fresh = stored(c).get("turns") != turns
    if fresh:
        copy_database(cl, template, DB)
    with psycopg.connect(cl.conninfo(DB), autocommit=True) as c:
        c.execute("SET maintenance_work_mem = '6GB'")
        done = stored(c)
        if "hnsw_build_s_whole" not in done:
            say(f"spreading the sessions over {DAYS} days")
            # Every session keeps its time of day (the template spans 19 hours) on one of DAYS dates.
            c.execute(f"""UPDATE memory.day_table d
                          SET created_at = (current_date - 1 - (s.n % {DAYS})::int)::timestamptz + (d.created_at - t.first)
                          FROM (SELECT session_id, row_number() OVER (ORDER BY session_id) AS n FROM memory.sessions) s,
                               (SELECT min(created_at) AS first FROM memory.day_table) t
                          WHERE s.session_id = d.session_id""")
            c.execute("VACUUM (FULL, ANALYZE) memory.day_table")
            say("building the HNSW index on day_table (1 index over all rows)")
            seconds = timed(c, HNSW.format(name="idx_day_table_universal_embedding", table="memory.day_table"))[0]
            c.execute("INSERT INTO bench_state VALUES ('turns', %s), ('hnsw_build_s_whole', %s)", (turns, seconds))
        else:
            say(f"{DB} already holds the spread turns and their HNSW index")
        if "hnsw_build_s_partitioned" not in done:
            partition(c)
            say("building the HNSW index on day_table_p (one per partition)")
            seconds = timed(c, HNSW.format(name="idx_day_table_p_universal", table="memory.day_table_p"))[0]
            c.execute("VACUUM ANALYZE memory.day_table_p")
            c.execute("INSERT INTO bench_state VALUES ('hnsw_build_s_partitioned', %s)", (seconds,))
        else:
            say(f"{DB} already holds day_table_p and its HNSW indexes")
        done = stored(c)
        parts = [r[0] for r in c.execute("SELECT inhrelid::regclass::text FROM pg_inherits "
                                         "WHERE inhparent = 'memory.day_table_p'::regclass ORDER BY 1")]
        return {"hnsw_build_s_whole": round(done["hnsw_build_s_whole"], 1),
                "hnsw_build_s_partitioned": round(done["hnsw_build_s_partitioned"], 1),
                "partitions": [(p, c.execute(f"SELECT count(*) FROM {p}").fetchone()[0]) for p in parts]}


def partition(c) -> None:
    """day_table_p: day_table's columns, partitioned by day, with the btree indexes the
    recall and the cycle read through."""
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


def recall_figures(c, table: str, queries: np.ndarray, users: list) -> dict:
    """The two shapes of memory._recall_recent on `table`, and the cycle's per-session read."""
    per_user, whole, session = [], [], []
    c.execute("SET hnsw.ef_search = 40")
    c.execute("SET hnsw.iterative_scan = relaxed_order")
    for i, q in enumerate(queries):
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
    return {name: {"p50_ms": round(percentile_ms(x, 50), 2), "p95_ms": round(percentile_ms(x, 95), 2)}
            for name, x in (("recall_per_user", per_user), ("recall_whole_table_hnsw", whole),
                            ("session_turns_read", session))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    cl = bench_cluster()
    cl.start(say)
    migrate.upgrade(cl.url())
    res = {"turns": args.turns, "days": DAYS, **prepare(cl, load_template(cl, args.turns), args.turns)}
    rng = np.random.default_rng(7)
    queries = rng.standard_normal((args.queries, 768)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    # a partitioned table has no storage of its own: its partitions are read into the cache
    cold_start(cl, DB, ("memory.day_table", *(p for p, _ in res["partitions"]), "memory.sessions"))
    with psycopg.connect(cl.conninfo(DB), autocommit=True) as c:
        users = [r[0] for r in c.execute("SELECT user_id FROM memory.users ORDER BY user_id")]
        for table in ("memory.day_table", "memory.day_table_p"):  # once each to warm both alike
            recall_figures(c, table, queries[:20], users)
        res["before"] = {t: recall_figures(c, t, queries, users) for t in ("memory.day_table", "memory.day_table_p")}
        say(f"recall before retention: {res['before']}")  # the steps after it can take an hour
        oldest, rows = res["partitions"][0]
        bound = c.execute(f"SELECT max(created_at) FROM {oldest}").fetchone()[0]
        c.execute("DROP TABLE bench_state")  # what follows changes both tables: a re-run starts afresh
        # The quick side first, each figure logged as it comes: the VACUUM can take an hour.
        say("retention: DROP the oldest partition")
        drop_s, drop_wal = timed(c, f"DROP TABLE {oldest}")
        res["after"] = {"memory.day_table_p": recall_figures(c, "memory.day_table_p", queries, users)}
        say(f"DROP took {drop_s:.3f} s; recall after it: {res['after']['memory.day_table_p']}")
        say("retention: DELETE the oldest day from day_table")
        # so that autovacuum does not start the VACUUM timed below while recall is measured
        c.execute("ALTER TABLE memory.day_table SET (autovacuum_enabled = off)")
        delete_s, delete_wal = timed(c, "DELETE FROM memory.day_table WHERE created_at <= %s", (bound,))
        # until (auto)vacuum ends, recall steps over the dead rows' index entries
        res["after"]["memory.day_table, vacuum pending"] = recall_figures(c, "memory.day_table", queries, users)
        say(f"DELETE took {delete_s:.1f} s; recall before VACUUM: {res['after']['memory.day_table, vacuum pending']}")
        say("VACUUM (it repairs the HNSW graph around every deleted row)")
        vacuum_s, vacuum_wal = timed(c, "VACUUM memory.day_table")
        res["after"]["memory.day_table"] = recall_figures(c, "memory.day_table", queries, users)
        say(f"VACUUM took {vacuum_s:.1f} s; recall after it: {res['after']['memory.day_table']}")
        res["retention"] = {
            "delete": {"rows": rows, "delete_s": round(delete_s, 2), "delete_wal_mb": round(delete_wal / 2**20, 1),
                       "vacuum_s": round(vacuum_s, 2), "vacuum_wal_mb": round(vacuum_wal / 2**20, 1)},
            "partitioned": {"rows": rows, "drop_s": round(drop_s, 3), "drop_wal_mb": round(drop_wal / 2**20, 3)}}
    report("night_retention", res)
    r = res["retention"]
    print(f"\nRetention over {args.turns} turns in {DAYS} days (the oldest day, {r['delete']['rows']} turns, goes):")
    print(f"  DELETE {r['delete']['delete_s']} s ({r['delete']['delete_wal_mb']} MB WAL) + VACUUM {r['delete']['vacuum_s']} s "
          f"({r['delete']['vacuum_wal_mb']} MB WAL)  against  DROP partition {r['partitioned']['drop_s']} s "
          f"({r['partitioned']['drop_wal_mb']} MB WAL)")
    print(f"  HNSW build: one index {res['hnsw_build_s_whole']} s, one per day {res['hnsw_build_s_partitioned']} s")
    for when in ("before", "after"):
        for t, figs in res[when].items():
            print(f"  {when:<6} {t:<34} " + ", ".join(f"{k} p50 {v['p50_ms']} ms p95 {v['p95_ms']} ms" for k, v in figs.items()))


if __name__ == "__main__":
    main()
