"""The Core Memory Kernel: kernel.recall latency at 1k, 10k and 100k cards of one user, and
kernel.upsert_card throughput.

Cards are real chat messages (chitchat-dataset, distinct ones of 4 words or more), their
updated_at spread over 180 days; queries are the first 8 words of other messages. Embeddings
are synthetic 768-d vectors with the statistics of real sentence embeddings
(common.embedding_like), unrelated to the text: the vector leg's cost does not depend on
what it finds. For each size the script times, through a client round trip, 200 recalls
text-only and 200 text+vector, the vector leg both as an exact scan and through the HNSW
index, and the same recall done as separate client-side queries merged in Python (full
text, vectors, the candidates with usage, the usage update: four round trips, RRF and MMR
in numpy), same queries, same run. Word statistics (kernel.refresh_text_stats, which the
maintenance job keeps) are counted after each load. Both are timed up to their usage update and rolled back;
the default recall is timed once more committed (the commit's WAL flush included). Users
far smaller than the index get the vector leg timed both ways (where exact search pays).
Then upserts per second against a plain INSERT into the same table, on an empty kernel and
on the 100k-card one.
"""
from __future__ import annotations

import argparse
import math
import re
import time
from datetime import datetime, timedelta, timezone

import numpy as np
from common import Timer, bench_database, embedding_like, percentile_ms, report, say, with_connection

DIM = 768
USER = "bench-kernel"
K, CANDIDATES, RRF_K, LAMBDA, HALF_LIFE_DAYS = 5, 20, 60.0, 0.5, 30.0
DEFAULT_EXACT_BELOW = 5000  # kernel.vector_exact_below as installed


def messages(n: int, seed: int = 7) -> list[str]:
    from chitchat_dataset import Dataset

    seen, out = set(), []
    for conv in Dataset().values():
        for group in conv["messages"]:
            for m in group:
                t = " ".join(m["text"].split())
                key = t.lower().strip(".!?,;: ")
                if len(t.split()) >= 4 and len(t) <= 2000 and key not in seen:
                    seen.add(key)
                    out.append(t)
    np.random.default_rng(seed).shuffle(out)
    if len(out) < n:
        raise SystemExit(f"chitchat-dataset has {len(out)} distinct messages; {n} asked for")
    return out[:n]


def set_setting(conn, key: str, value) -> None:
    conn.execute("UPDATE ops.settings SET value = to_jsonb(%s) WHERE key = %s", (value, key))


def add_cards(conn, user, texts: list[str], vectors: np.ndarray, offset: int, keep_index: bool = False) -> None:
    """Bulk-load cards (the row trigger still computes content keys and tsvectors), their usage
    and embeddings; the HNSW index is dropped first and rebuilt after, as a backfill would
    (unless keep_index: then the rows go into it one by one)."""
    rng = np.random.default_rng(offset)
    now = datetime.now(timezone.utc)
    ages = rng.uniform(0, 180 * 86400, len(texts))
    if not keep_index:
        conn.execute("DROP INDEX IF EXISTS kernel.idx_embedding_hnsw_768")
    with Timer() as t:
        conn.execute("""
            INSERT INTO kernel.card (user_id, summary, tags, source, content_key, ts_config, created_at, updated_at)
            SELECT %s, x.s, ARRAY['chat'], 'msc', '', 'english', %s - make_interval(secs => x.age), %s - make_interval(secs => x.age)
            FROM unnest(%s::text[], %s::float8[]) AS x(s, age)
            ON CONFLICT (user_id, content_key) DO NOTHING""", (user, now, now, texts, ages.tolist()))
        conn.execute("INSERT INTO kernel.usage (mem_id, user_id, used_count, last_used_at) "
                     "SELECT c.id, c.user_id, 0, NULL FROM kernel.card c WHERE c.user_id = %s ON CONFLICT DO NOTHING", (user,))
        ids = dict(conn.execute("SELECT summary, id FROM kernel.card WHERE user_id = %s AND summary = ANY(%s)",
                                (user, texts)).fetchall())
        with conn.cursor().copy("COPY kernel.embedding (user_id, mem_id, provider, model, dim, embedding) "
                                "FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["uuid", "uuid", "text", "text", "int4", "vector"])
            for text, v in zip(texts, vectors):
                if text in ids:
                    cp.write_row((user, ids[text], "bench", "embedding-like", DIM, v))
    conn.commit()
    say(f"  +{len(texts)} cards loaded in {t.seconds:.1f}s")


def settle(conn) -> None:
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM (ANALYZE) kernel.card, kernel.usage, kernel.embedding")
    conn.execute("CHECKPOINT")
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    for rel in conn.execute("SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = 'kernel' AND c.relkind IN ('r', 'i', 't')").fetchall():
        conn.execute("SELECT pg_prewarm(%s::regclass)", (rel[0],))
    conn.autocommit = False


def build_index(conn) -> float:
    set_setting(conn, "kernel.vector_exact_below", 1)
    with Timer() as t:
        built = conn.execute("SELECT dim, action FROM kernel.ensure_vector_indexes()").fetchall()
    conn.commit()
    assert (DIM, "created") in built or (DIM, "exists") in built, built
    return t.seconds


def sql_recall(conn, user, query: str, vec):
    # numpy arrays travel as binary vectors (pgvector's adapter), as a Python client would send them
    return conn.execute("SELECT card_id, legs FROM kernel.recall(%s, %s, %s::vector::real[], %s)",
                        (user, query, vec, K)).fetchall()


def python_recall(conn, user, query: str, vec, hnsw: bool):
    """The same recall as separate client-side queries, merged in Python."""
    # Plain words match any of them, except words common among the user's cards (kernel.text_stats),
    # which match only all together; all-word matches first; websearch syntax matches as written.
    exact_syntax = bool(re.search(r'"|(^|\s)-\S|(^|\s)or(\s|$)', query, re.I))
    text = conn.execute(
        "WITH q AS (SELECT websearch_to_tsquery('english', %(t)s) AS q_all), "
        "terms AS (SELECT t.term, s.lexeme IS NOT NULL AS common FROM q, unnest(string_to_array(q.q_all::text, ' & ')) t(term) "
        "          LEFT JOIN kernel.text_stats s ON s.user_id = %(u)s AND t.term = quote_literal(s.lexeme)), "
        "m AS (SELECT q.q_all, CASE WHEN %(x)s THEN q.q_all ELSE replace(q.q_all::text, ' & ', ' | ')::tsquery END AS q_any, "
        "             CASE WHEN %(x)s OR bool_and(terms.common) THEN q.q_all "
        "                  ELSE (string_agg(terms.term, ' | ') FILTER (WHERE NOT terms.common))::tsquery || q.q_all END AS q_match "
        "      FROM q, terms GROUP BY q.q_all) "
        "SELECT c.id, ts_rank(c.tsv, m.q_any) + (c.tsv @@ m.q_all)::int AS s FROM kernel.card c, m "
        "WHERE c.user_id = %(u)s AND c.rolled_into IS NULL AND c.tsv @@ (SELECT m.q_match FROM m) "
        "ORDER BY s DESC LIMIT %(n)s", {"t": query, "u": user, "n": CANDIDATES, "x": exact_syntax}).fetchall()
    near = []
    if vec is not None:
        if hnsw:
            near = conn.execute(f"SELECT mem_id, 1 - (embedding::vector({DIM}) <=> %s::vector({DIM})) FROM kernel.embedding "
                                f"WHERE dim = {DIM} AND user_id = %s ORDER BY embedding::vector({DIM}) <=> %s::vector({DIM}) "
                                f"LIMIT %s", (vec, user, vec, CANDIDATES)).fetchall()
        else:
            near = conn.execute("SELECT mem_id, 1 - (embedding <=> %s) FROM kernel.embedding WHERE user_id = %s AND dim = %s "
                                "ORDER BY embedding <=> %s LIMIT %s", (vec, user, DIM, vec, CANDIDATES)).fetchall()
    t_rank = ranks([s for _, s in text])
    v_rank = ranks([s for _, s in near])
    ids = list(dict.fromkeys([i for i, _ in text] + [i for i, _ in near]))
    if not ids:
        conn.rollback()
        return []
    rows = conn.execute("SELECT c.id, c.summary, c.updated_at, u.used_count, u.last_used_at, e.embedding "
                        "FROM kernel.card c LEFT JOIN kernel.usage u ON u.mem_id = c.id "
                        "LEFT JOIN kernel.embedding e ON e.mem_id = c.id AND e.dim = %s WHERE c.id = ANY(%s)",
                        (DIM, ids)).fetchall()
    info = {r[0]: r for r in rows}
    now = datetime.now(timezone.utc)
    recency = {i: 0.5 ** (max((now - max(info[i][2], info[i][4] or info[i][2])).total_seconds(), 0) / 86400 / HALF_LIFE_DAYS)
               * (1 + math.log(1 + (info[i][3] or 0))) for i in ids}
    r_rank = dict(zip(ids, ranks([round(recency[i], 2) for i in ids])))
    t_pos = {i: r for (i, _), r in zip(text, t_rank)}
    v_pos = {i: r for (i, _), r in zip(near, v_rank)}
    rrf = {i: (1 / (RRF_K + t_pos[i]) if i in t_pos else 0) + (1 / (RRF_K + v_pos[i]) if i in v_pos else 0)
           + 0.3 / (RRF_K + r_rank[i]) for i in ids}
    order = sorted(ids, key=lambda i: (-rrf[i], str(i)))[:max(4 * K, 20)]
    place = dict(zip(order, ranks([rrf[i] for i in order], dense=True)))
    words = {i: set(info[i][1].lower().split()) for i in order}
    emb = {i: info[i][5].to_numpy() for i in order if info[i][5] is not None} if vec is not None else {}
    chosen, maxsim = [], {i: 0.0 for i in order}
    while order and len(chosen) < K:
        best = max((i for i in order if i not in chosen), key=lambda i: LAMBDA / place[i] - (1 - LAMBDA) * maxsim[i])
        chosen.append(best)
        for i in order:
            if i in emb and best in emb:
                s = float(emb[i] @ emb[best] / (np.linalg.norm(emb[i]) * np.linalg.norm(emb[best])))
            else:
                s = len(words[i] & words[best]) / max(len(words[i] | words[best]), 1)
            maxsim[i] = max(maxsim[i], s)
        if len(chosen) == len(order):
            break
    conn.execute("UPDATE kernel.usage SET used_count = used_count + 1, last_used_at = now() WHERE mem_id = ANY(%s)",
                 (sorted(chosen),))
    conn.rollback()  # as the SQL recall is timed: the call, not the commit's WAL flush
    return chosen


def ranks(scores: list[float], dense: bool = False) -> list[int]:
    """Rank of each score, best first, ties sharing a rank (SQL rank(), or dense_rank())."""
    out, last, r = [], None, 0
    for n, s in enumerate(sorted(range(len(scores)), key=lambda i: -scores[i])):
        if scores[s] != last:
            r, last = (r + 1 if dense else n + 1), scores[s]
        out.append((s, r))
    return [r for _, r in sorted(out)]


def timed(fn, queries, vectors) -> list[float]:
    lat = []
    for q, v in zip(queries, vectors):
        t = time.perf_counter()
        fn(q, v)
        lat.append(time.perf_counter() - t)
    return lat


def figures(lat: list[float]) -> dict:
    return {"p50_ms": round(percentile_ms(lat, 50), 2), "p95_ms": round(percentile_ms(lat, 95), 2)}


def measure_size(conn, user, queries, qvecs, hnsw_built: bool) -> dict:
    out = {}

    def sql(q, v):
        sql_recall(conn, user, q, v)
        conn.rollback()  # the call and its usage bump; the commit's WAL flush is timed once below

    def committed(q, v):
        sql_recall(conn, user, q, v)
        conn.commit()

    conn.autocommit = False
    conn.execute("SET hnsw.iterative_scan = relaxed_order")  # the Python merge's session, set once
    conn.execute("SET hnsw.ef_search = 80")
    none = [None] * len(queries)
    for label, exact_below in (("exact", 1_000_000_000), ("hnsw", 1)):
        if label == "hnsw" and not hnsw_built:
            continue
        set_setting(conn, "kernel.vector_exact_below", exact_below)
        conn.commit()
        timed(sql, queries[:20], qvecs[:20])  # warm
        if label == "exact":
            out["sql text-only"] = figures(timed(sql, queries, none))
            timed(lambda q, v: python_recall(conn, user, q, v, False), queries[:20], none[:20])
            out["python-merge text-only"] = figures(timed(lambda q, v: python_recall(conn, user, q, v, False), queries, none))
        out[f"sql text+vector ({label})"] = figures(timed(sql, queries, qvecs))
        timed(lambda q, v: python_recall(conn, user, q, v, label == "hnsw"), queries[:20], qvecs[:20])
        out[f"python-merge text+vector ({label})"] = figures(
            timed(lambda q, v: python_recall(conn, user, q, v, label == "hnsw"), queries, qvecs))
    set_setting(conn, "kernel.vector_exact_below", DEFAULT_EXACT_BELOW)
    conn.commit()
    out[f"sql text+vector (exact below {DEFAULT_EXACT_BELOW} rows), committed"] = figures(timed(committed, queries, qvecs))
    # The final answers of both methods for the same queries: how much the approximate index changes.
    if hnsw_built:
        tops = {}
        for label, exact_below in (("exact", 1_000_000_000), ("hnsw", 1)):
            set_setting(conn, "kernel.vector_exact_below", exact_below)
            tops[label] = [{r[0] for r in sql_recall(conn, user, q, v)} for q, v in zip(queries[:50], qvecs[:50])]
            conn.rollback()
        out["hnsw top-5 overlap with exact"] = round(float(np.mean(
            [len(a & b) / max(len(a), 1) for a, b in zip(tops["exact"], tops["hnsw"])])), 3)
    for mode in ("text-only", "text+vector (exact)", "text+vector (hnsw)"):
        if f"sql {mode}" in out:
            out[f"python-merge / sql p50 ({mode})"] = round(out[f"python-merge {mode}"]["p50_ms"] / out[f"sql {mode}"]["p50_ms"], 2)
    return out


SMALL = (300, 1000, 3000, 10000)


def small_users(conn, texts: list[str], vectors: np.ndarray, qvecs: list) -> dict:
    """The vector leg of users far smaller than the index: the HNSW index holds every user's
    rows, so a small user's filtered search walks past everyone else's; an exact scan reads only
    theirs. Latency of kernel._nearest (20 nearest) both ways, and how many of the exact answer
    the index finds."""
    out, offset = {}, 0
    for n in SMALL:
        user = conn.execute("SELECT memory.ensure_user(%s)", (f"bench-kernel-small-{n}",)).fetchone()[0]
        conn.commit()
        add_cards(conn, user, texts[offset:offset + n], vectors[offset:offset + n], offset, keep_index=True)
        offset += n
    settle(conn)
    near = "SELECT mem_id FROM kernel._nearest(%s, %s::vector, 20)"
    for n in SMALL:
        user = conn.execute("SELECT user_id FROM memory.users WHERE external_ref = %s", (f"bench-kernel-small-{n}",)).fetchone()[0]
        res, found = {}, {}
        for label, exact_below in (("exact", 1_000_000_000), ("hnsw", 1)):
            set_setting(conn, "kernel.vector_exact_below", exact_below)
            timed(lambda q, v: conn.execute(near, (user, v)).fetchall(), qvecs[:10], qvecs[:10])
            found[label] = [{r[0] for r in conn.execute(near, (user, v))} for v in qvecs[:50]]
            res[label] = figures(timed(lambda q, v: conn.execute(near, (user, v)).fetchall(), qvecs, qvecs))
            conn.rollback()
        res["hnsw recall@20"] = round(float(np.mean([len(a & b) / 20 for a, b in zip(found["exact"], found["hnsw"])])), 3)
        out[n] = res
        print(f"  vector leg of a user with {n} cards beside the big one: exact {res['exact']}, hnsw {res['hnsw']}, "
              f"hnsw recall@20 {res['hnsw recall@20']}")
    return out


def upserts(conn, user, texts: list[str], vectors: np.ndarray, embed: bool) -> dict:
    """kernel.upsert_card, one statement per fact, against a plain INSERT into the same table
    (card and, with embeddings, its embedding in one statement) per fact, on disjoint facts;
    both commit every 100 facts, so that the WAL flush of a commit does not hide the work."""
    # facts new to this user, each once (chat messages repeat, up to case and punctuation)
    keep = {t for (t,) in conn.execute(
        "SELECT DISTINCT ON (kernel._content_key(t)) t FROM unnest(%s::text[]) t WHERE NOT EXISTS "
        "(SELECT 1 FROM kernel.card c WHERE c.user_id = %s AND c.content_key = kernel._content_key(t))", (texts, user))}
    pairs = [(t, v) for t, v in zip(texts, vectors) if t in keep]
    texts, vectors = [t for t, _ in pairs], [v for _, v in pairs]
    half = len(texts) // 2
    conn.commit()
    with Timer() as t_up:
        for n, (text, v) in enumerate(zip(texts[:half], vectors[:half]), 1):
            conn.execute("SELECT kernel.upsert_card(%s, %s, p_embedding => %s::vector::real[], p_provider => %s, "
                         "p_model => %s)", (user, text, v if embed else None, "bench" if embed else None,
                          "embedding-like" if embed else None))
            if n % 100 == 0:
                conn.commit()
        conn.commit()
    plain = ("WITH c AS (INSERT INTO kernel.card (user_id, summary, source, content_key, ts_config) "
             "VALUES (%s, %s, 'msc', '', 'english') RETURNING id, user_id) ")
    with Timer() as t_plain:
        for n, (text, v) in enumerate(zip(texts[half:], vectors[half:]), 1):
            if embed:
                conn.execute(plain + "INSERT INTO kernel.embedding (user_id, mem_id, provider, model, dim, embedding) "
                             "SELECT c.user_id, c.id, 'bench', 'embedding-like', %s, %s FROM c", (user, text, DIM, v))
            else:
                conn.execute(plain + "SELECT 1", (user, text))
            if n % 100 == 0:
                conn.commit()
        conn.commit()
    up, pl = half / t_up.seconds, (len(texts) - half) / t_plain.seconds
    return {"upserts_per_s": round(up), "plain_inserts_per_s": round(pl), "plain / upsert": round(pl / up, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000", help="card counts of the one user, ascending")
    ap.add_argument("--queries", type=int, default=200, help="recalls timed per configuration")
    ap.add_argument("--upserts", type=int, default=2000, help="facts written per throughput figure (half upsert, half plain)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if not sizes or sizes != sorted(sizes) or sizes[0] < 1:
        ap.error("--sizes: give ascending whole numbers, e.g. 1000,10000,100000")
    url = bench_database("/var/tmp/psimem-bench-kernel", 55447)
    need = sizes[-1] + args.queries + 3 * args.upserts + sum(SMALL)
    say(f"reading {need} distinct messages from chitchat-dataset")
    texts = messages(need)
    cards, queries = texts[:sizes[-1]], [" ".join(t.split()[:8]) for t in texts[sizes[-1]:sizes[-1] + args.queries]]
    spare = texts[sizes[-1] + args.queries:]
    # one draw for cards, queries, upserts and the small users: the same clusters throughout
    vectors = embedding_like(sizes[-1] + args.queries + 3 * args.upserts + sum(SMALL), DIM, seed=11)
    qvecs = list(vectors[sizes[-1]:sizes[-1] + args.queries])
    up = sizes[-1] + args.queries  # the upserts' vectors start here
    results = {"data": "cards: distinct chitchat-dataset messages; queries: other messages' first 8 words; "
                       "768-d embedding-like vectors, unrelated to the text", "k": K, "sizes": {}}
    with with_connection(url) as conn:
        # The maintenance job would prune, compress and re-count these users at whatever minute
        # it fires during the run: parked until the end.
        schedule = conn.execute("SELECT value #>> '{}' FROM ops.settings WHERE key = 'cron.kernel_maintenance'").fetchone()[0]
        conn.execute("SELECT ops.set_schedule('kernel_maintenance', '0 0 30 2 *')")
        conn.commit()
        try:
            run_all(conn, args, sizes, cards, queries, qvecs, spare, vectors, up, results)
        finally:
            conn.rollback()
            conn.execute("SELECT ops.set_schedule('kernel_maintenance', %s)", (schedule,))
            conn.commit()
    report("kernel", results)
    print()
    for key, value in results.items():
        if key.startswith("upsert"):
            print(f"{key}: {value}")


def run_all(conn, args, sizes, cards, queries, qvecs, spare, vectors, up, results) -> None:
    """Upserts on empty kernels, recall at each size, small users, upserts into the big kernel."""
    conn.execute("DELETE FROM memory.users WHERE external_ref LIKE 'bench-kernel%'")
    conn.execute("DROP INDEX IF EXISTS kernel.idx_embedding_hnsw_768")
    user = conn.execute("SELECT memory.ensure_user(%s)", (USER,)).fetchone()[0]
    settle(conn)  # a previous run's rows are gone, and the planner knows it
    results["upsert, empty kernel, with 768-d embedding"] = upserts(
        conn, conn.execute("SELECT memory.ensure_user('bench-kernel-up1')").fetchone()[0], spare[:args.upserts],
        vectors[up:up + args.upserts], True)
    results["upsert, empty kernel, text only"] = upserts(
        conn, conn.execute("SELECT memory.ensure_user('bench-kernel-up2')").fetchone()[0], spare[args.upserts:2 * args.upserts],
        vectors[up + args.upserts:up + 2 * args.upserts], False)
    say(f"upserts: {results['upsert, empty kernel, with 768-d embedding']}, {results['upsert, empty kernel, text only']}")
    loaded = 0
    for size in sizes:
        add_cards(conn, user, cards[loaded:size], vectors[loaded:size], loaded)
        loaded = size
        build_s = build_index(conn)
        with Timer() as t_stats:  # what the maintenance job does daily
            common = conn.execute("SELECT kernel.refresh_text_stats(%s)", (user,)).fetchone()[0]
        conn.commit()
        settle(conn)
        say(f"{size} cards: HNSW index built in {build_s:.1f}s, {common} common words counted in "
            f"{t_stats.seconds:.1f}s; timing recalls")
        res = measure_size(conn, user, queries, qvecs, True)
        res["hnsw_build_s"] = round(build_s, 1)
        res["text_stats"] = {"common_words": common, "seconds": round(t_stats.seconds, 2)}
        results["sizes"][size] = res
        show(size, res)
    results["small users next to the big one"] = small_users(conn, spare[3 * args.upserts:], vectors[-sum(SMALL):], qvecs)
    set_setting(conn, "kernel.vector_exact_below", DEFAULT_EXACT_BELOW)
    conn.commit()
    results[f"upsert into the {sizes[-1]}-card kernel, with 768-d embedding"] = upserts(
        conn, user, spare[2 * args.upserts:3 * args.upserts], vectors[up + 2 * args.upserts:up + 3 * args.upserts], True)
    say(f"upserts into the {sizes[-1]}-card kernel: {results[f'upsert into the {sizes[-1]}-card kernel, with 768-d embedding']}")
    conn.execute("DELETE FROM memory.users WHERE external_ref LIKE 'bench-kernel%'")
    conn.commit()


def show(size: int, res: dict) -> None:
    print(f"\nkernel.recall, {size} cards of one user, k={K} (ms)")
    for key, value in res.items():
        if isinstance(value, dict) and "p50_ms" in value:
            print(f"  {key:<52} p50 {value['p50_ms']:>7.2f}   p95 {value['p95_ms']:>7.2f}")
        else:
            print(f"  {key:<52} {value}")


if __name__ == "__main__":
    main()
