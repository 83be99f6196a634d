"""Cortex search: LanceDB (no index, IVF_HNSW_SQ, IVF_PQ) against pgvector HNSW, same vectors, same run.

For each size N: N + Q unit vectors (768-d, clustered like sentence embeddings; Q held out
as queries). Exact top-10 by cosine comes from numpy. Each engine answers the Q queries
one at a time (k=10); we report p50/p95 latency and recall@10 against exact, plus the
index build time. LanceDB runs in process (it is an embedded library, as the worker and
`psimem recall` use it); pgvector is timed through a client round trip on localhost.
The choice of cortex.index_type and cortex.index_min_rows rests on these figures.

Runs on its own throwaway cluster (/var/tmp/psimem-bench-cortex, port 55438).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
from common import Timer, bench_database, embedding_like, percentile_ms, report, say

K = 10


def exact_top(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    out = np.empty((len(queries), K), dtype=np.int64)
    for i in range(0, len(queries), 50):
        s = queries[i:i + 50] @ base.T
        out[i:i + 50] = np.argsort(-s, axis=1)[:, :K]
    return out


def recall_at_k(got: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(g[:K]) & set(t)) / K for g, t in zip(got, truth)]))


def timed(queries, fn) -> tuple[list[float], list[list[int]]]:
    lat, res = [], []
    for q in queries[:5]:
        fn(q)  # warm up
    for q in queries:
        t = time.perf_counter()
        res.append(fn(q))
        lat.append(time.perf_counter() - t)
    return lat, res


def summary(name, lat, res, truth, build=None, **extra) -> dict:
    r = {"engine": name, "p50_ms": percentile_ms(lat, 50), "p95_ms": percentile_ms(lat, 95),
         "recall_at_10": recall_at_k(res, truth), "build_seconds": build, **extra}
    say(f"  {name:<34} p50 {r['p50_ms']:7.2f} ms  p95 {r['p95_ms']:7.2f} ms  recall@10 {r['recall_at_10']:.3f}"
        + (f"  build {build:.0f}s" if build is not None else ""))
    return r


def lance_runs(base, queries, truth, brute_queries: int) -> list[dict]:
    import lancedb
    from lancedb.index import HnswSq, IvfPq

    d = tempfile.mkdtemp(prefix="lance-bench-", dir="/var/tmp")
    out = []
    try:
        db = lancedb.connect(d)
        n, dim = base.shape
        tbl = db.create_table("v", schema=pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), dim))]))
        with Timer() as t:
            for i in range(0, n, 100_000):
                chunk = base[i:i + 100_000]
                tbl.add(pa.table({"id": np.arange(i, i + len(chunk)),
                                  "vector": pa.FixedSizeListArray.from_arrays(pa.array(chunk.ravel()), dim)}))
        say(f"  lancedb: {n} rows written in {t.seconds:.1f}s")

        def search(q, **kw):
            qb = tbl.search(q).distance_type("cosine").limit(K).select(["id"])
            for k, v in kw.items():
                qb = getattr(qb, k)(v)
            return qb.to_arrow().column("id").to_pylist()

        b = min(len(queries), brute_queries)  # seconds per query at 1M: a sample is enough
        out.append(summary(f"lancedb brute force (no index, {b} queries)", *timed(queries[:b], search), truth[:b]))
        parts = max(1, n // 100_000)  # as loaders.cortex.index_config builds it
        configs = [("IVF_HNSW_SQ", HnswSq(distance_type="cosine", num_partitions=parts),
                    [{}, {"ef": 100}] + ([{"ef": 100, "nprobes": parts}] if parts > 1 else []))]
        if n <= 200_000:  # measured at 100k (recall 0.73): not a candidate, not rebuilt at 1M
            configs.append(("IVF_PQ", IvfPq(distance_type="cosine", num_partitions=int(np.sqrt(n))),
                            [{}, {"nprobes": 50, "refine_factor": 5}]))
        for name, cfg, tunings in configs:
            with Timer() as t:
                tbl.create_index("vector", config=cfg, replace=True)
            for tune in tunings:
                label = f"lancedb {name}" + (" " + ",".join(f"{k}={v}" for k, v in tune.items()) if tune else " (defaults)")
                out.append(summary(label, *timed(queries, lambda q: search(q, **tune)), truth, build=t.seconds, params=tune))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out


def pgvector_runs(url, base, queries, truth) -> list[dict]:
    from psimem.connect import connect

    out = []
    n, dim = base.shape
    with connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS public.cortex_bench")
        conn.execute(f"CREATE TABLE public.cortex_bench (id int PRIMARY KEY, v vector({dim}))")
        with Timer() as t, conn.cursor() as cur:
            with cur.copy("COPY public.cortex_bench (id, v) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int4", "vector"])
                for i in range(n):
                    cp.write_row([i, base[i]])
        conn.commit()
        say(f"  pgvector: {n} rows copied in {t.seconds:.1f}s; building HNSW (m=16, ef_construction=64)")
        conn.execute("SET maintenance_work_mem = '4GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        with Timer() as t:
            conn.execute("CREATE INDEX ON public.cortex_bench USING hnsw (v vector_cosine_ops)")
            conn.commit()
        build = t.seconds
        conn.execute("ANALYZE public.cortex_bench")
        conn.commit()
        for ef in (40, 100):
            conn.execute(f"SET hnsw.ef_search = {ef}")

            def search(q):
                return [r[0] for r in conn.execute(
                    "SELECT id FROM public.cortex_bench ORDER BY v <=> %s LIMIT 10", (q,))]
            out.append(summary(f"pgvector HNSW ef_search={ef}", *timed(queries, search), truth, build=build))
        conn.execute("DROP TABLE public.cortex_bench")
        conn.commit()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--skip-pgvector", action="store_true")
    ap.add_argument("--brute-force-queries", type=int, default=200,
                    help="queries for LanceDB without an index (each scans every row; at most 20 above 200k rows)")
    args = ap.parse_args()
    url = None if args.skip_pgvector else bench_database("/var/tmp/psimem-bench-cortex", 55438)
    results = {}
    for n in (int(s) for s in args.sizes.split(",")):
        say(f"{n} vectors (768-d) + {args.queries} held-out queries")
        allv = embedding_like(n + args.queries, 768, args.seed)
        base, queries = allv[:n], allv[n:]
        with Timer() as t:
            truth = exact_top(base, queries)
        say(f"  exact top-10 (numpy) in {t.seconds:.1f}s")
        runs = lance_runs(base, queries, truth, args.brute_force_queries if n <= 200_000 else 20)
        if url:
            runs += pgvector_runs(url, base, queries, truth)
        pg = [r for r in runs if r["engine"].startswith("pgvector") and "=40" in r["engine"]]
        for r in runs:
            if pg:
                r["p50_vs_pgvector_ef40"] = r["p50_ms"] / pg[0]["p50_ms"]
        results[n] = runs
    print(json.dumps(results, indent=2))
    for n, runs in results.items():
        print(f"\n{n} blocks, 768-d, k=10:")
        for r in runs:
            ratio = f"  x{r['p50_vs_pgvector_ef40']:.2f} of pgvector ef40 p50" if "p50_vs_pgvector_ef40" in r else ""
            print(f"  {r['engine']:<40} p50 {r['p50_ms']:7.2f} ms  p95 {r['p95_ms']:7.2f} ms  "
                  f"recall@10 {r['recall_at_10']:.3f}{ratio}")
    report("cortex_search", {"results": results,
                             "vectors": "synthetic, clustered like sentence embeddings (bench/common.py)"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
