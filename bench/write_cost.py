"""What one turn costs to write: memory.record_turn before and after revision 0015.

Before (the commit before this change): the session UPDATE the day_table trigger makes for every turn is never
HOT (idx_sessions_user_last_turn indexes last_turn_at and turn_count), day_table carries
two btree indexes no query needs (session_id alone, created_at alone), and the trigger
aggregates the flux.* and limits.* settings for every row. After: the session UPDATE is HOT
(fillfactor 70, no index on what it changes), those indexes are gone, the trigger reads one
row of ops.turn_rules. "Before" is rebuilt in a database of its own from that commit: the
dropped indexes, the trigger as it was, the table's default fillfactor.

Each side, on an empty database with 50 users of 4 sessions each: record_turn called one
turn per transaction (as an agent does), with 768-d universal and 4096-d native embeddings,
round robin over the sessions; then one COPY of 10,000 turns through the same trigger
(loaders.turns). Reported per turn: WAL bytes, latency p50/p95, the share of session
updates that were HOT, and the number of index entries written (day_table's indexes, plus
the session's when its update is not HOT). Sides alternate; each figure is the median.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
from common import percentile_ms, report, say
from night_cycle import REPO, before_procedure, bench_cluster, copy_database, drop_database

from loaders.turns import ingest_rows
from psimem import migrate
from psimem.connect import connect


def revision_0015():
    spec = importlib.util.spec_from_file_location("r0015", REPO / "db/migrations/versions/0015_night_procedure.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_before(url: str) -> None:
    """The write path as it was before revision 0015."""
    trigger = before_procedure("db/triggers/day_table_before_insert.sql")
    with psycopg.connect(url, autocommit=True) as c:
        for name, table, cols in revision_0015().DROPPED:
            c.execute(f"CREATE INDEX {name} ON {table} {cols}")
        c.execute("ALTER TABLE memory.sessions RESET (fillfactor)")
        c.execute(trigger)


def sessions(c, n_users: int = 50, per_user: int = 4) -> list:
    out = []
    for u in range(n_users):
        user = c.execute("SELECT memory.ensure_user(%s, 'normal')", (f"wc-u{u}",)).fetchone()[0]
        out += [c.execute("SELECT memory.start_session(%s, NULL, now())", (user,)).fetchone()[0] for _ in range(per_user)]
    return out


def measure(url: str, turns: int, copy_rows: int, rng: np.random.Generator) -> dict:
    with connect(url, autocommit=True) as c:
        sids = sessions(c)
        # Partial indexes (external_ref) get no entry for these turns.
        indexes, s_indexes = (c.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND indpred IS NULL",
                                        (t,)).fetchone()[0] for t in ("memory.day_table", "memory.sessions"))

        def vec(dim):
            v = rng.standard_normal(dim).astype(np.float32)
            return v / np.linalg.norm(v)

        def one(i):
            c.execute("SELECT memory.record_turn(p_session_id => %s, p_role => 'user', p_content => %s, "
                      "p_universal_embedding => %s, p_native_embedding => %s, p_perplexity_score => %s)",
                      (sids[i % len(sids)], f"turn {i}: some words about the topic", vec(768), vec(4096),
                       float(10 + rng.gamma(2.0, 2.0))))

        for i in range(200):  # warm: every session has a baseline, the indexes have pages
            one(i)
        c.execute("SELECT pg_stat_force_next_flush()")
        upd0, hot0 = c.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                               "WHERE relid = 'memory.sessions'::regclass").fetchone()
        wal0 = c.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        lat = []
        for i in range(200, 200 + turns):
            t0 = time.perf_counter()
            one(i)
            lat.append(time.perf_counter() - t0)
        wal = c.execute("SELECT pg_current_wal_insert_lsn() - %s::pg_lsn", (wal0,)).fetchone()[0]
        c.execute("SELECT pg_stat_force_next_flush()")
        upd1, hot1 = c.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                               "WHERE relid = 'memory.sessions'::regclass").fetchone()
        hot = (hot1 - hot0) / max(1, upd1 - upd0)
        t0 = datetime.now(timezone.utc) - timedelta(hours=1)
        recs = [{"session_id": str(sids[i % len(sids)]), "role": "assistant", "content": f"copied turn {i}",
                 "created_at": (t0 + timedelta(milliseconds=i)).isoformat(), "universal_embedding": vec(768),
                 "perplexity_score": 12.0} for i in range(copy_rows)]
        w1 = c.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        c.autocommit = False
        t1 = time.perf_counter()
        ingest_rows(c, recs)
        c.commit()
        copy_s = time.perf_counter() - t1
        copy_wal = c.execute("SELECT pg_current_wal_insert_lsn() - %s::pg_lsn", (w1,)).fetchone()[0]
    return {"wal_bytes_per_turn": round(float(wal) / turns), "latency_p50_ms": round(percentile_ms(lat, 50), 2),
            "latency_p95_ms": round(percentile_ms(lat, 95), 2), "session_updates_hot": round(hot, 3),
            "index_entries_per_turn": round(indexes + (1 - hot) * s_indexes, 2), "day_table_indexes": indexes,
            "sessions_indexes": s_indexes, "copy_us_per_row": round(copy_s / copy_rows * 1e6, 1),
            "copy_wal_bytes_per_row": round(float(copy_wal) / copy_rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=2000)
    ap.add_argument("--copy-rows", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cl = bench_cluster()
    cl.start(say)
    migrate.upgrade(cl.url())
    runs = {"before": [], "after": []}
    for r in range(args.rounds):
        for side in ("before", "after"):
            db = f"wc_{side}"
            copy_database(cl, cl.dbname, db)
            if side == "before":
                make_before(cl.url(db))
            say(f"round {r + 1}, {side}")
            runs[side].append(measure(cl.url(db), args.turns, args.copy_rows, np.random.default_rng(r)))
            drop_database(cl, db)
    res = {"turns": args.turns, "copy_rows": args.copy_rows, "rounds": args.rounds, "runs": runs,
           "median": {side: {k: float(np.median([x[k] for x in rs])) for k in rs[0]} for side, rs in runs.items()}}
    report("write_cost", res)
    print(f"\nmemory.record_turn, one turn per transaction ({args.turns} turns, 768-d + 4096-d), median of {args.rounds}:")
    for side, m in res["median"].items():
        print(f"  {side:<6} WAL {m['wal_bytes_per_turn']:.0f} B/turn, p50 {m['latency_p50_ms']} ms, p95 {m['latency_p95_ms']} ms, "
              f"session updates HOT {m['session_updates_hot']:.0%}, index entries {m['index_entries_per_turn']}/turn "
              f"(day_table {m['day_table_indexes']:.0f} indexes, sessions {m['sessions_indexes']:.0f}); "
              f"COPY {m['copy_us_per_row']} us/row, {m['copy_wal_bytes_per_row']:.0f} B WAL/row")


if __name__ == "__main__":
    main()
