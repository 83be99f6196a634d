"""The Cortex part of `make demo`, run after the Night Cycle: the worker drains the queue
once, then the demo shows the Cortex tree and a recall that crosses both tiers."""
from __future__ import annotations

import time

from .cortex import LEVELS, Cortex


def show_tree(cortex: Cortex, summaries: int = 5) -> None:
    n = cortex.count()
    idx = cortex.vector_index()
    print(f"  cortex_blocks: {n} blocks at {cortex.uri}; vector index: "
          f"{idx.index_type if idx else 'none (brute force is exact and fast at this size)'}")
    tbl = cortex.clusters()
    if tbl is None:
        print("  cortex_clusters: no RAPTOR tree yet")
        return
    rows = tbl.search().select(["level", "level_name", "member_count", "leaf_count", "summary_text",
                                "parent_cluster_id"]).limit(None).to_list()
    counts = {name: 0 for name in LEVELS.values()}
    counts["leaf"] = n
    for r in rows:
        counts[r["level_name"]] += 1
    in_branch = sum(r["member_count"] for r in rows if r["level"] == 1)
    print("  RAPTOR tree (HDBSCAN over PCA-reduced universal embeddings, per user): " +
          ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; {n - in_branch} leaves are noise (no branch)")
    top = sorted(rows, key=lambda r: (-r["level"], -r["leaf_count"]))[:summaries]
    for r in top:
        print(f"    {r['level_name']:<6} {r['leaf_count']:>4} blocks: {r['summary_text'][:150]!r}")


def run_after_night_cycle(conn, embedder, queries: list[str]) -> None:
    """Worker once, the tree, and one recall per query for the user with the most Cortex blocks."""
    from psimem.connect import database_url

    from .recall import recall
    from .worker import Worker

    print("\n== The Cortex: psimem worker --once (cortex_migrate, then cluster_update)")
    t0 = time.perf_counter()
    stats = Worker(database_url(), say=lambda m: print(f"  worker: {m}")).run(once=True)
    print(f"  worker done in {time.perf_counter() - t0:.1f}s: {stats}")
    for kind, state, jobs in conn.execute("SELECT kind, state, jobs FROM bi.job_queue ORDER BY 1, 2").fetchall():
        print(f"    {kind:<15} {state:<8} {jobs}")
    row = conn.execute("SELECT sum((result->>'prose_bytes_before')::bigint), sum((result->>'prose_bytes_after')::bigint) "
                       "FROM ops.jobs WHERE kind = 'cortex_migrate' AND state = 'done'").fetchone()
    if row[0]:
        print(f"  prose on the way: {row[0]} -> {row[1]} bytes (dead zones condensed, margins trimmed, live zones verbatim)")
    cortex = Cortex.for_database(conn)
    show_tree(cortex)
    biggest = conn.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM memory.holographic_blocks "
                           "WHERE migrated_at IS NOT NULL GROUP BY user_id) x").fetchone()[0] or 0
    if biggest < 10:
        print(f"  (trees are per user, so no summary mixes two people's memories; HDBSCAN with min_cluster_size 5 "
              f"needs at least 10 of a user's blocks and the most any user has here is {biggest}: "
              f"a longer history grows branches)")
    # the user with most blocks in the Cortex, acting in their newest session (its turns are Hippocampus)
    user = conn.execute(
        "SELECT b.user_id, count(*) FILTER (WHERE b.migrated_at IS NOT NULL), count(*) FILTER (WHERE b.migrated_at IS NULL), "
        "(SELECT s.session_id FROM memory.sessions s WHERE s.user_id = b.user_id ORDER BY s.last_turn_at DESC NULLS LAST LIMIT 1) "
        "FROM memory.holographic_blocks b GROUP BY b.user_id "
        "ORDER BY 2 DESC, 3 DESC LIMIT 1").fetchone()
    conn.commit()
    if user is None:
        return
    user_id, moved, kept, session_id = user
    print(f"\n== Recall across both tiers for the user with most Cortex blocks ({moved} there, {kept} still in the "
          f"Hippocampus), acting in their newest session")
    vecs = embedder.embed(queries, progress=False)
    for q, v in zip(queries, vecs):
        print(f"\n  psimem recall {q!r}")
        for n, r in enumerate(recall(conn, cortex, v, user_id, session_id, k=5, limit=6), 1):
            d = "     " if r.distance is None else f"{r.distance:.3f}"
            text = (r.live_zones[0]["content"] if r.live_zones else r.text).replace("\n", " / ")
            print(f"    {n}. [{r.tier:<11}] {r.kind:<5} d={d} {r.reason[:60]:<60} {text[:70]!r}")
        conn.rollback()
