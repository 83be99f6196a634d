"""Consolidation keeps what was said: every consolidated turn lies in a block, dead zones keep
their facts per turn, retention counts cycles and deletes only what a block holds, and recall
still finds a deleted turn through its block."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import night_script
from helpers import UDIM, new_session, new_user, record, unit

NOW = datetime.now(timezone.utc)
# The scripted sessions take four hours: started at 01:00, they lie within one cycle date.
START = (NOW - timedelta(days=10)).replace(hour=1, minute=0, second=0, microsecond=0)


def cycle(conn, day) -> None:
    """The Night Cycle for a date, as pg_cron would run it that night."""
    conn.execute("SELECT memory.run_night_cycle(%s)", (day,))


@pytest.fixture
def consolidated(conn):
    conn.execute("SELECT ops.set_setting('night.live_interrogative_distance', '-1')")
    user, sessions = night_script.build(conn, ref="keep-user", start=START)
    cycle(conn, START.date())
    return conn, user, sessions


def zones(conn, sid):
    return conn.execute("SELECT z.zone_kind, z.first_turn, z.last_turn, b.block_kind FROM memory.block_zones z "
                        "JOIN memory.holographic_blocks b USING (block_id) WHERE z.session_id = %s "
                        "ORDER BY z.first_turn, b.block_kind", (sid,)).fetchall()


def test_every_consolidated_turn_lies_in_a_block(consolidated):
    conn, user, (s1, s2, s3) = consolidated
    for sid, n in ((s1, 14), (s2, 8), (s3, 5)):
        covered = {t for _, first, last, _ in zones(conn, sid) for t in range(first, last + 1)}
        assert covered == set(range(1, n + 1)), sid
    # session 1: turns 1-3 lie between arcs (a gap block); the arcs' blocks hold 4-12 and 11-14
    kinds = {(b, first, last) for _, first, last, b in zones(conn, s1) if b == "gap"}
    assert kinds == {("gap", 1, 3)}
    spans = conn.execute("SELECT block_kind, first_turn, last_turn FROM memory.holographic_blocks "
                         "WHERE session_id = %s AND block_kind <> 'compound' ORDER BY first_turn", (s1,)).fetchall()
    assert spans == [("gap", 1, 3), ("arc", 4, 12), ("arc", 11, 14)]


def test_blocks_keep_margins_and_live_turns_whole_and_dead_turns_by_their_sentences(consolidated):
    conn, user, (s1, s2, s3) = consolidated
    rows = conn.execute(
        "SELECT z.zone_kind, t.turn_number, t.kept, t.verbatim, d.content, t.external_ref IS NOT DISTINCT FROM d.external_ref, "
        "t.universal_embedding = d.universal_embedding, t.created_at = d.created_at "
        "FROM memory.block_turns t JOIN memory.block_zones z ON z.block_id = t.block_id AND z.zone_no = t.zone_no "
        "JOIN memory.day_table d ON d.session_id = t.session_id AND d.turn_number = t.turn_number "
        "WHERE t.session_id = %s", (s1,)).fetchall()
    assert rows and all(same_ref and same_vec and same_time for *_, same_ref, same_vec, same_time in rows)
    for kind, turn, kept, verbatim, content, *_ in rows:
        if kind in ("live", "anterior_margin", "posterior_margin"):
            assert kept == content and verbatim, (kind, turn)
        else:
            assert kept in content, (kind, turn)  # the summariser's sentences of this very turn
    # a dead zone's summary is the sentences its turns kept, in order
    for block, zone_no, summary in conn.execute(
            "SELECT block_id, zone_no, content FROM memory.block_zones WHERE session_id = %s AND zone_kind = 'dead'", (s1,)):
        kept = [r[0] for r in conn.execute("SELECT kept FROM memory.block_turns WHERE block_id = %s AND zone_no = %s "
                                           "ORDER BY turn_number", (block, zone_no))]
        assert summary == " ".join(kept)


def test_the_summariser_keeps_facts_before_filler(conn):
    conn.execute("SELECT ops.set_setting('night.summary_ratio', '0.7')")
    user = new_user(conn, "keep-facts")
    s = new_session(conn, user, "keep-facts-1", NOW - timedelta(hours=3))
    lines = ["Wow, that's so cool!", "I adopted a dog named Rex in May 2021.", "Haha, yes.",
             "Nice!", "We moved to Lisbon last week, near my sister's flat.", "Totally agree."]
    for i, text in enumerate(lines):
        record(conn, s, text, universal=unit(np.random.default_rng(i), UDIM), created_at=NOW - timedelta(hours=3) + timedelta(minutes=i))
    kept = dict(conn.execute("SELECT turn_number, sentence FROM memory.summarise_facts(%s, 1, 6)", (s,)).fetchall())
    assert kept == {2: lines[1], 5: lines[4]}


def test_retention_counts_cycles_and_deletes_only_what_a_block_holds(consolidated):
    conn, user, (s1, s2, s3) = consolidated
    turns = conn.execute("SELECT count(*) FROM memory.day_table WHERE user_id = %s", (user,)).fetchone()[0]
    assert turns == 27 and conn.execute("SELECT cycles FROM memory.users WHERE user_id = %s", (user,)).fetchone()[0] == 1
    # the same date again is no new cycle: nothing deleted
    cycle(conn, START.date())
    assert conn.execute("SELECT count(*) FROM memory.day_table WHERE user_id = %s", (user,)).fetchone()[0] == 27
    # a recent session (inside recall.window) and a block that lost its zones: both kept
    recent = new_session(conn, user, "keep-recent", NOW - timedelta(days=2))
    for i in range(3):
        record(conn, recent, f"recent turn {i}", universal=unit(np.random.default_rng(50 + i), UDIM),
               created_at=NOW - timedelta(days=2) + timedelta(minutes=i))
    conn.execute("DELETE FROM memory.block_zones z USING memory.holographic_blocks b "
                 "WHERE b.block_id = z.block_id AND b.session_id = %s AND b.block_kind = 'gap'", (s3,))
    cycle(conn, (NOW - timedelta(days=2)).date())  # cycle 2: one cycle after the old sessions' consolidation
    left = conn.execute("SELECT s.external_ref, d.turn_number FROM memory.day_table d JOIN memory.sessions s USING (session_id) "
                        "WHERE d.user_id = %s ORDER BY 1, 2", (user,)).fetchall()
    # elder, but raw turns stay one cycle for every tier: all of the old sessions went, except
    # session 3's turn 1 (no zone holds it any more); the recent session is inside the window
    assert left == [("keep-recent", 1), ("keep-recent", 2), ("keep-recent", 3), ("keep-user-s3", 1)]
    cycle(conn, (NOW - timedelta(days=1)).date())  # cycle 3: still inside the window
    assert conn.execute("SELECT count(*) FROM memory.day_table WHERE user_id = %s", (user,)).fetchone()[0] == 4
    assert conn.execute("SELECT cycles FROM memory.users WHERE user_id = %s", (user,)).fetchone()[0] == 3


def test_recall_finds_a_deleted_turn_through_its_block(consolidated):
    conn, user, (s1, s2, s3) = consolidated
    cycle(conn, START.date() + timedelta(days=1))  # a cycle later: turns deleted
    assert conn.execute("SELECT count(*) FROM memory.day_table WHERE user_id = %s", (user,)).fetchone()[0] == 0
    rows = conn.execute("SELECT item_kind, session_id, turn_number, content, verbatim, created_at, legs "
                        "FROM memory.recall(%s, 'oh I see, that makes sense now', p_budget_turns => 3)", (user,)).fetchall()
    kind, sid, turn, content, verbatim, at, legs = rows[0]
    assert (kind, sid, turn) == ("kept_turn", s1, 9) and content == night_script.INSIGHT[(1, 9)]
    assert legs == ["text"] and at < NOW - timedelta(days=9)


def test_blocks_leave_for_the_cortex_after_their_tiers_cycles(conn):
    conn.execute("SELECT ops.set_setting('cortex.coherence_gain_threshold', '1')")  # only retention moves them
    conn.execute("SELECT ops.set_setting('cortex.max_block_age', '\"3650 days\"')")
    users = {tier: night_script.build(conn, tier=tier, ref=f"keep-{tier}", start=START)[0]
             for tier in ("normal", "meso")}
    queued = []
    for day in range(3):
        cycle(conn, START.date() + timedelta(days=day))
        queued.append({tier: conn.execute(
            "SELECT count(*) FROM ops.jobs j JOIN memory.holographic_blocks b ON b.block_id = (j.payload->>'block_id')::uuid "
            "WHERE j.kind = 'cortex_migrate' AND b.user_id = %s", (u,)).fetchone()[0] for tier, u in users.items()})
    blocks = {tier: conn.execute("SELECT count(*) FROM memory.holographic_blocks WHERE user_id = %s", (u,)).fetchone()[0]
              for tier, u in users.items()}
    # normal: block_cycles 0, at once; meso: 2 further cycles
    assert [q["normal"] for q in queued] == [blocks["normal"]] * 3
    assert [q["meso"] for q in queued] == [0, 0, blocks["meso"]]
