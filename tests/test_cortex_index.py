"""Cortex vector indexes: one per embedding space once enough blocks have that embedding."""
import uuid

import numpy as np

from loaders.cortex import Cortex


def _rows(n: int, udim: int, ndim: int, native_every: int, seed: int = 3) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    nat = rng.standard_normal((n, ndim)).astype(np.float32)
    rows = [{"block_id": str(uuid.uuid4()), "user_id": "u1",
             "universal_embedding": rng.standard_normal(udim).astype(np.float32).tolist(),
             "native_embedding": nat[i].tolist() if i % native_every else None} for i in range(n)]
    return rows, nat


def test_each_space_gets_its_index_once_enough_blocks_have_it(cortex_uri):
    cortex = Cortex(cortex_uri, 16, 24)
    rows, nat = _rows(300, 16, 24, native_every=3)  # 200 blocks carry a native embedding
    cortex.upsert_blocks(rows)
    info = cortex.ensure_vector_index(250, "IVF_HNSW_SQ")
    assert info["created"] == ["universal"] and set(info["vector_index"]) == {"universal"}
    info = cortex.ensure_vector_index(150, "IVF_HNSW_SQ")
    assert info["created"] == ["native"] and set(info["vector_index"]) == {"universal", "native"}
    assert cortex.ensure_vector_index(150, "IVF_HNSW_SQ")["created"] == []  # idempotent
    # the native index answers: a block's own native embedding finds that block first
    got = cortex.search_blocks(nat[1], limit=1, space="native", columns=["block_id"])
    assert got[0]["block_id"] == rows[1]["block_id"]
