"""RAPTOR clustering over a real LanceDB Cortex, on data whose cluster structure is known."""
from __future__ import annotations

import threading
import uuid
from collections import Counter

import numpy as np
import pytest

from loaders.cortex import Cortex
from loaders.raptor import RaptorParams, cluster_cortex, retrieve_at_level

UDIM, NDIM = 768, 4096
TOPICS, SUBTOPICS, PER = 3, 6, 6


def _unit(v):
    return (v / np.linalg.norm(v)).astype(np.float32)


def nested_blocks(rng, user: str, topics=TOPICS, subtopics=SUBTOPICS, per=PER):
    """topics x subtopics x per blocks: subtopics of a topic are alike, topics are not."""
    rows, truth, centres = [], {}, []
    for t in range(topics):
        tc = _unit(rng.standard_normal(UDIM))
        centres.append(tc)
        for s in range(subtopics):
            sc = _unit(tc + 0.9 * _unit(rng.standard_normal(UDIM)))
            for i in range(per):
                bid = str(uuid.uuid4())
                truth[bid] = (t, s)
                rows.append(block_row(bid, user, _unit(sc + 0.35 * _unit(rng.standard_normal(UDIM))),
                                      f"topic {t} subtopic {s} block {i}."))
    return rows, truth, centres


def block_row(bid, user, vec, text):
    return {"block_id": bid, "user_id": user, "universal_embedding": vec, "block_kind": "arc",
            "live_zones": [{"start": 0, "end": 0, "content": text}], "dead_zone_summaries": [], "citations": []}


@pytest.fixture
def cortex(tmp_path):
    return Cortex(str(tmp_path / "cortex"), UDIM, NDIM)


def test_levels_follow_the_known_structure_and_noise_stays_leaves(cortex):
    rng = np.random.default_rng(7)
    user = str(uuid.uuid4())
    rows, truth, _ = nested_blocks(rng, user)
    # three blocks on a theme of their own: fewer than min_cluster_size, so HDBSCAN noise
    lone = _unit(rng.standard_normal(UDIM))
    outliers = [block_row(str(uuid.uuid4()), user, _unit(lone + 0.35 * _unit(rng.standard_normal(UDIM))), "an outlier.")
                for _ in range(3)]
    cortex.upsert_blocks(rows + outliers)

    result = cluster_cortex(cortex, RaptorParams())
    assert result["levels"] == {"leaf": len(rows) + 3, "branch": TOPICS * SUBTOPICS, "trunk": TOPICS}
    tree = cortex.clusters().search().limit(None).to_list()
    branches = [c for c in tree if c["level"] == 1]
    trunks = {c["cluster_id"]: c for c in tree if c["level"] == 2}
    # every branch is exactly one subtopic, every trunk exactly one topic
    assert sorted(Counter(truth[m] for m in b["member_ids"]).most_common(1)[0][1] for b in branches) == [PER] * 18
    assert all(len({truth[m] for m in b["member_ids"]}) == 1 for b in branches)
    for t in trunks.values():
        topics = {truth[m][0] for b in branches if b["parent_cluster_id"] == t["cluster_id"] for m in b["member_ids"]}
        assert len(topics) == 1 and t["member_count"] == SUBTOPICS and t["leaf_count"] == SUBTOPICS * PER
        assert t["parent_cluster_id"] is None  # three trunks are too few for a canopy
    # the outliers are noise: leaves in no branch
    in_branches = {m for b in branches for m in b["member_ids"]}
    assert result["noise_leaves"] == 3 and not {o["block_id"] for o in outliers} & in_branches
    # centroids are normalised means; summaries are extractive, from the cluster's own members
    b = branches[0]
    members = [r for r in rows if r["block_id"] in set(b["member_ids"])]
    mean = np.mean([r["universal_embedding"] for r in members], axis=0)
    assert np.allclose(b["centroid_embedding"], mean / np.linalg.norm(mean), atol=1e-5)
    t, s = truth[b["member_ids"][0]]
    assert all(part.startswith(f"topic {t} subtopic {s} ") for part in b["summary_text"].split(" … "))


def test_retrieve_at_level(cortex):
    rng = np.random.default_rng(11)
    user = str(uuid.uuid4())
    rows, truth, centres = nested_blocks(rng, user)
    cortex.upsert_blocks(rows)
    cluster_cortex(cortex, RaptorParams())
    q = centres[1]
    leaf = retrieve_at_level(cortex, q, level=0, limit=5, user_id=user)
    assert len(leaf) == 5 and all(truth[r["block_id"]][0] == 1 for r in leaf)
    branch = retrieve_at_level(cortex, q, level=1, limit=6)
    assert [r["level"] for r in branch] == [1] * 6
    assert all({truth[m][0] for m in r["member_ids"]} == {1} for r in branch)  # the six subtopics of topic 1
    trunk = retrieve_at_level(cortex, q, level=2, limit=3)
    assert len(trunk) == 3 and trunk[0]["leaf_count"] == SUBTOPICS * PER
    assert "topic 1 " in trunk[0]["summary_text"] and trunk[0]["_distance"] < trunk[1]["_distance"]
    assert retrieve_at_level(cortex, q, level=3) == []
    assert retrieve_at_level(cortex, q, level=1, user_id=str(uuid.uuid4())) == []
    with pytest.raises(ValueError, match="level: must be one of"):
        retrieve_at_level(cortex, q, level=4)


def test_reclustering_replaces_the_tree_atomically(cortex):
    rng = np.random.default_rng(3)
    user = str(uuid.uuid4())
    rows, _, _ = nested_blocks(rng, user)
    cortex.upsert_blocks(rows)
    first = cluster_cortex(cortex, RaptorParams())
    tbl = cortex.clusters()
    old_ids = sorted(tbl.to_arrow().column("cluster_id").to_pylist())

    seen, stop = [], threading.Event()

    def reader():
        reader_cx = Cortex(cortex.uri, UDIM, NDIM)
        while not stop.is_set():
            t = reader_cx.clusters().to_arrow()
            seen.append((frozenset(t.column("tree_id").to_pylist()), t.num_rows))

    more, _, _ = nested_blocks(np.random.default_rng(4), user, topics=1)  # a fourth topic arrives
    cortex.upsert_blocks(more)
    th = threading.Thread(target=reader)
    th.start()
    try:
        second = cluster_cortex(cortex, RaptorParams())
    finally:
        stop.set()
        th.join()
    assert second["levels"]["branch"] == 24 and second["levels"]["trunk"] == 4
    sizes = {first["tree_id"]: 21, second["tree_id"]: 28}
    # every read saw one whole tree: a single tree_id with all of its nodes
    assert seen and all(len(ids) == 1 and sizes[next(iter(ids))] == n for ids, n in seen)
    # the old tree is still there, unchanged, as the previous version
    tbl.checkout(first["version"])
    assert sorted(tbl.to_arrow().column("cluster_id").to_pylist()) == old_ids
