"""Turn ingest with 768-d + 4096-d embeddings and every index in place.

1. Live ingest, same data into an empty table each time: memory.record_turn (one call
   and one commit per turn, as an agent does), the bulk path (binary COPY through the
   day_table trigger), and a bare binary COPY into an identical table with the same
   indexes but no trigger or checks, the HNSW-insert floor.
2. Loading --load-rows turns into an empty table: with the indexes in place, versus
   loading first and building the HNSW indexes afterwards (parallel maintenance workers).
"""
from __future__ import annotations

import argparse
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
from common import Timer, bench_database, embedding_like, report, reset_day_table, say, with_connection

from loaders.turns import COLUMNS, TYPES, ingest_rows

UDIM, NDIM = 768, 4096
HNSW = ("idx_day_table_universal_embedding", "idx_day_table_native_embedding")


def make_records(n: int, seed: int, users: int = 10, per_session: int = 100) -> list[dict]:
    uni, nat = embedding_like(n, UDIM, seed), embedding_like(n, NDIM, seed + 1)
    ppl = np.random.default_rng(seed).lognormal(2.5, 0.4, n)
    t0 = datetime.now(timezone.utc) - timedelta(days=1)
    return [dict(user=f"bench-u{(i // per_session) % users}", session=f"bench-s{seed}-{i // per_session}",
                 role="user" if i % 2 == 0 else "assistant", content=f"bench turn {i} " + "lorem ipsum " * 8,
                 created_at=(t0 + timedelta(seconds=i)).isoformat(), universal_embedding=uni[i],
                 native_embedding=nat[i], perplexity_score=float(ppl[i]), token_count=18) for i in range(n)]


def run_record_turn(conn, recs) -> float:
    sessions = {}
    for r in recs:  # users and sessions exist before the agent talks
        if r["session"] not in sessions:
            u = conn.execute("SELECT memory.ensure_user(%s)", (r["user"],)).fetchone()[0]
            sessions[r["session"]] = conn.execute("SELECT memory.start_session(%s, %s)", (u, r["session"])).fetchone()[0]
    conn.commit()
    with Timer() as t:
        for r in recs:
            conn.execute("SELECT memory.record_turn(p_session_id => %s, p_role => %s, p_content => %s, "
                         "p_universal_embedding => %s, p_native_embedding => %s, p_perplexity_score => %s, "
                         "p_token_count => %s, p_created_at => %s)",
                         (sessions[r["session"]], r["role"], r["content"], r["universal_embedding"],
                          r["native_embedding"], r["perplexity_score"], r["token_count"], r["created_at"]))
            conn.commit()
    return t.seconds


def run_bulk(conn, recs) -> float:
    with Timer() as t:
        ingest_rows(conn, recs)
    return t.seconds


def run_floor(conn, recs) -> float:
    conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
    conn.execute("CREATE SCHEMA bench")
    conn.execute("CREATE TABLE bench.floor (LIKE memory.day_table INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING INDEXES)")
    conn.commit()
    rows = [(uuid.uuid4(), r["role"], r["content"], r["universal_embedding"], r["native_embedding"],
             r["perplexity_score"], r["token_count"], i + 1, datetime.fromisoformat(r["created_at"]))
            for i, r in enumerate(recs)]
    user = uuid.uuid4()
    with Timer() as t:
        with conn.cursor() as cur, cur.copy(f"COPY bench.floor ({', '.join(COLUMNS)}, user_id) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types([*TYPES, "uuid"])
            for row in rows:
                cp.write_row((*row, user))
        conn.commit()
    conn.execute("DROP SCHEMA bench CASCADE")
    conn.commit()
    return t.seconds


def missing_hnsw(conn) -> list[str]:
    return [i for i in HNSW if conn.execute("SELECT to_regclass(%s)", (f"memory.{i}",)).fetchone()[0] is None]


def live(url: str, n: int) -> dict:
    recs = make_records(n, seed=1)
    out = {}
    with with_connection(url) as conn:
        if missing := missing_hnsw(conn):  # the floor copies day_table's indexes: without HNSW it measures nothing
            raise SystemExit(f"bench database lacks {', '.join(missing)}: run `psimem db migrate` on a fresh "
                             "cluster, or recreate them")
        for name, fn in (("bare_copy_floor", run_floor), ("bulk_copy", run_bulk), ("record_turn", run_record_turn)):
            reset_day_table(conn)
            say(f"live ingest: {name}, {n} turns")
            secs = fn(conn, recs)
            out[name] = {"turns": n, "seconds": round(secs, 2), "turns_per_s": round(n / secs, 1)}
        reset_day_table(conn)
    floor = out["bare_copy_floor"]["turns_per_s"]
    out["ratio_bulk_vs_floor"] = round(out["bulk_copy"]["turns_per_s"] / floor, 3)
    out["ratio_record_turn_vs_floor"] = round(out["record_turn"]["turns_per_s"] / floor, 3)
    return out


def load(url: str, n: int) -> dict:
    recs = make_records(n, seed=2, users=100)
    out = {}
    with with_connection(url) as conn:
        defs = [conn.execute("SELECT pg_get_indexdef(%s::regclass)", (f"memory.{i}",)).fetchone()[0] for i in HNSW]
        reset_day_table(conn)
        say(f"load {n} turns with the HNSW indexes in place")
        out["insert_with_indexes_s"] = round(run_bulk(conn, recs), 1)
        reset_day_table(conn)
        for i in HNSW:
            conn.execute(f"DROP INDEX memory.{i}")
        conn.commit()
        try:
            say(f"load {n} turns, then build the HNSW indexes")
            copy_s = run_bulk(conn, recs)
            conn.execute("SET max_parallel_maintenance_workers = 2")
            build = {}
            for i, d in zip(HNSW, defs):
                with Timer() as t:
                    conn.execute(d)
                    conn.commit()
                build[i] = round(t.seconds, 1)
        finally:  # an interrupted run must not leave the database without its indexes
            conn.rollback()
            reset_day_table(conn)
            for i, d in zip(HNSW, defs):
                if i in missing_hnsw(conn):
                    conn.execute(d)
            conn.commit()
        out["load_then_build"] = {"copy_s": round(copy_s, 1), "index_build_s": build,
                                  "total_s": round(copy_s + sum(build.values()), 1)}
        out["speedup_load_then_build"] = round(out["insert_with_indexes_s"] / out["load_then_build"]["total_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--live-turns", type=int, default=2000, help="turns per method in the live ingest comparison")
    ap.add_argument("--load-rows", type=int, default=100_000, help="turns in the empty-table load comparison (0 skips)")
    args = ap.parse_args()
    url = bench_database()
    results = {"data": "synthetic embedding-like vectors (clustered, low-dimensional spread); 768-d + 4096-d",
               "live": live(url, args.live_turns)}
    lv = results["live"]
    print(f"\nLive ingest, {args.live_turns} turns each, 768-d + 4096-d, all indexes:")
    for k in ("bare_copy_floor", "bulk_copy", "record_turn"):
        print(f"  {k:<16} {lv[k]['turns_per_s']:>8.1f} turns/s")
    print(f"  bulk / floor        = {lv['ratio_bulk_vs_floor']:.2f}   (target >= 0.8)")
    print(f"  record_turn / floor = {lv['ratio_record_turn_vs_floor']:.2f}   (target >= 0.5)")
    if args.load_rows:
        results["load"] = ld = load(url, args.load_rows)
        print(f"\nLoading {args.load_rows} turns into an empty table:")
        print(f"  insert with indexes:    {ld['insert_with_indexes_s']:.1f} s")
        print(f"  load then build:        {ld['load_then_build']['total_s']:.1f} s "
              f"(copy {ld['load_then_build']['copy_s']} s, builds {ld['load_then_build']['index_build_s']})")
        print(f"  speed-up of load-then-build: {ld['speedup_load_then_build']}x")
    report("ingest", results)


if __name__ == "__main__":
    main()
