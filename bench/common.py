"""Shared bench plumbing: a throwaway cluster tuned for bulk work, and test vectors.

Benchmarks print figures and ratios measured in the same run; they are never tests.
The vectors are synthetic but shaped like sentence embeddings (clusters with a
low-dimensional spread around each centre) rather than isotropic noise, on which no
ANN index behaves like it does on real embeddings; every report says so.
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
# More memory than the embedded default (an HNSW build wants its graph in
# maintenance_work_mem); durability settings stay at PostgreSQL's defaults.
BENCH_CONF = {"shared_buffers": "'4GB'", "maintenance_work_mem": "'8GB'", "max_parallel_maintenance_workers": "2",
              "work_mem": "'64MB'"}


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def bench_database(home: str = "/var/tmp/psimem-bench", port: int = 55433) -> str:
    """PSIMEM_DATABASE_URL if set, else a throwaway cluster migrated with default sizes."""
    url = os.environ.get("PSIMEM_DATABASE_URL")
    if not url:
        cluster = Cluster(Path(home), port, conf=BENCH_CONF)
        cluster.start(say)
        url = cluster.url()
    migrate.upgrade(url)
    return url


def embedding_like(n: int, dim: int, seed: int, clusters: int = 256, spread_dim: int = 16) -> np.ndarray:
    """Unit vectors in `clusters` clusters, each spread over its own spread_dim-d subspace."""
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
