"""The retrieval chain across the Hippocampus and the Cortex, after a real worker run."""
from __future__ import annotations

import numpy as np
import pytest

import night_script
from cortex_data import Committed
from loaders.cortex import Cortex
from loaders.recall import Recalled, mmr, recall
from loaders.worker import Worker


@pytest.fixture
def data(db_url):
    d = Committed(db_url)
    yield d
    d.cleanup()


def topic0() -> np.ndarray:
    return night_script.topic(np.random.default_rng(0), 0)


def test_chain_crosses_both_tiers_by_vector_and_by_structure(data, db_url, tmp_path):
    other, _ = data.night(tier="normal")          # another user, all of whose blocks go to the Cortex
    user, (s1, s2, s3) = data.night(tier="elder")  # elder: blocks stay in the Hippocampus unless queued
    c = data.conn
    # move exactly one of the elder user's blocks: the open arc that session 2 continues
    c.execute("DELETE FROM ops.jobs WHERE job_id > %s AND kind = 'cortex_migrate' AND payload->>'block_id' IN "
              "(SELECT block_id::text FROM memory.holographic_blocks WHERE user_id = %s)", (data.jobs_before, user))
    moved, original_prose = c.execute(
        "SELECT b.block_id, b.prose FROM memory.holographic_blocks b JOIN memory.holographic_blocks n "
        "ON n.continues_from = b.block_id WHERE b.user_id = %s AND b.session_id = %s", (user, s1)).fetchone()
    c.execute("SELECT ops.queue_job('cortex_migrate', jsonb_build_object('block_id', %s::text))", (moved,))
    c.commit()
    cortex_dir = str(tmp_path / "cortex")
    Worker(db_url, cortex_uri=cortex_dir, say=lambda m: None).run(once=True)
    assert c.execute("SELECT migrated_at IS NOT NULL FROM memory.holographic_blocks WHERE block_id = %s",
                     (moved,)).fetchone()[0]
    kept = {r[0] for r in c.execute("SELECT block_id::text FROM memory.holographic_blocks WHERE user_id = %s "
                                    "AND migrated_at IS NULL", (user,))}
    others = {r[0] for r in c.execute("SELECT block_id::text FROM memory.holographic_blocks WHERE user_id = %s", (other,))}
    c.commit()
    cortex = Cortex.for_database(c, cortex_dir)
    assert cortex.count() == len(others) + 1

    results = recall(c, cortex, topic0(), user, k=10, limit=50)
    c.rollback()
    by_id = {r.id: r for r in results}
    assert len(by_id) == len(results)                       # de-duplicated
    assert not set(by_id) & others                          # never another user's memories
    hit = by_id[str(moved)]
    assert hit.tier == "cortex" and hit.kind == "block"
    # found twice and kept once with both reasons: by vector in the Cortex, and as the
    # structural reference (continuation) of a Hippocampus hit
    assert "cortex block: vector match" in hit.reasons
    assert any(r.startswith("cortex block: earlier part of a matched inquiry") for r in hit.reasons), hit.reasons
    assert hit.via in kept
    # live zones in full, byte for byte
    assert [z["content"].encode() for z in hit.live_zones] == [z["content"].encode() for z in original_prose["live_zones"]]
    tiers = {(r.tier, r.kind) for r in results}
    assert {("hippocampus", "turn"), ("hippocampus", "block"), ("cortex", "block")} <= tiers
    assert all(r.reasons for r in results)
    hippo_blocks = {r.id for r in results if r.tier == "hippocampus" and r.kind == "block"}
    assert hippo_blocks <= kept and hippo_blocks
    # the most relevant item leads
    assert results[0].distance == pytest.approx(min(r.distance for r in results if r.distance is not None), abs=1e-6)


def test_mmr_puts_a_different_result_before_a_near_duplicate():
    q = np.zeros(4, np.float32)
    q[0] = 1
    a = Recalled("block", "a", "hippocampus", ["x"], 0.0, "", embedding=np.array([1, 0.1, 0, 0], np.float32))
    dup = Recalled("block", "dup", "cortex", ["x"], 0.0, "", embedding=np.array([1, 0.11, 0, 0], np.float32))
    other = Recalled("block", "b", "cortex", ["x"], 0.3, "", embedding=np.array([0.8, -0.6, 0, 0], np.float32))
    assert [r.id for r in mmr([a, dup, other], q, 3)] == ["a", "b", "dup"]
    assert [r.id for r in mmr([a, dup, other], q, 3, lam=1.0)] == ["a", "dup", "b"]  # relevance only
