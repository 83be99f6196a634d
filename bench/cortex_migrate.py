"""Cortex migration throughput and RAPTOR clustering time, through the real worker.

For each size: N blocks (768-d universal shaped like sentence embeddings, 4096-d native,
prose of a typical size) are loaded into memory.holographic_blocks with binary COPY, a
cortex_migrate job is queued per block and one cluster_update after them, and
`psimem worker --once` (in process) drains the queue into a fresh LanceDB directory.
Reports blocks/s for the migration (read from PostgreSQL, compress, merge-insert into
LanceDB, mark, finish, in batches of worker.batch_size), the clustering time, the RAPTOR
levels, and how clustering time grows with N (the exponent between the two sizes).

The Hippocampus HNSW indexes on holographic_blocks are dropped while loading and restored
afterwards: the figures are the worker's, not index maintenance during the bench's load.
Runs on its own throwaway cluster (/var/tmp/psimem-bench-cortex, port 55438).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from psycopg.types.json import Jsonb
from common import Timer, bench_database, embedding_like, report, say

from loaders.worker import Worker

HNSW = ("idx_blocks_universal", "idx_blocks_native")
LIVE = "user: so the trick is to keep the ratio fixed while the base changes, isn't it?\nassistant: exactly, " \
       "and that is why the logarithm turns the product into a sum."


def load_blocks(conn, n: int, seed: int, users: int = 1, cluster: bool = True) -> None:
    """n blocks over users users (round robin), each queued for the Cortex; a cluster_update after them if cluster."""
    conn.execute("DELETE FROM ops.jobs")
    conn.execute("DELETE FROM ops.workers")
    conn.execute("TRUNCATE memory.users CASCADE")
    owners = []
    for u in range(users):
        user = conn.execute("SELECT memory.ensure_user(%s, 'normal')", (f"bench-cortex-{u}",)).fetchone()[0]
        owners.append((user, conn.execute("SELECT memory.start_session(%s, %s)", (user, f"bench-cortex-s{u}")).fetchone()[0]))
    conn.commit()
    universal = embedding_like(n, 768, seed)
    rng = np.random.default_rng(seed + 1)
    t0 = datetime.now(timezone.utc) - timedelta(days=30)
    say(f"loading {n} blocks (binary COPY)")
    with Timer() as t, conn.cursor() as cur:
        with cur.copy("COPY memory.holographic_blocks (block_id, prose, universal_embedding, native_embedding, "
                      "flux_metrics, salience_scores, coherence_gain, ties_merge_weight, session_id, user_id, user_tier, "
                      "arc_start_time, arc_end_time, cycle_date, first_turn, last_turn) "
                      "FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["uuid", "jsonb", "vector", "vector", "jsonb", "jsonb", "float8", "float8", "uuid", "uuid",
                          "text", "timestamptz", "timestamptz", "date", "int4", "int4"])
            for i in range(n):
                at = t0 + timedelta(seconds=20 * i)
                prose = {"anterior_margin": f"user: opening turn {i} of the margin.\nassistant: the turn before the spike {i}.",
                         "live_zones": [{"start": 2, "end": 3, "content": f"{LIVE} ({i})"}],
                         "dead_zone_summaries": [{"start": 4, "end": 5, "summary": "A clarifying exchange about the "
                                                  "notation used earlier. Then some repetition of the same point."}],
                         "posterior_margin": f"user: thanks, that settles it {i}.\nassistant: glad it helped."}
                cp.write_row([uuid.uuid4(), Jsonb(prose), universal[i], rng.standard_normal(4096).astype(np.float32),
                              Jsonb({"peak_perplexity": 40.0, "baseline_perplexity": 12.0, "final_perplexity": 9.0,
                                          "flux_reversal_quality": 155.0, "arc_duration_turns": 5}),
                              Jsonb({"utterance_level": {"P": .8, "C": .7, "ID": .3}, "exchange_level": {"P": .7, "C": .7, "ID": .3},
                                          "theme_level": {"P": .6, "C": .8, "ID": .2}, "composite": .66}),
                              0.4, 0.5, owners[i % users][1], owners[i % users][0], "normal", at,
                              at + timedelta(minutes=10), date.today(), 1, 9])
    conn.execute("INSERT INTO ops.jobs (kind, payload, dedupe_key) SELECT 'cortex_migrate', "
                 "jsonb_build_object('block_id', block_id), 'cortex_migrate:' || block_id FROM memory.holographic_blocks "
                 "ORDER BY arc_start_time")
    if cluster:
        conn.execute("INSERT INTO ops.jobs (kind, payload, dedupe_key) VALUES ('cluster_update', '{}', 'cluster_update:bench')")
    conn.commit()
    say(f"  loaded and queued in {t.seconds:.0f}s")


def run(url: str, n: int, seed: int) -> dict:
    from psimem.connect import connect

    with connect(url) as conn:
        load_blocks(conn, n, seed)
    cortex_dir = tempfile.mkdtemp(prefix="cortex-bench-", dir="/var/tmp")
    try:
        with Timer() as t:
            stats = Worker(url, cortex_uri=cortex_dir, say=say).run(once=True)
        with connect(url) as conn:
            mig = conn.execute("SELECT extract(epoch FROM max(a.finished_at) - min(a.started_at)), count(DISTINCT a.job_id) "
                               "FROM ops.job_attempts a JOIN ops.jobs j USING (job_id) WHERE j.kind = 'cortex_migrate' "
                               "AND a.outcome = 'done'").fetchone()
            cl = conn.execute("SELECT result FROM ops.jobs WHERE kind = 'cluster_update'").fetchone()[0]
            left = conn.execute("SELECT count(*) FROM memory.holographic_blocks WHERE migrated_at IS NULL").fetchone()[0]
        size = sum(f.stat().st_size for f in Path(cortex_dir).rglob("*") if f.is_file())
    finally:
        shutil.rmtree(cortex_dir, ignore_errors=True)
    out = {"blocks": n, "migrated": stats["migrated"], "not_migrated": left, "migration_seconds": float(mig[0]),
           "blocks_per_second": n / float(mig[0]), "cluster_seconds": cl["seconds"],
           "cluster_read_seconds": cl["read_seconds"], "levels": cl["levels"], "noise_leaves": cl["noise_leaves"],
           "worker_seconds_total": t.seconds, "worker_stats": stats, "cortex_bytes": size}
    say(f"  {n} blocks: migration {out['migration_seconds']:.1f}s = {out['blocks_per_second']:.0f} blocks/s; "
        f"clustering {out['cluster_seconds']:.1f}s, levels {out['levels']}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    url = bench_database("/var/tmp/psimem-bench-cortex", 55438)
    from psimem.connect import connect

    with connect(url) as conn:
        defs = [conn.execute("SELECT pg_get_indexdef(%s::regclass)", (f"memory.{i}",)).fetchone()[0] for i in HNSW]
        for i in HNSW:
            conn.execute(f"DROP INDEX memory.{i}")
        conn.commit()
    results = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            results.append(run(url, n, args.seed))
    finally:
        with connect(url) as conn:
            conn.execute("TRUNCATE memory.users CASCADE")
            conn.execute("DELETE FROM ops.jobs")
            for d in defs:
                conn.execute(d)
            conn.commit()
    summary = {"runs": results, "vectors": "synthetic, clustered like sentence embeddings (bench/common.py)"}
    if len(results) >= 2:
        a, b = results[0], results[-1]
        summary["cluster_growth_exponent"] = math.log(b["cluster_seconds"] / a["cluster_seconds"]) / math.log(b["blocks"] / a["blocks"])
        summary["migration_growth_exponent"] = math.log(b["migration_seconds"] / a["migration_seconds"]) / math.log(b["blocks"] / a["blocks"])
    print(json.dumps(summary, indent=2))
    for r in results:
        print(f"{r['blocks']:>7} blocks: migrate {r['blocks_per_second']:7.0f} blocks/s ({r['migration_seconds']:.1f}s), "
              f"RAPTOR {r['cluster_seconds']:.1f}s {r['levels']}, target 100k < 300s: "
              f"{'met' if r['blocks'] < 100000 or r['cluster_seconds'] < 300 else 'NOT met'}")
    if "cluster_growth_exponent" in summary:
        print(f"clustering time grows as N^{summary['cluster_growth_exponent']:.2f}; "
              f"migration as N^{summary['migration_growth_exponent']:.2f}")
    report("cortex_migrate", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
