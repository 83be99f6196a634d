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
def cortex(cortex_uri):
    return Cortex(cortex_uri, UDIM, NDIM)


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
    sizes = {first["trees"][user]: 21, second["trees"][user]: 28}
    # every read saw one whole tree: a single tree_id with all of its nodes
    assert seen and all(len(ids) == 1 and sizes[next(iter(ids))] == n for ids, n in seen)
    # the old tree is still there, unchanged, as the previous version
    tbl.checkout(first["version"])
    assert sorted(tbl.to_arrow().column("cluster_id").to_pylist()) == old_ids


def _trees(cortex) -> dict[str, dict[str, dict]]:
    """user -> cluster_id -> (level, members, tree_id, created_at)"""
    out: dict[str, dict[str, dict]] = {}
    for r in cortex.clusters().search().limit(None).to_list():
        out.setdefault(r["user_id"], {})[r["cluster_id"]] = (r["level"], frozenset(r["member_ids"]), r["tree_id"],
                                                               r["created_at"])
    return out


def test_a_night_reclusters_only_the_users_whose_cortex_changed_and_keeps_the_ids_of_unchanged_clusters(cortex):
    rng = np.random.default_rng(21)
    users = [str(uuid.uuid4()) for _ in range(3)]
    a, b, c = users
    for u in users:
        cortex.upsert_blocks(nested_blocks(rng, u)[0])
    first = cluster_cortex(cortex, RaptorParams())
    assert (first["users"], first["users_reclustered"]) == (3, 3)
    assert first["levels"] == {"leaf": 3 * TOPICS * SUBTOPICS * PER, "branch": 3 * TOPICS * SUBTOPICS, "trunk": 3 * TOPICS}
    before = _trees(cortex)

    # nothing changed: nobody is re-clustered and the tree table is not even rewritten
    version = cortex.clusters().version
    idle = cluster_cortex(cortex, RaptorParams())
    assert (idle["users_reclustered"], idle["users_unchanged"]) == (0, 3) and cortex.clusters().version == version

    # user b talks about a fourth topic: only b is re-clustered; a's and c's nodes are not touched
    cortex.upsert_blocks(nested_blocks(rng, b, topics=1)[0])
    grown = cluster_cortex(cortex, RaptorParams())
    assert (grown["users_reclustered"], grown["users_unchanged"], grown["blocks_reclustered"]) == \
           (1, 2, (TOPICS + 1) * SUBTOPICS * PER)
    after = _trees(cortex)
    assert after[a] == before[a] and after[c] == before[c]
    # b's old branches and trunks have the same members, so they keep their ids (and created_at);
    # only the new topic's six branches and its trunk are new
    assert all(after[b][cid][:2] == node[:2] and after[b][cid][3] == node[3] for cid, node in before[b].items())
    new = {cid: after[b][cid] for cid in set(after[b]) - set(before[b])}
    assert sorted(level for level, *_ in new.values()) == [1] * SUBTOPICS + [2]
    assert (grown["clusters_kept"], grown["clusters_new"], grown["clusters_dropped"]) == (21, 7, 0)
    assert len({tree for _, _, tree, _ in after[b].values()}) == 1  # one whole new tree for b

    # a block of c disappears: its branch, and the trunk over that branch, get new ids; the rest keep theirs
    gone = next(m for cid, (level, members, _, _) in before[c].items() if level == 1 for m in members)
    cortex.blocks().delete(f"block_id = '{gone}'")
    shrunk = cluster_cortex(cortex, RaptorParams())
    assert shrunk["users_reclustered"] == 1 and list(shrunk["trees"]) == [c]
    changed = {cid for cid, (level, members, _, _) in before[c].items()
               if gone in members or (level == 2 and any(gone in before[c][m][1] for m in members))}
    assert len(changed) == 2 and set(before[c]) - set(_trees(cortex)[c]) == changed
    assert (shrunk["clusters_kept"], shrunk["clusters_new"], shrunk["clusters_dropped"]) == (19, 2, 2)

    # other clustering parameters change every fingerprint; identical memberships still keep their ids
    retuned = cluster_cortex(cortex, RaptorParams(summary_members=2))
    assert retuned["users_reclustered"] == 3 and retuned["clusters_new"] == 0
    full = cluster_cortex(cortex, RaptorParams(summary_members=2), full=True)
    assert full["users_reclustered"] == 3 and full["clusters_new"] == 0 and set(_trees(cortex)[a]) == set(before[a])
