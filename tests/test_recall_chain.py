"""The retrieval chain across the Hippocampus and the Cortex, after a real worker run: one
ranked list of turns within a budget, each saying which legs found it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import night_script
from cortex_data import Committed
from loaders.cortex import Cortex
from loaders.recall import Recalled, mmr, recall, within_budget
from loaders.worker import Worker

INSIGHT = night_script.INSIGHT[(1, 9)]
# Ten days ago at 01:00: older than recall.window, and the script's four hours in one cycle date.
START = (datetime.now(timezone.utc) - timedelta(days=10)).replace(hour=1, minute=0, second=0, microsecond=0)


@pytest.fixture
def data(db_url):
    d = Committed(db_url)
    yield d
    d.cleanup()


def topic0() -> np.ndarray:
    return night_script.topic(np.random.default_rng(0), 0)


def test_the_chain_finds_a_deleted_turn_through_both_tiers_and_never_another_users(data, db_url, tmp_path):
    other, _ = data.night(tier="normal", start=START, cycles=2)
    user, (s1, s2, s3) = data.night(tier="normal", start=START, cycles=2)  # normal: every block to the Cortex
    c = data.conn
    assert c.execute("SELECT count(*) FROM memory.day_table WHERE user_id = %s", (user,)).fetchone()[0] == 0
    cortex_dir = str(tmp_path / "cortex")
    Worker(db_url, cortex_uri=cortex_dir, say=lambda m: None).run(once=True)
    cortex = Cortex.for_database(c, cortex_dir)
    mine = {str(b) for b, in c.execute("SELECT block_id FROM memory.holographic_blocks WHERE user_id = %s", (user,))}
    assert cortex.count(f"user_id = '{user}'") == len(mine)
    c.commit()

    results = recall(c, cortex, "oh I see, that makes sense", topic0(), user, budget=5)
    c.rollback()
    assert 0 < len(results) <= 5 and sum(r.turns for r in results) <= 5
    top = results[0]
    assert (top.kind, top.session_id, top.first_turn) == ("kept_turn", str(s1), 9) and top.text.endswith(INSIGHT)
    assert "text" in top.legs and "cortex" in top.legs  # found in the Hippocampus and in its Cortex block
    assert any("in Cortex block #" in r for r in top.reasons)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert {r.session_id for r in results} <= {str(s1), str(s2), str(s3)}  # never the other user's


def test_recall_in_blocks_returns_the_best_turn_inside_each_block(data):
    user, (s1, s2, s3) = data.night(tier="normal", start=START, cycles=2)
    c = data.conn
    arc = c.execute("SELECT block_id FROM memory.holographic_blocks WHERE session_id = %s AND block_kind = 'arc' "
                    "AND first_turn = 4", (s1,)).fetchone()[0]
    other_users = c.execute("SELECT block_id FROM memory.holographic_blocks WHERE user_id <> %s LIMIT 1", (user,)).fetchall()
    rows = c.execute("SELECT block_id, rank, turn_number, content FROM memory.recall_in_blocks(%s, %s::uuid[], "
                     "'that makes sense now', %s::real[], 2)",
                     (user, [arc] + [r[0] for r in other_users], topic0().tolist())).fetchall()
    c.rollback()
    assert [(b, r) for b, r, _, _ in rows] == [(arc, 1), (arc, 2)]  # another user's block gives nothing
    assert rows[0][2:] == (9, INSIGHT)


def test_a_cortex_block_postgresql_keeps_no_turns_of_comes_back_whole(data, db_url, tmp_path):
    user, _ = data.night(tier="elder")
    cortex = Cortex.for_database(data.conn, str(tmp_path / "cortex"))
    v = night_script.topic(np.random.default_rng(5), 2)  # a topic no turn of the user has
    prose = {"anterior_margin": "", "posterior_margin": "", "dead_zone_summaries": [],
             "live_zones": [{"start": 0, "end": 2, "content": "user: the lighthouse keeper's logbook"}]}
    cortex.upsert_blocks([{"block_id": "9f0f3c52-0000-4000-8000-00000000b10c", "user_id": str(user), "session_id": None,
                           "block_kind": "imported", "universal_embedding": v, "first_turn": 0, "last_turn": 2,
                           **prose}])
    # What comes back for a Cortex-only block is the point here, not how a Cortex leg weighted
    # 0.3 ranks against the user's nearest (unrelated) turns: weigh the tiers alike.
    data.conn.execute("UPDATE ops.settings SET value = '1' WHERE key = 'recall.weight_cortex'")
    results = recall(data.conn, cortex, "lighthouse logbook", v, user, budget=10)
    data.conn.rollback()
    block = [r for r in results if r.kind == "block"]
    assert len(block) == 1 and block[0].tier == "cortex" and block[0].turns == 3
    assert block[0].text == "user: the lighthouse keeper's logbook" and block[0].legs == ["cortex"]


def test_a_block_costs_the_turns_it_covers():
    def item(i, first, last):
        return Recalled("block" if last > first else "turn", i, "cortex", "s", first, last, 1.0, [], [], "")
    picked = within_budget([item("a", 1, 1), item("big", 1, 5), item("b", 2, 2), item("c", 3, 4)], 4)
    assert [i.id for i in picked] == ["a", "b", "c"]  # the five-turn block does not fit what is left


def test_mmr_puts_a_different_result_before_a_near_duplicate():
    q = np.zeros(4, np.float32)
    q[0] = 1

    def item(i, v):
        return Recalled("turn", i, "hippocampus", "s", 1, 1, 0.0, [], [], "", embedding=np.array(v, np.float32))
    a, dup, other = item("a", [1, 0.1, 0, 0]), item("dup", [1, 0.11, 0, 0]), item("b", [0.8, -0.6, 0, 0])
    assert [r.id for r in mmr([a, dup, other], q, 3)] == ["a", "b", "dup"]
    assert [r.id for r in mmr([a, dup, other], q, 3, lam=1.0)] == ["a", "dup", "b"]  # relevance only
