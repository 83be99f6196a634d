"""The Cortex part of `make demo`, run after the Night Cycle: the worker drains the queue
once, then the demo shows the Cortex tree and a recall that crosses both tiers."""
from __future__ import annotations

import time

from .cortex import LEVELS, Cortex, _quote


def show_tree(cortex: Cortex, summaries: int = 5, names: dict[str, str] | None = None) -> int:
    """Prints the Cortex's size and RAPTOR tree: counts per level, per user with a tree, and the
    summaries of the biggest clusters. Returns the number of branches."""
    n = cortex.count()
    idx = cortex.vector_index()
    print(f"  cortex_blocks: {n} blocks at {cortex.uri}; vector index: "
          f"{idx.index_type if idx else 'none (brute force is exact and fast at this size)'}")
    tbl = cortex.clusters()
    if tbl is None:
        print("  cortex_clusters: no RAPTOR tree yet")
        return 0
    rows = tbl.search().select(["user_id", "level", "level_name", "member_count", "leaf_count", "summary_text",
                                "parent_cluster_id"]).limit(None).to_list()
    counts = {name: 0 for name in LEVELS.values()}
    counts["leaf"] = n
    for r in rows:
        counts[r["level_name"]] += 1
    in_branch = sum(r["member_count"] for r in rows if r["level"] == 1)
    print("  RAPTOR tree (HDBSCAN over PCA-reduced universal embeddings, per user): " +
          ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; {n - in_branch} leaves are noise (no branch)")
    names = names or {}
    for user in sorted({r["user_id"] for r in rows}, key=lambda u: names.get(u, u)):
        mine = [r for r in rows if r["user_id"] == user]
        levels = {name: sum(r["level_name"] == name for r in mine) for name in list(LEVELS.values())[1:]}
        print(f"    user {names.get(user, user)}: {cortex.count(f'user_id = {_quote([user])}')} blocks -> " +
              ", ".join(f"{k} {v}" for k, v in levels.items() if v) +
              f" ({sum(r['member_count'] for r in mine if r['level'] == 1)} blocks in a branch)")
    top = sorted(rows, key=lambda r: (-r["level"], -r["leaf_count"]))[:summaries]
    for r in top:
        print(f"    {r['level_name']:<6} {r['leaf_count']:>4} blocks: {r['summary_text'][:150]!r}")
    return counts["branch"]


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
    names = {str(u): f"{ref.removeprefix('chitchat:')[:8]}… ({tier})" for u, ref, tier in
             conn.execute("SELECT user_id, external_ref, tier FROM memory.users").fetchall()}
    if not show_tree(cortex, names=names):
        biggest = conn.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM memory.holographic_blocks "
                               "WHERE migrated_at IS NOT NULL GROUP BY user_id) x").fetchone()[0] or 0
        print(f"  (no branch: trees are per user, so no summary mixes two people's memories, and the most blocks "
              f"any user has in the Cortex here is {biggest}; on this data HDBSCAN with min_cluster_size 5 "
              f"found branches from about 35 of one user's blocks)")
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
        for n, r in enumerate(recall(conn, cortex, q, v, user_id, session_id, budget=6), 1):
            print(f"    {n}. [{r.tier:<11}] {r.kind:<9} {'+'.join(r.legs):<22} {r.text[:80]!r}")
        conn.rollback()
