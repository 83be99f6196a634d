"""Shared bench plumbing: a throwaway cluster tuned for bulk work, and test vectors.

Benchmarks print figures and ratios measured in the same run; they are never tests.
The vectors are synthetic but have the measured statistics of real sentence embeddings
(see embedding_like) rather than isotropic noise, on which no ANN index behaves as it
does on real embeddings; every report says which data it used.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from psimem import migrate  # noqa: E402
from psimem.cluster import Cluster  # noqa: E402
from psimem.connect import connect  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
# More memory than the embedded default: an HNSW build wants its graph in
# maintenance_work_mem, and a serving database keeps its HNSW index in shared_buffers
# (1M 768-d rows: a 4 GB index). Durability settings stay at PostgreSQL's defaults.
BENCH_CONF = {"shared_buffers": "'8GB'", "maintenance_work_mem": "'6GB'", "max_parallel_maintenance_workers": "2",
              "work_mem": "'64MB'"}


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def bench_database(home: str = "/var/tmp/psimem-bench", port: int = 55433, **dims) -> str:
    """PSIMEM_DATABASE_URL if set, else a throwaway cluster migrated with default sizes (or
    universal_dim / native_dim)."""
    url = os.environ.get("PSIMEM_DATABASE_URL")
    if not url:  # PSIMEM_BENCH_HOME / _PORT run two benches side by side on separate clusters
        home, port = os.environ.get("PSIMEM_BENCH_HOME", home), int(os.environ.get("PSIMEM_BENCH_PORT", port))
        cluster = Cluster(Path(home), port, conf=BENCH_CONF)
        cluster.start(say)
        url = cluster.url()
    migrate.upgrade(url, **dims)
    return url


def embedding_like(n: int, dim: int, seed: int, per_cluster: int = 10, alpha: float = 0.8,
                   mean_norm: float = 0.42, noise: float = 0.95, sequential: bool = False,
                   chunk: int = 50_000) -> np.ndarray:
    """Unit vectors with the statistics of real sentence embeddings.

    Calibrated on all-MiniLM-L6-v2 embeddings of 8,000 random chitchat-dataset messages
    (measured: mean cosine of random pairs 0.095, of nearest neighbour 0.617, of 10th
    nearest 0.473, norm of the mean vector 0.31, 50% / 90% of variance in 13% / 56% of
    the principal components); this model gives 0.087 / 0.643 / 0.460 / 0.30 / 10% / 62%
    at that size. Model: a shared mean direction (embeddings are anisotropic), a
    covariance with a power-law spectrum (alpha) in a random rotation, and small clusters
    of about per_cluster points (paraphrase-like neighbours) drawn from that covariance.
    sequential: consecutive rows share a cluster (a conversation stays on a topic a while).
    """
    rng = np.random.default_rng(seed)
    scale = np.arange(1, dim + 1, dtype=np.float32) ** (-alpha / 2)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)).astype(np.float32))
    basis = rotation * (scale / np.sqrt((scale ** 2).sum()))
    mean = rng.standard_normal(dim).astype(np.float32)
    mean *= mean_norm / np.linalg.norm(mean)
    centres = rng.standard_normal((max(1, n // per_cluster), dim)).astype(np.float32) @ basis.T
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        label = (np.arange(lo, hi) // per_cluster % len(centres) if sequential
                 else rng.integers(0, len(centres), hi - lo))
        x = mean + centres[label] + noise * (rng.standard_normal((hi - lo, dim)).astype(np.float32) @ basis.T)
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def orthogonal_clusters(n: int, dim: int, seed: int, clusters: int = 256, spread_dim: int = 16) -> np.ndarray:
    """The hard case: unit vectors in clusters whose 16-d subspaces are mutually almost
    orthogonal, so the HNSW graph is nearly disconnected between clusters. Real
    embeddings do not look like this (no shared direction, nearest neighbours only 0.23
    cosine apart at 8,000 points); kept to show how the index degrades on such data."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    label = rng.integers(0, clusters, n)
    out = np.empty((n, dim), dtype=np.float32)
    for c in range(clusters):
        idx = np.flatnonzero(label == c)
        if idx.size == 0:
            continue
        basis = rng.standard_normal((spread_dim, dim)).astype(np.float32) / np.sqrt(dim)
        out[idx] = centres[c] + 0.8 * rng.standard_normal((idx.size, spread_dim)).astype(np.float32) @ basis
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


# Model outputs (MiniLM embeddings of chitchat-dataset messages, LoCoMo's turns) shared by the
# benchmarks that use real text: computed once, cached as they go.
MODEL_CACHE = Path("/var/tmp/psimem-bench-models/model-outputs.npz")


def chitchat_messages(n: int) -> list[str]:
    """n distinct chitchat-dataset messages (over three characters), in the dataset's order."""
    from chitchat_dataset import Dataset

    out, seen = [], set()
    for _, conv in sorted(Dataset().items()):
        for group in conv["messages"]:
            for m in group:
                t = m["text"].strip()
                if len(t) > 3 and t not in seen:
                    seen.add(t)
                    out.append(t)
                    if len(out) == n:
                        return out
    raise SystemExit(f"chitchat-dataset has only {len(out)} distinct messages; asked for {n}")


def minilm(texts: list[str]) -> np.ndarray:
    """Real MiniLM (384-d) embeddings of texts, from MODEL_CACHE where computed before."""
    from loaders.models import Cache, UniversalEmbedder

    emb = UniversalEmbedder(Cache(MODEL_CACHE))
    say(f"embedding {len(texts)} texts (MiniLM, cached in {MODEL_CACHE})")
    out = emb.embed(texts)
    emb.cache.save()
    return out


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, q))


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def report(name: str, results: dict) -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    say(f"results saved to {OUT / (name + '.json')}")


def reset_day_table(conn) -> None:
    conn.execute("TRUNCATE memory.day_table, memory.sessions, memory.users CASCADE")
    conn.commit()


def with_connection(url: str):
    return connect(url)
