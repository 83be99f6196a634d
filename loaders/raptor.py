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
and its parent. Trees are built per user, so no summary mixes two users' memories, and
written as one LanceDB commit that replaces the previous tree.

Summaries are extractive behind a hook: pass summarise= to build_tree to replace them.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from .cortex import LEVELS, Cortex, _quote


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
               tree_id: str | None = None, summarise: Callable[[list[str]], str] = default_summarise) -> list[dict]:
    """The cluster nodes (levels 1..max_level) over one set of blocks."""
    tree_id = tree_id or str(uuid.uuid4())
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
            cid = str(uuid.uuid4())
            row = {"cluster_id": cid, "tree_id": tree_id, "user_id": user_id, "level": level,
                   "level_name": LEVELS[level], "parent_cluster_id": None,
                   "centroid_embedding": centroid.astype(np.float32),
                   "summary_embedding": _normalise(x[near].mean(axis=0)).astype(np.float32),
                   "summary_text": summarise([node_texts[i] for i in near]),
                   "member_count": int(idx.size), "member_ids": [node_ids[i] for i in idx],
                   "leaf_count": int(w.sum()), "created_at": now}
            for i in idx:
                if node_ids[i] in by_id:
                    by_id[node_ids[i]]["parent_cluster_id"] = cid
            rows.append(row)
            by_id[cid] = row
            nxt_ids.append(cid), nxt_x.append(row["centroid_embedding"]), nxt_texts.append(node_texts[near[0]])
            nxt_w.append(w.sum())
        node_ids, x, node_texts, weights = nxt_ids, np.stack(nxt_x), nxt_texts, np.asarray(nxt_w)
    return rows


def cluster_cortex(cortex: Cortex, p: RaptorParams, summarise=default_summarise) -> dict:
    """Re-clusters every user's Cortex blocks and replaces the whole tree in one commit."""
    t0 = time.perf_counter()
    tbl = cortex.blocks()
    if tbl is None:
        return {"blocks": 0, "levels": {}, "seconds": 0.0}
    data = tbl.search().select(["block_id", "user_id", "universal_embedding", "live_zones", "dead_zone_summaries",
                                "anterior_margin"]).limit(None).to_arrow()
    t_read = time.perf_counter() - t0
    users = data.column("user_id").to_pylist()
    ids = data.column("block_id").to_pylist()
    vectors = data.column("universal_embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False) \
        .reshape(len(ids), cortex.udim) if len(ids) else np.zeros((0, cortex.udim), np.float32)
    cols = {c: data.column(c).to_pylist() for c in ("live_zones", "dead_zone_summaries", "anterior_margin")}
    texts = [block_text({c: cols[c][i] for c in cols}) for i in range(len(ids))]
    tree_id = str(uuid.uuid4())
    rows: list[dict] = []
    order = np.argsort(np.asarray(users, dtype=object).astype(str), kind="stable")
    users_arr = np.asarray(users, dtype=object)[order].astype(str)
    starts = np.flatnonzero(np.r_[True, users_arr[1:] != users_arr[:-1]]) if len(order) else []
    bounds = list(starts) + [len(order)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        sel = order[a:b]
        rows += build_tree([ids[i] for i in sel], vectors[sel], [texts[i] for i in sel], p,
                           user_id=users[sel[0]], tree_id=tree_id, summarise=summarise)
    t_cluster = time.perf_counter() - t0 - t_read
    version = cortex.replace_tree(rows)
    levels = {LEVELS[0]: len(ids)}
    for r in rows:
        levels[r["level_name"]] = levels.get(r["level_name"], 0) + 1
    in_branch = sum(r["member_count"] for r in rows if r["level"] == 1)
    return {"tree_id": tree_id, "blocks": len(ids), "users": len(bounds) - 1, "levels": levels,
            "noise_leaves": len(ids) - in_branch, "version": version, "read_seconds": round(t_read, 3),
            "cluster_seconds": round(t_cluster, 3), "seconds": round(time.perf_counter() - t0, 3)}


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
