"""RAPTOR-style hierarchical clustering of the Cortex (spec 004 section 5.4).

The spec asks for HDBSCAN; the RAPTOR paper used UMAP and Gaussian mixtures. psimem
reduces the universal embeddings with PCA (raptor.reduce_dims) and clusters them with
HDBSCAN (min_cluster_size 5, min_samples 2, leaf cluster selection so the bottom level
keeps fine themes), then clusters the cluster centroids the same way, level by level:
0 leaf (the blocks themselves), 1 branch, 2 trunk, 3 canopy. HDBSCAN's noise points stay
where they are: a noise block is a leaf with no branch, a noise branch has no trunk.

Each cluster node has a centroid (mean of its leaves' embeddings, normalised), an
extractive summary_text (the text of the raptor.summary_members members nearest the
centroid) with its summary_embedding (the mean of those members' embeddings), its
member ids (blocks for a branch, clusters below it otherwise), member and leaf counts
and its parent. Trees are built per user, so no summary mixes two users' memories.

A night re-clusters only the users whose Cortex changed. cortex_trees keeps, per user, a
fingerprint of what their tree was built from (block ids, each block's write time, the
clustering parameters); cluster_cortex scans just the block_id, user_id and migrated_at
columns, rebuilds the users whose fingerprint differs (new, replaced or removed blocks;
changed raptor.* settings), and replaces exactly their nodes in one LanceDB commit
(Cortex.replace_trees). A rebuilt tree keeps the id (and created_at) of every cluster
whose members are the same as before at the same level: a branch over the same blocks, a
trunk over the same kept branches, and so on up, so references to clusters that did not
change stay valid. full=True rebuilds every user's tree (same ids where members agree).

Summaries are extractive behind a hook: pass summarise= to build_tree to replace them.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from .cortex import LEVELS, Cortex, _quote, fingerprint


@dataclass(frozen=True)
class RaptorParams:
    min_cluster_size: int = 5
    min_samples: int = 2
    reduce_dims: int = 16
    max_level: int = 3
    summary_members: int = 3

    @classmethod
    def from_settings(cls, s: dict) -> "RaptorParams":
        return cls(**{k: int(s[f"raptor.{k}"]) for k in cls.__dataclass_fields__ if f"raptor.{k}" in s})


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n == 0, 1, n)


def reduce(x: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """PCA to at most dims components (randomized SVD for large inputs)."""
    dims = min(dims, x.shape[0] - 1, x.shape[1])
    if dims < 1 or dims >= x.shape[1]:
        return x
    from sklearn.decomposition import PCA

    solver = "randomized" if x.shape[0] > 2000 else "full"
    return PCA(n_components=dims, svd_solver=solver, random_state=seed).fit_transform(x).astype(np.float64)


def cluster_labels(x: np.ndarray, p: RaptorParams) -> np.ndarray:
    """HDBSCAN labels over the reduced vectors; -1 is noise. Too few points for two clusters: all noise."""
    n = x.shape[0]
    if n < 2 * p.min_cluster_size:
        return np.full(n, -1)
    import hdbscan

    z = reduce(_normalise(x.astype(np.float64)), p.reduce_dims)
    return hdbscan.HDBSCAN(min_cluster_size=p.min_cluster_size, min_samples=p.min_samples,
                           cluster_selection_method="leaf", core_dist_n_jobs=1).fit_predict(z)


def default_summarise(texts: list[str]) -> str:
    return " … ".join(t for t in texts if t)


def block_text(row: dict, limit: int = 200) -> str:
    """The sentence that stands for a block in cluster summaries: its first live zone, else its first dead-zone summary."""
    for z in row.get("live_zones") or []:
        if z.get("content"):
            return " ".join(z["content"].split())[:limit]
    for z in row.get("dead_zone_summaries") or []:
        if z.get("summary"):
            return " ".join(z["summary"].split())[:limit]
    return " ".join((row.get("anterior_margin") or "").split())[:limit]


def build_tree(ids: list[str], vectors: np.ndarray, texts: list[str], p: RaptorParams, user_id: str | None = None,
               tree_id: str | None = None, summarise: Callable[[list[str]], str] = default_summarise,
               previous: list[dict] = ()) -> list[dict]:
    """The cluster nodes (levels 1..max_level) over one set of blocks. A node whose level and
    member ids equal those of a node in previous (the user's last tree) takes that node's id
    and created_at; since members above level 1 are node ids, this carries up the levels."""
    tree_id = tree_id or str(uuid.uuid4())
    before = {(r["level"], frozenset(r["member_ids"])): r for r in previous}
    now = datetime.now(timezone.utc)
    node_ids, x, node_texts = list(ids), np.asarray(vectors, dtype=np.float32), list(texts)
    weights = np.ones(len(node_ids))
    rows: list[dict] = []
    by_id: dict[str, dict] = {}
    for level in range(1, p.max_level + 1):
        labels = cluster_labels(x, p)
        clusters = sorted(set(labels.tolist()) - {-1})
        if not clusters:
            break
        nxt_ids, nxt_x, nxt_texts, nxt_w = [], [], [], []
        for c in clusters:
            idx = np.flatnonzero(labels == c)
            w = weights[idx]
            centroid = _normalise((x[idx] * w[:, None]).sum(axis=0))
            near = idx[np.argsort(-(x[idx] @ centroid))[:p.summary_members]]
            members = [node_ids[i] for i in idx]
            old = before.get((level, frozenset(members)))
            cid = old["cluster_id"] if old else str(uuid.uuid4())
            row = {"cluster_id": cid, "tree_id": tree_id, "user_id": user_id, "level": level,
                   "level_name": LEVELS[level], "parent_cluster_id": None,
                   "centroid_embedding": centroid.astype(np.float32),
                   "summary_embedding": _normalise(x[near].mean(axis=0)).astype(np.float32),
                   "summary_text": summarise([node_texts[i] for i in near]),
                   "member_count": int(idx.size), "member_ids": members,
                   "leaf_count": int(w.sum()), "created_at": old["created_at"] if old else now}
            for i in idx:
                if node_ids[i] in by_id:
                    by_id[node_ids[i]]["parent_cluster_id"] = cid
            rows.append(row)
            by_id[cid] = row
            nxt_ids.append(cid), nxt_x.append(row["centroid_embedding"]), nxt_texts.append(node_texts[near[0]])
            nxt_w.append(w.sum())
        node_ids, x, node_texts, weights = nxt_ids, np.stack(nxt_x), nxt_texts, np.asarray(nxt_w)
    return rows


def _params_key(p: RaptorParams, summarise) -> str:
    return repr(sorted(asdict(p).items())) + getattr(summarise, "__qualname__", repr(summarise))


def _vectors(data, udim: int) -> np.ndarray:
    n = data.num_rows
    if not n:
        return np.zeros((0, udim), np.float32)
    return data.column("universal_embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(n, udim)


def cluster_cortex(cortex: Cortex, p: RaptorParams, summarise=default_summarise, full: bool = False) -> dict:
    """Re-clusters the users whose Cortex changed since their tree was built (every user with
    full) and replaces their trees in one commit. Says what it scanned, rebuilt and kept."""
    t0 = time.perf_counter()
    tbl = cortex.blocks()
    if tbl is None:
        return {"blocks": 0, "users": 0, "users_reclustered": 0, "levels": {}, "seconds": 0.0}
    keys = tbl.search().select(["block_id", "user_id", "migrated_at"]).limit(None).to_arrow()
    written: dict[str, list] = {}
    for bid, user, at in zip(*(keys.column(c).to_pylist() for c in ("block_id", "user_id", "migrated_at"))):
        if user is not None:  # every block the worker or an import writes has its user
            written.setdefault(user, []).append((bid, at and at.isoformat()))
    params = _params_key(p, summarise)
    prints = {u: fingerprint(pairs, params) for u, pairs in written.items()}
    old = cortex.trees()
    changed = sorted(u for u in prints if full or old.get(u, {}).get("fingerprint") != prints[u])
    gone = sorted(set(old) - set(prints))
    t_scan = time.perf_counter() - t0

    cols = ["block_id", "user_id", "universal_embedding", "live_zones", "dead_zone_summaries", "anterior_margin"]
    q = tbl.search().select(cols).limit(None)
    if changed and len(changed) < len(prints):  # the user_id index finds the changed users' blocks
        q = q.where(f"user_id IN ({_quote(changed)})")
    data = q.to_arrow() if changed else None
    previous: dict[str, list[dict]] = {}
    for r in cortex.user_clusters(changed + gone):
        previous.setdefault(r["user_id"], []).append(r)
    t_read = time.perf_counter() - t0 - t_scan

    rows, trees, kept, now = [], [], 0, datetime.now(timezone.utc)
    if data is not None and data.num_rows:
        users = data.column("user_id").to_pylist()
        ids = data.column("block_id").to_pylist()
        vectors = _vectors(data, cortex.udim)
        text_cols = {c: data.column(c).to_pylist() for c in ("live_zones", "dead_zone_summaries", "anterior_margin")}
        by_user: dict[str, list[int]] = {}
        for i, u in enumerate(users):
            by_user.setdefault(u, []).append(i)
        for u in changed:
            sel = by_user.get(u, [])
            tree_id = str(uuid.uuid4())
            nodes = build_tree([ids[i] for i in sel], vectors[sel], [block_text({c: text_cols[c][i] for c in text_cols})
                                                                    for i in sel], p, user_id=u, tree_id=tree_id,
                               summarise=summarise, previous=previous.get(u, []))
            was = {r["cluster_id"] for r in previous.get(u, [])}
            kept += sum(n["cluster_id"] in was for n in nodes)
            rows += nodes
            trees.append({"user_id": u, "tree_id": tree_id, "fingerprint": prints[u], "blocks": len(sel),
                          "clusters": len(nodes), "built_at": now})
    t_cluster = time.perf_counter() - t0 - t_scan - t_read
    version = cortex.replace_trees(changed + gone, rows, trees)
    t_write = time.perf_counter() - t0 - t_scan - t_read - t_cluster

    levels = {LEVELS[0]: keys.num_rows}
    in_branch = 0
    if (ct := cortex.clusters()) is not None:
        whole = ct.search().select(["level", "member_count"]).limit(None).to_arrow()
        for level, members in zip(whole.column("level").to_pylist(), whole.column("member_count").to_pylist()):
            levels[LEVELS[level]] = levels.get(LEVELS[level], 0) + 1
            in_branch += members if level == 1 else 0
    before = sum(len(v) for v in previous.values())
    return {"blocks": keys.num_rows, "users": len(prints), "full": full, "users_reclustered": len(changed),
            "users_unchanged": len(prints) - len(changed), "users_removed": len(gone),
            "blocks_reclustered": 0 if data is None else data.num_rows,
            "clusters_kept": kept, "clusters_new": len(rows) - kept, "clusters_dropped": before - kept,
            "trees": {t["user_id"]: t["tree_id"] for t in trees}, "levels": levels,
            "noise_leaves": keys.num_rows - in_branch, "version": version,
            "scan_seconds": round(t_scan, 3), "read_seconds": round(t_read, 3), "cluster_seconds": round(t_cluster, 3),
            "write_seconds": round(t_write, 3), "seconds": round(time.perf_counter() - t0, 3)}


def retrieve_at_level(cortex: Cortex, query_embedding, level: int = 0, limit: int = 10, user_id=None) -> list[dict]:
    """Spec 004 section 5.4: level 0 searches the blocks, higher levels the cluster nodes of that level."""
    if level not in LEVELS:
        raise ValueError(f"level: must be one of {sorted(LEVELS)} (leaf, branch, trunk, canopy), got {level!r}")
    if level == 0:
        return cortex.search_blocks(query_embedding, limit, user_id=user_id)
    tbl = cortex.clusters()
    if tbl is None:
        return []
    where = f"level = {int(level)}" + (f" AND user_id = {_quote([user_id])}" if user_id is not None else "")
    return (tbl.search(np.asarray(query_embedding, dtype=np.float32), vector_column_name="centroid_embedding")
            .distance_type("cosine").where(where, prefilter=True).limit(limit).to_list())
