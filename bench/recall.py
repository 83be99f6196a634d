"""recall_recent: latency and recall@10 against exact search.

--data real: real MiniLM embeddings (384-d) of chitchat-dataset messages (cached in
/var/tmp/psimem-bench-models), universal only, on a cluster installed with 384-d universal
embeddings, measured next to the synthetic embedding-like vectors of the same size in the
same run, unfiltered (the plain HNSW query) and at the 50% and 1% filters: index defaults
are chosen on real vectors.

Loads --rows turns (768-d universal and 4096-d native), then --rows-1m turns (universal
only), with users arranged so the session/user filter keeps 50% of the rows (one large
user) or 1% (fifty small users). For each query it times memory.recall_recent (and
recall_recent_native) through a client round trip, computes recall@10 against exact
cosine search in numpy over the rows the filter keeps, and times the same filtered query
done exactly in PostgreSQL (no vector index) as the alternative.
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta, timezone

import numpy as np
from psycopg.types.json import Jsonb
from common import (Timer, bench_database, chitchat_messages, embedding_like, minilm, orthogonal_clusters,
                    percentile_ms, report, say, with_connection)

from loaders.turns import ingest_rows

# Queries are drawn with the rows (same clusters) from a pool of this size. The rows depend
# on it, so it is fixed: --reuse needs the same rows whatever --queries says.
QUERY_POOL = 200
HNSW = {"universal": "idx_day_table_universal_embedding", "native": "idx_day_table_native_embedding"}
PER_SESSION = 100


def owner(i: int, n: int) -> str:
    """Rows [0, n/2) belong to the large user; the rest to 50 users of n/100 rows each."""
    return "big" if i < n // 2 else f"small{(i - n // 2) // (n // 100)}"


def entry_ids(conn, n: int) -> np.ndarray:
    ids = np.empty(n, dtype=object)
    for eid, ref, turn in conn.execute("SELECT d.entry_id, s.external_ref, d.turn_number FROM memory.day_table d "
                                       "JOIN memory.sessions s USING (session_id)"):
        ids[int(ref[1:]) * PER_SESSION + turn - 1] = eid
    return ids


def load(conn, n: int, spaces: dict[str, np.ndarray]) -> np.ndarray:
    defs = {s: conn.execute("SELECT pg_get_indexdef(%s::regclass)", (f"memory.{HNSW[s]}",)).fetchone()[0]
            for s in HNSW}
    # One transaction from here to the built indexes: an interrupted run leaves the table
    # and its indexes as they were.
    conn.execute("TRUNCATE memory.day_table, memory.sessions, memory.users CASCADE")
    for s in HNSW:
        conn.execute(f"DROP INDEX memory.{HNSW[s]}")
    t0 = datetime.now(timezone.utc) - timedelta(days=6)
    step = timedelta(days=6) / n
    recs = ({"user": owner(i, n), "session": f"s{i // PER_SESSION}", "role": "user",
             "content": f"turn {i}", "created_at": (t0 + i * step).isoformat(),
             "turn_number": i % PER_SESSION + 1,
             **{f"{s}_embedding": v[i] for s, v in spaces.items()}} for i in range(n))
    say(f"loading {n} turns ({', '.join(spaces)})")
    with Timer() as t:
        ingest_rows(conn, list(recs), progress=True)
    say(f"loaded in {t.seconds:.0f}s; building HNSW indexes")
    conn.execute("SET max_parallel_maintenance_workers = 2")
    for s, d in defs.items():
        with Timer() as t:
            conn.execute(d)
        say(f"  {HNSW[s]} built in {t.seconds:.0f}s")
    conn.commit()
    return entry_ids(conn, n)


def settle(conn) -> None:
    """Leave the table as a serving database has it: vacuumed (hint bits and visibility map
    set, which a fresh load's first reads would otherwise write) and checkpointed. Runs timed
    while the checkpointer was still flushing a load gave 11-12 ms p50 for universal recall
    at a 50% filter; the same 200 queries on a settled table, 8.4-8.8 ms."""
    conn.commit()
    conn.autocommit = True
    with Timer() as t:
        conn.execute("VACUUM (ANALYZE) memory.day_table")
        conn.execute("CHECKPOINT")
    conn.autocommit = False
    say(f"vacuumed and checkpointed in {t.seconds:.0f}s")


def prewarm(conn) -> None:
    """Read the HNSW indexes and the vectors into shared buffers, as a serving database has
    them (pg_prewarm's autoprewarm keeps them there across restarts). Without this, the
    first visits to each index page during the timed loop are copies from the OS cache."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    # Indexes last: where shared_buffers cannot hold everything (1M rows), they matter most.
    rels = ["memory.day_table"] + [r[0] for r in conn.execute(
        "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'memory.day_table'::regclass")]
    rels += [r[0] for i in HNSW.values() for r in conn.execute("SELECT to_regclass(%s)::text", (f"memory.{i}",))
             if r[0]]
    with Timer() as t:
        pages = sum(conn.execute("SELECT pg_prewarm(%s::regclass)", (r,)).fetchone()[0] for r in rels)
    conn.commit()
    say(f"prewarmed {pages * 8 // 1024} MB in {t.seconds:.0f}s")


FILTERS = {"all": ("no filter", None), "50": ("filter keeps 50%", lambda j: "big"),
           "1": ("filter keeps 1%", lambda j: f"small{j % 50}")}


def _nearest_sql(conn, space: str, q, k: int, first_session: dict, users: dict, who: str | None) -> list:
    """The query timed: recall_recent for a filter, the plain HNSW query over every row without one."""
    if who is None:
        conn.execute("SELECT set_config('hnsw.ef_search', (SELECT value #>> '{}' FROM ops.settings "
                     "WHERE key = 'recall.ef_search'), true)")
        return conn.execute(f"SELECT entry_id FROM memory.day_table ORDER BY {space}_embedding <=> %s::vector LIMIT %s",
                            (q, k)).fetchall()
    fn = "recall_recent" if space == "universal" else "recall_recent_native"
    return conn.execute(f"SELECT entry_id FROM memory.{fn}(%s, %s, %s, %s)",
                        (q, first_session[who], users[who], k)).fetchall()


def measure(conn, n, ids, space, vectors, queries, k, exact_sql_queries, filters=tuple(FILTERS)) -> dict:
    users = dict(conn.execute("SELECT external_ref, user_id FROM memory.users"))
    first_session = {}
    for ref, sid in conn.execute("SELECT u.external_ref, min(s.session_id::text) FROM memory.sessions s "
                                 "JOIN memory.users u USING (user_id) GROUP BY 1"):
        first_session[ref] = sid
    owners = np.array([owner(i, n) for i in range(n)])
    out = {}
    for label, pick in (FILTERS[f] for f in filters):
        pick = pick or (lambda j: None)
        lat, rec, exact_lat = [], [], []
        for j, q in enumerate(queries[:20]):  # warm the caches: a serving database is warm
            _nearest_sql(conn, space, q, k, first_session, users, pick(j))
        results = []
        for j, q in enumerate(queries):
            t = time.perf_counter()
            results.append(_nearest_sql(conn, space, q, k, first_session, users, pick(j)))
            lat.append(time.perf_counter() - t)
        # Exact answers after the timed loop: a numpy pass over the filtered rows between two
        # queries would flush the CPU caches the next query runs in.
        for j, (q, got) in enumerate(zip(queries, results)):
            mask = np.arange(n) if pick(j) is None else np.flatnonzero(owners == pick(j))
            top = mask[np.argsort(-(vectors[mask] @ q))[:k]]
            rec.append(len({r[0] for r in got} & set(ids[top])) / k)
        # The exact scans come after the timed loop: each reads the whole table and would
        # evict the index from the buffer cache, slowing the next indexed query.
        conn.execute("SET enable_indexscan = off")
        for j, q in enumerate(queries[:exact_sql_queries]):
            who = pick(j)
            t = time.perf_counter()
            conn.execute(f"SELECT entry_id FROM memory.day_table d WHERE %s::uuid IS NULL OR d.session_id = %s OR "
                         f"(d.user_id = %s AND d.created_at > now() - interval '7 days') "
                         f"ORDER BY d.{space}_embedding <=> %s LIMIT %s",
                         (who and first_session[who], who and first_session[who], who and users[who], q, k)).fetchall()
            exact_lat.append(time.perf_counter() - t)
        conn.execute("RESET enable_indexscan")
        conn.rollback()
        out[label] = {"p50_ms": round(percentile_ms(lat, 50), 2), "p95_ms": round(percentile_ms(lat, 95), 2),
                      "recall_at_10": round(float(np.mean(rec)), 4), "min_recall": round(float(np.min(rec)), 2),
                      "exact_sql_p50_ms": round(percentile_ms(exact_lat, 50), 1) if exact_lat else None,
                      "speedup_vs_exact_sql": round(percentile_ms(exact_lat, 50) / percentile_ms(lat, 50), 1)
                      if exact_lat else None}
    return out


def chitchat_minilm(n: int, dim: int, seed: int) -> np.ndarray:
    """Real sentence embeddings: MiniLM (384-d) of the first n distinct chitchat-dataset messages."""
    if dim != 384:
        raise SystemExit(f"--data real: MiniLM embeddings are 384-d, not {dim}-d")
    return minilm(chitchat_messages(n))


GENERATORS = {"embedding-like": embedding_like, "orthogonal": orthogonal_clusters, "real": chitchat_minilm}


def run(url, n, spaces, queries_n, k, exact_n, generator=embedding_like, ef_list=(), reuse=False, warm=True,
        filters=tuple(FILTERS)) -> dict:
    data = {s: generator(n + QUERY_POOL, dim, seed=10 + i) for i, (s, dim) in enumerate(spaces.items())}
    vectors = {s: v[:n] for s, v in data.items()}
    queries = {s: v[n:n + queries_n] for s, v in data.items()}
    with with_connection(url) as conn:
        have = conn.execute("SELECT count(*) FROM memory.day_table").fetchone()[0]
        ids = entry_ids(conn, n) if reuse and have == n else load(conn, n, vectors)
        settle(conn)
        if warm:
            prewarm(conn)
        default_ef = conn.execute("SELECT value FROM ops.settings WHERE key = 'recall.ef_search'").fetchone()[0]
        out = {}
        for s in spaces:
            out[s] = measure(conn, n, ids, s, vectors[s], queries[s], k, exact_n, filters)
            for ef in ef_list:  # the speed/recall trade-off of hnsw.ef_search, same queries
                conn.execute("UPDATE ops.settings SET value = to_jsonb(%s::int) WHERE key = 'recall.ef_search'", (ef,))
                out[f"{s} ef_search={ef}"] = measure(conn, n, ids, s, vectors[s], queries[s], k, 0, filters)
            conn.execute("UPDATE ops.settings SET value = %s::jsonb WHERE key = 'recall.ef_search'", (Jsonb(default_ef),))
            conn.commit()
        return out


def show(title, res):
    print(f"\n{title}")
    print(f"  {'space':<24}{'filter':<18}{'p50 ms':>8}{'p95 ms':>8}{'recall@10':>11}{'exact SQL p50':>15}{'speed-up':>10}")
    for space, by in res.items():
        for label, r in by.items():
            exact = (f"{r['exact_sql_p50_ms']:>13.1f}ms{r['speedup_vs_exact_sql']:>9.1f}x"
                     if r["exact_sql_p50_ms"] is not None else "")
            print(f"  {space:<24}{label:<18}{r['p50_ms']:>8.2f}{r['p95_ms']:>8.2f}{r['recall_at_10']:>11.3f}{exact}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="turns for the universal + native run (0 skips)")
    ap.add_argument("--rows-1m", type=int, default=1_000_000, help="turns for the universal-only run (0 skips)")
    ap.add_argument("--queries", type=int, default=QUERY_POOL, help=f"queries per configuration (at most {QUERY_POOL})")
    ap.add_argument("--exact-queries", type=int, default=10, help="queries also run as exact SQL")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--data", choices=GENERATORS, default="embedding-like",
                    help="vectors with real sentence-embedding statistics, the orthogonal-clusters hard case, or real "
                         "MiniLM embeddings of chitchat-dataset messages next to embedding-like ones of the same size")
    ap.add_argument("--ef-search", default="", help="also measure these hnsw.ef_search values, e.g. 40,64")
    ap.add_argument("--reuse", action="store_true", help="keep the loaded rows if the table holds --rows turns")
    ap.add_argument("--filters", default=None, help="which filters to measure: all (no filter), 50 (one large user), "
                                                    "1 (small users); default 50,1 (all,50,1 with --data real)")
    ap.add_argument("--no-prewarm", action="store_true", help="measure without reading indexes and vectors into shared buffers first")
    args = ap.parse_args()
    if not 1 <= args.queries <= QUERY_POOL:
        ap.error(f"--queries: must be between 1 and {QUERY_POOL}, got {args.queries}")
    efs = [int(x) for x in args.ef_search.split(",") if x]
    filters = tuple(f for f in (args.filters or ("all,50,1" if args.data == "real" else "50,1")).split(",") if f)
    if not filters or set(filters) - set(FILTERS):
        ap.error(f"--filters: give some of {', '.join(FILTERS)}, comma-separated")
    if args.data == "real":
        return real(args, efs, filters)
    url = bench_database()
    gen = GENERATORS[args.data]
    results = {"data": f"synthetic, {args.data}: {gen.__doc__.splitlines()[0]}",
               "targets": "p95 <= 10 ms, recall@10 >= 0.95"}
    if args.rows:
        results[f"{args.rows}_rows"] = run(url, args.rows, {"universal": 768, "native": 4096},
                                           args.queries, args.k, args.exact_queries, gen, efs, args.reuse,
                                           not args.no_prewarm, filters)
        show(f"recall_recent at {args.rows} rows (768-d vector HNSW; 4096-d binary-quantized HNSW + re-rank)",
             results[f"{args.rows}_rows"])
    if args.rows_1m:
        results[f"{args.rows_1m}_rows"] = run(url, args.rows_1m, {"universal": 768}, args.queries, args.k,
                                              args.exact_queries, gen, efs, args.reuse, not args.no_prewarm,
                                              filters)
        show(f"recall_recent at {args.rows_1m} rows (universal)", results[f"{args.rows_1m}_rows"])
    report(f"recall-{args.data}" + ("" if args.rows else "-1m"), results)


def real(args, efs, filters) -> None:
    """Real MiniLM vectors and embedding-like ones of the same size, one after the other on one cluster."""
    n = args.rows or 100_000
    url = bench_database("/var/tmp/psimem-bench-real", 55439, universal_dim=384, native_dim=576)
    results = {"data": "real: MiniLM (384-d) of chitchat-dataset messages, next to synthetic embedding-like 384-d",
               "targets": "p95 <= 10 ms, recall@10 >= 0.95"}
    for name in ("real", "embedding-like"):
        results[name] = run(url, n, {"universal": 384}, args.queries, args.k, args.exact_queries,
                            GENERATORS[name], efs, args.reuse and name == "real", not args.no_prewarm, filters)
        show(f"recall_recent at {n} rows, {name} 384-d vectors (vector HNSW)", results[name])
    report("recall-real", results)


if __name__ == "__main__":
    main()
