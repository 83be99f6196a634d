"""Night Cycle throughput: turns consolidated per second at 10k, 100k and 1M turns.

Conversations of 100 turns per session (10 sessions per user) with synthetic perplexity
arcs (a spike, a fall, two stable turns, every ~30 turns) and embedding-like 768-d
universal vectors; native vectors are left out (NULL) to keep the 1M load in budget.
The day table's HNSW indexes are dropped while loading (the cycle does not use them).
For each size it times memory.run_night_cycle(), reports the time per stage from
ops.cycle_stage_log, and runs the same stage-1 flux detection in Python over rows
fetched from the database (the turns grouped by the flux window the day_table trigger
marked, arcs written back with COPY), same data, same run, against the database's
stages 0 and 1 (which also pick and lock sessions and link continuations).
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta, timezone

import numpy as np
from common import Timer, bench_database, embedding_like, report, say, with_connection

from loaders.turns import ingest_rows

PER_SESSION, SESSIONS_PER_USER = 100, 10
HNSW = ("idx_day_table_universal_embedding", "idx_day_table_native_embedding")


def perplexities(rng: np.random.Generator, n: int) -> np.ndarray:
    base = rng.uniform(15, 30)
    p = base * np.exp(0.05 * rng.standard_normal(n))
    i = int(rng.integers(8, 20))
    while i + 6 < n:
        p[i:i + 5] = base * np.array([3.0, 2.0, 1.3, 1.05, 1.04])
        i += int(rng.integers(25, 35))
    return p


def records(n: int, seed: int):
    rng = np.random.default_rng(seed)
    uni = embedding_like(n, 768, seed, sequential=True)
    t0 = datetime.now(timezone.utc) - timedelta(hours=20)
    sessions = n // PER_SESSION
    for s in range(sessions):
        ppl = perplexities(rng, PER_SESSION)
        start = t0 + timedelta(seconds=s * 72000 / sessions)  # all within the last 20 hours
        for t in range(PER_SESSION):
            i = s * PER_SESSION + t
            yield {"user": f"nb-u{s // SESSIONS_PER_USER}", "session": f"nb-s{s}", "role": "user" if t % 2 == 0 else "assistant",
                   "content": f"turn {t} of session {s}. Some words about the topic at hand.",
                   "created_at": (start + timedelta(seconds=t)).isoformat(), "turn_number": t + 1,
                   "universal_embedding": uni[i], "perplexity_score": float(ppl[t])}


def load(conn, n: int) -> None:
    conn.execute("TRUNCATE memory.users, memory.sessions, memory.day_table, ops.jobs, ops.cycle_runs, "
                 "ops.cleanup_log, procedural.maintenance_runs CASCADE")
    for i in HNSW:
        conn.execute(f"DROP INDEX IF EXISTS memory.{i}")
    conn.commit()
    say(f"loading {n} turns")
    ingest_rows(conn, list(records(n, seed=n)), progress=True)
    conn.execute("ANALYZE memory.day_table")
    conn.commit()


def python_stage1(conn, closing: int = 5) -> tuple[float, int]:
    """Stage 1 done client-side from the same trigger output the database groups: fetch
    the turns, group each flux window's turns into an arc, write the arcs back."""
    t0 = time.perf_counter()
    arcs = []
    with conn.cursor(name="turns") as cur:
        cur.itersize = 20000
        cur.execute("SELECT d.session_id, d.turn_number, d.perplexity_score, d.flux_state, d.flux_arc_start, "
                    "d.flux_baseline_mean, d.flux_baseline_sd, d.created_at FROM memory.day_table d "
                    "JOIN memory.sessions s USING (session_id) "  # the sessions the cycle takes: idle ones
                    "WHERE s.last_turn_at <= now() - (SELECT (value #>> '{}')::interval FROM ops.settings "
                    "WHERE key = 'night.session_idle') ORDER BY d.session_id, d.turn_number")
        arc = None
        for sid, turn, p, state, start, mean, sd, at in cur:
            if start is None:
                continue
            if arc is None or arc["session"] != sid or arc["start"] != start:
                arc = {"session": sid, "start": start, "peak_turn": turn, "peak": p, "baseline": mean, "sigma": sd,
                       "resolved": False, "start_time": at}
                arcs.append(arc)
            if p > arc["peak"]:
                arc.update(peak=p, peak_turn=turn)
            arc.update(end=turn, final=p, end_time=at, resolved=state == "stable")
    conn.commit()
    open_sessions = [a["session"] for a in arcs if not a["resolved"]]
    emb = {}
    if open_sessions:
        for sid, v in conn.execute(
                "SELECT s, l2_normalize(avg(e)) FROM (SELECT d.session_id s, d.universal_embedding e, row_number() OVER "
                "(PARTITION BY d.session_id ORDER BY d.turn_number DESC) r FROM memory.day_table d "
                "WHERE d.session_id = ANY(%s)) x WHERE r <= %s GROUP BY s", (open_sessions, closing)):
            emb[sid] = v
    conn.execute("CREATE TEMP TABLE py_arcs (session_id uuid, start_turn int, peak_turn int, end_turn int, resolved bool, "
                 "baseline float8, sigma float8, peak float8, final float8, quality float8, duration int, start_time timestamptz, "
                 "end_time timestamptz, open_arc_embedding vector)")
    with conn.cursor() as cur, cur.copy("COPY py_arcs FROM STDIN") as cp:
        for a in arcs:
            d = a["end"] - a["start"] + 1
            cp.write_row((a["session"], a["start"], a["peak_turn"], a["end"], a["resolved"], a["baseline"], a["sigma"], a["peak"],
                          a["final"], (a["peak"] - a["final"]) * d, d, a["start_time"], a["end_time"], emb.get(a["session"])))
    conn.execute("DROP TABLE py_arcs")
    conn.commit()
    return time.perf_counter() - t0, len(arcs)


def one_size(url: str, n: int) -> dict:
    with with_connection(url) as conn:
        load(conn, n)
        say(f"stage 1 in Python over {n} fetched turns")
        py_s, py_arcs = python_stage1(conn)
        say(f"memory.run_night_cycle() over {n} turns")
        with Timer() as t:
            run_id = conn.execute("SELECT memory.run_night_cycle()").fetchone()[0]
            conn.commit()
        stages = {f"{s} {name}": round(float(ms) / 1000, 2) for s, name, ms in conn.execute(
            "SELECT stage, stage_name, duration_ms FROM bi.cycle_stages WHERE run_id = %s ORDER BY stage", (run_id,))}
        arcs, blocks = conn.execute("SELECT (SELECT count(*) FROM memory.flux_arcs), "
                                    "(SELECT count(*) FROM memory.holographic_blocks)").fetchone()
        failed = conn.execute("SELECT users_failed FROM ops.cycle_runs WHERE run_id = %s", (run_id,)).fetchone()[0]
    stage1 = stages["0 select sessions"] + stages["1 flux detection"]
    return {"turns": n, "seconds": round(t.seconds, 2), "turns_per_s": round(n / t.seconds), "arcs": arcs,
            "blocks": blocks, "users_failed": failed, "stage_seconds": stages,
            "python_stage1_seconds": round(py_s, 2), "python_stage1_arcs": py_arcs,
            "ratio_python_vs_sql_stage1": round(py_s / stage1, 2) if stage1 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated turn counts")
    args = ap.parse_args()
    url = bench_database()
    sizes = [int(x) for x in args.sizes.split(",")]
    with with_connection(url) as conn:
        defs = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'memory' "
                                           "AND indexname = ANY(%s)", (list(HNSW),))]
    res = {"data": "synthetic perplexity arcs, 768-d embedding-like universal vectors (runs of 10 turns on one topic), no native vectors",
           "runs": [one_size(url, n) for n in sizes]}
    with with_connection(url) as conn:  # leave the schema as it was
        conn.execute("TRUNCATE memory.users CASCADE")
        for d in defs:
            conn.execute(d)
    if len(sizes) > 1:
        xs, ys = np.log([r["turns"] for r in res["runs"]]), np.log([r["seconds"] for r in res["runs"]])
        res["cost_exponent"] = round(float(np.polyfit(xs, ys, 1)[0]), 3)
    print("\nNight Cycle (memory.run_night_cycle), 100 turns per session:")
    for r in res["runs"]:
        print(f"  {r['turns']:>8} turns: {r['seconds']:>8.1f} s  {r['turns_per_s']:>7} turns/s  {r['arcs']} arcs, "
              f"{r['blocks']} blocks, {r['users_failed']} users failed")
        print("           per stage (s): " + ", ".join(f"{k} {v}" for k, v in r["stage_seconds"].items()))
        print(f"           stage 1 in Python over fetched rows: {r['python_stage1_seconds']} s "
              f"({r['python_stage1_arcs']} arcs) = {r['ratio_python_vs_sql_stage1']}x the in-database stages 0+1")
    if "cost_exponent" in res:
        print(f"  time ~ turns^{res['cost_exponent']} (1.0 is linear); target: 1M turns in under 600 s")
    report("night_cycle", res)


if __name__ == "__main__":
    main()
