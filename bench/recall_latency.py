"""memory.recall at scale: one user with 100k turns of history and 10k blocks.

The user's history is real text (chitchat-dataset messages) with real MiniLM embeddings
(384-d, cached): --raw turns still in day_table (the last days, before retention) and the
rest as their blocks keep them (memory.block_turns: 30% verbatim, the others cut to their
first sentence), 10 turns a block, over the months before. Four other users share the
tables (--others turns each), so every leg has to filter. Queries are other chitchat
messages, with their text and embedding.

Timed through a client round trip, 200 queries after 20 warm-up ones, on a vacuumed and
prewarmed table: memory.recall with text and vector, text only, vector only; and, as the
alternative, the exact answer PostgreSQL gives without recall's indexes and statistics: the
user's turns from both tables ranked by exact cosine distance (a sequential scan).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from common import Timer, bench_database, chitchat_messages, minilm, percentile_ms, report, say, with_connection

from loaders.models import UNIVERSAL_DIM

HOME = Path("/var/tmp/psimem-bench-latency")
PER_BLOCK = 10


def load(conn, content: list[str], vectors: np.ndarray, turns: int, raw: int, others: int) -> None:
    """The big user's history and the other users' turns, straight into the tables (set-based)."""
    conn.execute("TRUNCATE memory.users CASCADE")
    # The kept turns' HNSW index is built once after the load (as a backfill would), not row by row.
    hnsw = conn.execute("SELECT pg_get_indexdef('memory.idx_block_turns_universal'::regclass)").fetchone()[0]
    conn.execute("DROP INDEX memory.idx_block_turns_universal")
    kept = turns - raw
    say(f"loading: {kept} kept turns in {kept // PER_BLOCK} blocks and {raw} raw turns for the big user, "
        f"{others} raw turns for each of 4 others")
    conn.execute("SELECT memory.ensure_user(ref, 'elder') FROM unnest(ARRAY['big', 'o1', 'o2', 'o3', 'o4']) ref")
    conn.execute("CREATE TEMP TABLE src (i int, content text, v vector) ON COMMIT DROP")
    with conn.cursor().copy("COPY src (i, content, v) FROM STDIN WITH (FORMAT binary)") as cp:
        cp.set_types(["int4", "text", "vector"])
        for i, (t, v) in enumerate(zip(content, vectors)):
            cp.write_row((i, t, v))
    conn.execute("ANALYZE src")
    # Blocks: sessions of PER_BLOCK turns a day apart going back from a week ago, one block each.
    conn.execute("""
        INSERT INTO memory.sessions (session_id, user_id, external_ref, started_at, last_turn_at, turn_count, consolidated_turn)
        SELECT gen_random_uuid(), memory.find_user('big'), 'k' || b, now() - interval '7 days' - b * interval '1 hour',
               now() - interval '7 days' - b * interval '1 hour', %(per)s, %(per)s
        FROM generate_series(0, %(kept)s / %(per)s - 1) b""", {"per": PER_BLOCK, "kept": kept})
    conn.execute("""
        INSERT INTO memory.holographic_blocks (prose, universal_embedding, flux_metrics, salience_scores, coherence_gain,
            ties_merge_weight, session_id, user_id, user_tier, arc_start_time, arc_end_time, cycle_date, first_turn,
            last_turn, block_kind)
        SELECT '{"anterior_margin": "", "live_zones": [], "dead_zone_summaries": [], "posterior_margin": ""}',
               l2_normalize(v.mean), '{}', '{}', 0, 0, s.session_id, s.user_id, 'elder', s.started_at, s.started_at,
               s.started_at::date, 1, %(per)s, 'gap'
        FROM memory.sessions s
        JOIN (SELECT x.i / %(per)s AS b, avg(x.v) AS mean FROM src x WHERE x.i < %(kept)s GROUP BY 1) v
          ON v.b = substr(s.external_ref, 2)::int
        WHERE s.external_ref LIKE 'k%%'""", {"per": PER_BLOCK, "kept": kept})
    conn.execute("""
        INSERT INTO memory.block_turns (block_id, turn_number, user_id, session_id, zone_no, role, kept, verbatim,
                                        created_at, universal_embedding)
        SELECT b.block_id, x.i %% %(per)s + 1, b.user_id, b.session_id, 0,
               CASE WHEN x.i %% 2 = 0 THEN 'user' ELSE 'assistant' END,
               CASE WHEN x.i %% 10 < 3 THEN x.content ELSE coalesce(substring(x.content FROM '^(.*?[.!?])\\s'), x.content) END,
               x.i %% 10 < 3, b.arc_start_time + (x.i %% %(per)s) * interval '1 minute', x.v
        FROM memory.holographic_blocks b
        JOIN memory.sessions s USING (session_id)
        JOIN src x ON x.i / %(per)s = substr(s.external_ref, 2)::int
        WHERE x.i < %(kept)s""", {"per": PER_BLOCK, "kept": kept})
    conn.execute("SET maintenance_work_mem = '2GB'")
    conn.execute(hnsw)
    # Raw turns go through the real insert path (trigger, text statistics) in one statement per user.
    for ref, lo, n in [("big", kept, raw)] + [(f"o{k}", turns + (k - 1) * others, others) for k in range(1, 5)]:
        conn.execute("SELECT memory.act_for(memory.find_user(%s))", (ref,))
        sid = conn.execute("SELECT memory.start_session(memory.find_user(%s), %s, now() - interval '6 days')",
                           (ref, f"raw-{ref}")).fetchone()[0]
        conn.execute("""
            INSERT INTO memory.day_table (session_id, role, content, universal_embedding, created_at, turn_number)
            SELECT %s, CASE WHEN x.i %% 2 = 0 THEN 'user' ELSE 'assistant' END, x.content, x.v,
                   now() - interval '6 days' + (x.i - %s) * interval '1 second', x.i - %s + 1
            FROM src x WHERE x.i >= %s AND x.i < %s ORDER BY x.i""", (sid, lo, lo, lo, lo + n))
    # The kept turns were written directly: count their words as the trigger counts turns'.
    conn.execute("""
        INSERT INTO memory.text_stats AS s (user_id, lexeme, turns)
        SELECT b.user_id, l.lexeme, count(*) FROM memory.block_turns b CROSS JOIN LATERAL unnest(b.kept_tsv) l GROUP BY 1, 2
        ON CONFLICT (user_id, lexeme) DO UPDATE SET turns = s.turns + EXCLUDED.turns""")
    conn.execute("""
        INSERT INTO memory.text_totals AS t (user_id, turns, lexemes)
        SELECT b.user_id, count(*), sum(length(b.kept_tsv)) FROM memory.block_turns b GROUP BY 1
        ON CONFLICT (user_id) DO UPDATE SET turns = t.turns + EXCLUDED.turns, lexemes = t.lexemes + EXCLUDED.lexemes""")
    conn.commit()


def settle(conn) -> None:
    conn.autocommit = True
    for t in ("memory.day_table", "memory.block_turns", "memory.holographic_blocks", "memory.text_stats"):
        conn.execute(f"VACUUM (ANALYZE) {t}")
    conn.execute("CHECKPOINT")
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    rels = [r[0] for r in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'memory' AND c.relname IN ('day_table', 'block_turns', 'text_stats', 'text_totals') "
        "UNION ALL SELECT i.indexrelid::regclass::text FROM pg_index i WHERE i.indrelid IN "
        "('memory.day_table'::regclass, 'memory.block_turns'::regclass, 'memory.text_stats'::regclass)")]
    for r in rels:
        conn.execute("SELECT pg_prewarm(%s::regclass)", (r,))
    conn.autocommit = False


def timed(conn, sql: str, params_list: list[tuple]) -> list[float]:
    for p in params_list[:20]:
        conn.execute(sql, p).fetchall()
    out = []
    for p in params_list:
        t = time.perf_counter()
        conn.execute(sql, p).fetchall()
        out.append(time.perf_counter() - t)
    conn.rollback()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=100_000, help="the big user's turns (default 100000)")
    ap.add_argument("--raw", type=int, default=10_000, help="of which still raw in day_table (default 10000)")
    ap.add_argument("--others", type=int, default=5_000, help="raw turns of each of 4 other users (default 5000)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--reuse", action="store_true", help="time the rows a previous run loaded")
    args = ap.parse_args()
    total = args.turns + 4 * args.others
    content = chitchat_messages(total + args.queries)
    vectors = minilm(content)
    url = bench_database(str(HOME), 55438, universal_dim=UNIVERSAL_DIM, native_dim=576)
    with with_connection(url) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        if not args.reuse:
            with Timer() as t:
                load(conn, content[:total], vectors[:total], args.turns, args.raw, args.others)
            say(f"loaded in {t.seconds:.0f}s; vacuum, checkpoint, prewarm")
        settle(conn)
        user = conn.execute("SELECT memory.find_user('big')").fetchone()[0]
        sizes = conn.execute("SELECT (SELECT count(*) FROM memory.day_table WHERE user_id = %s), "
                             "(SELECT count(*) FROM memory.block_turns WHERE user_id = %s), "
                             "(SELECT count(*) FROM memory.holographic_blocks WHERE user_id = %s)",
                             (user, user, user)).fetchone()
        qs = list(zip(content[total:], vectors[total:]))
        results = {"user": {"raw_turns": sizes[0], "kept_turns": sizes[1], "blocks": sizes[2]},
                   "other_users_turns": 4 * args.others, "queries": len(qs), "data": "chitchat-dataset, MiniLM 384-d"}
        runs = {
            "recall text+vector": ("SELECT * FROM memory.recall(%s, %s, %s::real[])", [(user, t, v.tolist()) for t, v in qs]),
            "recall text only": ("SELECT * FROM memory.recall(%s, %s)", [(user, t) for t, _ in qs]),
            "recall vector only": ("SELECT * FROM memory.recall(%s, NULL, %s::real[])", [(user, v.tolist()) for _, v in qs]),
            "exact cosine scan (alternative)": (
                "SELECT * FROM (SELECT session_id, turn_number, universal_embedding <=> %s::vector AS d "
                "FROM memory.day_table WHERE user_id = %s UNION ALL SELECT session_id, turn_number, "
                "universal_embedding <=> %s::vector FROM memory.block_turns WHERE user_id = %s) x ORDER BY d LIMIT 10",
                [(v.tolist(), user, v.tolist(), user) for _, v in qs]),
        }
        for name, (sql, params) in runs.items():
            lat = timed(conn, sql, params)
            results[name] = {"p50_ms": round(percentile_ms(lat, 50), 2), "p95_ms": round(percentile_ms(lat, 95), 2)}
            say(f"{name}: p50 {results[name]['p50_ms']} ms, p95 {results[name]['p95_ms']} ms")
    base = results["exact cosine scan (alternative)"]["p95_ms"]
    print(f"\nmemory.recall for one user with {sizes[0]} raw turns, {sizes[1]} kept turns in {sizes[2]} blocks "
          f"(+ {4 * args.others} turns of 4 other users), {len(qs)} queries, through a client round trip:")
    for name in runs:
        r = results[name]
        print(f"  {name:<34} p50 {r['p50_ms']:>8.2f} ms   p95 {r['p95_ms']:>8.2f} ms   ({base / r['p95_ms']:.1f}x faster "
              "than the exact scan at p95)" if name != "exact cosine scan (alternative)" else
              f"  {name:<34} p50 {r['p50_ms']:>8.2f} ms   p95 {r['p95_ms']:>8.2f} ms")
    report("recall_latency", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
