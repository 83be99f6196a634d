"""The Night Cycle on a scripted conversation: exactly the expected arcs, blocks, zones, links."""
import math
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

import night_script
from helpers import new_session, new_user, record

ARC_COLS = "start_turn, peak_turn, end_turn, resolved, open_at_session_end"


@pytest.fixture
def night(conn):
    # The cycle runs for every user and the tests count whole tables and queues: only the
    # script's user may be there (another file's committed rows are removed, and restored by
    # the rollback).
    conn.execute("DELETE FROM memory.users")
    conn.execute("DELETE FROM ops.jobs")
    # Live zones by spike, Arreté and insight markers only; the ID criterion has its own test.
    conn.execute("SELECT ops.set_setting('night.live_interrogative_distance', '-1')")
    user, sessions = night_script.build(conn)
    run_id = conn.execute("SELECT memory.run_night_cycle()").fetchone()[0]
    return conn, user, sessions, run_id


def arcs(conn, sid):
    return conn.execute(f"SELECT {ARC_COLS} FROM memory.flux_arcs WHERE session_id = %s ORDER BY start_turn", (sid,)).fetchall()


def block(conn, sid, start_turn):
    return conn.execute(
        "SELECT b.* FROM memory.holographic_blocks b JOIN memory.flux_arcs a USING (arc_id) "
        "WHERE a.session_id = %s AND a.start_turn = %s", (sid, start_turn)).fetchone()


def cols(conn):
    return [d.name for d in conn.execute("SELECT * FROM memory.holographic_blocks LIMIT 0").description]


def as_dict(conn, row):
    return dict(zip(cols(conn), row))


def test_arcs_are_exactly_the_scripted_ones(night):
    conn, user, (s1, s2, s3), run_id = night
    assert arcs(conn, s1) == [(6, 6, 10, True, False), (13, 13, 14, False, True)]
    assert arcs(conn, s2) == [(4, 4, 8, True, False)]
    assert arcs(conn, s3) == [(4, 5, 5, False, True)]
    base, peak, final, quality, duration = conn.execute(
        "SELECT baseline_perplexity, peak_perplexity, final_perplexity, flux_reversal_quality, arc_duration_turns "
        "FROM memory.flux_arcs WHERE session_id = %s AND start_turn = 6", (s1,)).fetchone()
    assert base == pytest.approx(10.4) and (peak, final, duration) == (30, 14.4, 5)
    assert quality == pytest.approx((30 - 14.4) * 5)


def test_blocks_have_margins_zones_and_the_specs_shapes(night):
    conn, user, (s1, s2, s3), _ = night
    b = as_dict(conn, block(conn, s1, 6))
    assert (b["first_turn"], b["last_turn"]) == (4, 12)  # 2 turns of margin each side
    prose = b["prose"]
    assert set(prose) == {"anterior_margin", "live_zones", "dead_zone_summaries", "posterior_margin"}
    assert prose["anterior_margin"] == ("assistant: session 1 turn 4: a question about the topic.\n"
                                        "user: session 1 turn 5: a question about the topic.")
    assert prose["posterior_margin"].splitlines()[0] == "user: session 1 turn 11: a question about the topic."
    # turn 6 spikes > 2 sigma; turn 8 falls 40% (Arreté > 0.3); turn 9 carries an insight marker
    assert [(z["start"], z["end"]) for z in prose["live_zones"]] == [(2, 2), (4, 5)]
    assert prose["live_zones"][1]["content"] == ("assistant: session 1 turn 8: a question about the topic.\n"
                                                 "user: oh I see, that makes sense now.")
    assert [(z["start"], z["end"]) for z in prose["dead_zone_summaries"]] == [(3, 3), (6, 6)]
    assert prose["dead_zone_summaries"][0]["summary"] == "session 1 turn 7: a question about the topic."
    assert b["flux_metrics"] == pytest.approx({"peak_perplexity": 30, "baseline_perplexity": 10.4,
                                               "final_perplexity": 14.4, "flux_reversal_quality": 78.0,
                                               "arc_duration_turns": 5})
    s = b["salience_scores"]
    assert set(s) == {"utterance_level", "exchange_level", "theme_level", "composite"}
    assert s["utterance_level"]["P"] == pytest.approx(1 - math.exp(-(30 / 10.4 - 1)), abs=1e-4)
    levels = [s[k] for k in ("utterance_level", "exchange_level", "theme_level")]
    assert s["composite"] == pytest.approx(sum(l["P"] + l["C"] + 1 - l["ID"] for l in levels) / 9, abs=1e-3)
    arrete = (10.4 - 14.4) / 10.4
    assert b["ties_merge_weight"] == pytest.approx(0.5 * s["composite"] + 0.5 * max(0, arrete), abs=1e-3)
    assert b["session_continuity_flag"] is False and b["user_tier"] == "elder"
    assert b["universal_embedding"] is not None and abs(float((b["universal_embedding"].to_numpy() ** 2).sum()) - 1) < 1e-4


def test_unresolved_arcs_flag_continuity_and_the_two_session_arc_becomes_a_metablock(night):
    conn, user, (s1, s2, s3), _ = night
    open1, b3, never = (as_dict(conn, block(conn, s, t)) for s, t in ((s1, 13), (s2, 4), (s3, 4)))
    assert open1["session_continuity_flag"] and never["session_continuity_flag"] and not b3["session_continuity_flag"]
    assert open1["continued_by"] == b3["block_id"] and b3["continues_from"] == open1["block_id"]
    assert never["continues_from"] is None and never["continued_by"] is None and never["parent_metablock_id"] is None
    assert open1["parent_metablock_id"] == b3["parent_metablock_id"] is not None
    meta = as_dict(conn, conn.execute("SELECT * FROM memory.holographic_blocks WHERE block_id = %s",
                                      (b3["parent_metablock_id"],)).fetchone())
    assert meta["block_kind"] == "compound"
    width = open1["last_turn"] - open1["first_turn"] + 1
    expected = [(z["start"], z["end"]) for z in open1["prose"]["live_zones"]] + \
               [(z["start"] + width, z["end"] + width) for z in b3["prose"]["live_zones"]]
    assert [(z["start"], z["end"]) for z in meta["prose"]["live_zones"]] == expected
    assert meta["flux_metrics"]["arc_duration_turns"] == 2 + 5
    assert conn.execute("SELECT continues_session_id FROM memory.sessions WHERE session_id = %s", (s2,)).fetchone()[0] == s1
    rels = set(conn.execute(
        "SELECT source_block_id, target_block_id, relationship_type FROM memory.block_relationships "
        "WHERE relationship_type <> 'thematic'").fetchall())
    assert rels == {(b3["block_id"], open1["block_id"], "continues"),
                    (meta["block_id"], open1["block_id"], "derived_from"),
                    (meta["block_id"], b3["block_id"], "derived_from")}
    thematic = conn.execute("SELECT count(*) FROM memory.block_relationships WHERE relationship_type = 'thematic'").fetchone()[0]
    assert thematic == 3  # the three blocks on topic A pair up; topic B stands alone


def test_second_run_creates_nothing_and_the_run_is_logged(night):
    conn, user, sessions, run_id = night
    tables = ["memory.flux_arcs", "memory.holographic_blocks", "memory.block_relationships", "ops.jobs",
              "memory.consolidations"]
    before = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables]
    conn.execute("SELECT memory.run_night_cycle()")
    assert [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables] == before
    status, done, failed = conn.execute("SELECT status, users_done, users_failed FROM ops.cycle_runs WHERE run_id = %s",
                                        (run_id,)).fetchone()
    assert status == "ok" and failed == 0 and done >= 1
    stages = {r[0]: r[1] for r in conn.execute(
        "SELECT stage, rows FROM ops.cycle_stage_log WHERE run_id = %s AND user_id = %s", (run_id, user))}
    assert set(stages) == {0, 1, 2, 3, 4, 5, 6, 7, 9} and stages[0] == 27 and stages[1] == 4 and stages[6] == 7


def test_cortex_queue_and_clustering_job(night):
    conn, user, sessions, run_id = night
    # elder: 6 cycles in the Hippocampus, but blocks with coherence_gain >= threshold go now
    queued = {tuple(r) for r in conn.execute("SELECT (payload->>'block_id')::uuid, (payload->>'user_id')::uuid "
                                             "FROM ops.jobs WHERE kind = 'cortex_migrate' AND payload->>'user_id' = %s",
                                             (str(user),))}
    qualifying = {tuple(r) for r in conn.execute("SELECT block_id, user_id FROM memory.holographic_blocks "
                                                 "WHERE coherence_gain >= 0.3 AND user_id = %s", (user,))}
    # each job names its block's user too: a block's key is (block_id, user_id) (docs/scale.md)
    assert queued == qualifying
    clusters = conn.execute("SELECT count(*) FROM ops.jobs WHERE kind = 'cluster_update'").fetchone()[0]
    assert clusters == (1 if queued else 0)
    conn.execute("UPDATE memory.holographic_blocks SET long_term = true")
    run2 = conn.execute("SELECT memory.run_night_cycle(current_date + 1)").fetchone()[0]
    n_blocks = conn.execute("SELECT count(*) FROM memory.holographic_blocks").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM ops.jobs WHERE kind = 'cortex_migrate'").fetchone()[0] == n_blocks
    assert conn.execute("SELECT count(*) FROM ops.jobs WHERE kind = 'cluster_update' AND payload->>'run_id' = %s",
                        (str(run2),)).fetchone()[0] == 1


def test_interrogative_distance_criterion_makes_live_zones(conn):
    conn.execute("SELECT ops.set_setting('night.live_interrogative_distance', '2')")  # every turn is close
    user, (s1, s2, s3) = night_script.build(conn)
    conn.execute("SELECT memory.run_night_cycle()")
    prose = as_dict(conn, block(conn, s1, 6))["prose"]
    assert [(z["start"], z["end"]) for z in prose["live_zones"]] == [(2, 6)] and prose["dead_zone_summaries"] == []


def test_a_session_being_written_is_left_whole_for_the_next_cycle(db_url):
    with psycopg.connect(db_url) as setup:
        user, (s1, s2, s3) = night_script.build(setup, ref="night-busy")
        setup.commit()
    try:
        with psycopg.connect(db_url) as writer, psycopg.connect(db_url) as cycle:
            record(writer, s3, "a late turn, not yet committed", perplexity=12)  # holds s3's row lock
            cycle.execute("SELECT memory.run_night_cycle(p_user_id => %s)", (user,))
            taken = {r[0] for r in cycle.execute("SELECT session_id FROM memory.consolidations WHERE session_id = ANY(%s)",
                                                  ([s1, s2, s3],))}
            assert taken == {s1, s2}
            assert cycle.execute("SELECT count(*) FROM memory.flux_arcs WHERE session_id = %s", (s3,)).fetchone()[0] == 0
            cycle.commit()
            writer.commit()
            cycle.execute("SELECT ops.set_setting('night.session_idle', '\"0 seconds\"')")
            cycle.execute("SELECT memory.run_night_cycle(p_user_id => %s)", (user,))
            first, last = cycle.execute("SELECT first_turn, last_turn FROM memory.consolidations WHERE session_id = %s",
                                        (s3,)).fetchone()
            assert (first, last) == (1, 6)  # all of it, the late turn included
            cycle.rollback()
    finally:
        with psycopg.connect(db_url) as c:
            c.execute("DELETE FROM memory.users WHERE external_ref = 'night-busy'")


def test_a_failing_user_rolls_back_alone_and_is_reported(conn):
    conn.execute("SELECT ops.set_setting('night.live_interrogative_distance', '-1')")  # so there are dead zones
    good, _ = night_script.build(conn, ref="night-good")
    bad, _ = night_script.build(conn, ref="night-bad")
    # A summariser that fails for one user only.
    conn.execute("""CREATE FUNCTION pg_temp.picky(p_session_id uuid, p_first int, p_last int)
                    RETURNS TABLE (turn_number int, sentence text) LANGUAGE plpgsql AS $$ BEGIN
                      IF EXISTS (SELECT 1 FROM memory.sessions s JOIN memory.users u USING (user_id)
                                 WHERE s.session_id = p_session_id AND u.external_ref = 'night-bad') THEN
                        RAISE EXCEPTION 'summariser refused';
                      END IF;
                      RETURN QUERY SELECT NULL::int, 'ok'; END $$""")
    schema = conn.execute("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()").fetchone()[0]
    conn.execute("SELECT ops.set_setting('night.summariser', %s)", (f'"{schema}.picky"',))
    with _notices(conn) as notices:
        run_id = conn.execute("SELECT memory.run_night_cycle()").fetchone()[0]
    assert any("failed at stage 4 (compression): summariser refused" in n for n in notices), notices
    counts = dict(conn.execute("SELECT u.external_ref, count(b.block_id) FROM memory.users u "
                               "LEFT JOIN memory.holographic_blocks b USING (user_id) "
                               "WHERE u.external_ref IN ('night-good', 'night-bad') GROUP BY 1").fetchall())
    assert counts == {"night-good": 8, "night-bad": 0}
    assert conn.execute("SELECT count(*) FROM memory.flux_arcs WHERE user_id = %s", (bad,)).fetchone()[0] == 0
    status, failed = conn.execute("SELECT status, users_failed FROM ops.cycle_runs WHERE run_id = %s", (run_id,)).fetchone()
    assert status == "partial" and failed == 1
    err = conn.execute("SELECT stage, error FROM ops.cycle_stage_log WHERE run_id = %s AND NOT ok", (run_id,)).fetchone()
    assert err[0] == 4 and "summariser refused" in err[1]


class _notices:
    def __init__(self, conn):
        self.conn, self.got = conn, []

    def __enter__(self):
        self.handler = lambda d: self.got.append(d.message_primary)
        self.conn.add_notice_handler(self.handler)
        return self.got

    def __exit__(self, *exc):
        self.conn.remove_notice_handler(self.handler)


def test_recall_blocks_returns_matches_and_their_structural_neighbours(night):
    conn, user, (s1, s2, s3), _ = night
    open1, b3 = as_dict(conn, block(conn, s1, 13)), as_dict(conn, block(conn, s2, 4))
    rows = conn.execute("SELECT block_id, reason, via_block_id, distance FROM memory.recall_blocks(%s, 1, %s)",
                        (b3["universal_embedding"], user)).fetchall()
    got = {r[0]: (r[1], r[2]) for r in rows}
    assert rows[0][:2] == (b3["block_id"], "vector match") and rows[0][3] == pytest.approx(0, abs=1e-5)
    assert got[open1["block_id"]] == ("earlier part of a matched inquiry", b3["block_id"])
    assert got[b3["parent_metablock_id"]] == ("metablock of a match", b3["block_id"])
    plain = conn.execute("SELECT count(*) FROM memory.recall_blocks(%s, 1, %s, false)",
                         (b3["universal_embedding"], user)).fetchone()[0]
    assert plain == 1
    with pytest.raises(psycopg.Error, match="p_k: must be between 1 and 1000"), conn.transaction():
        conn.execute("SELECT * FROM memory.recall_blocks(%s, 0)", (b3["universal_embedding"],))


def test_a_later_cycle_cites_instead_of_merging(conn):
    conn.execute("SELECT ops.set_setting('night.live_interrogative_distance', '-1')")
    user, (s1, s2, s3) = night_script.build(conn, ref="night-split")
    # consolidate session 1 alone first (as if session 2 came after that night's cycle)
    conn.execute("UPDATE memory.sessions SET last_turn_at = now() WHERE session_id IN (%s, %s)", (s2, s3))
    conn.execute("SELECT memory.run_night_cycle(p_user_id => %s)", (user,))
    conn.execute("SELECT ops.set_setting('night.session_idle', '\"0 seconds\"')")
    conn.execute("SELECT memory.run_night_cycle(current_date + 1, %s)", (user,))
    open1, b3 = as_dict(conn, block(conn, s1, 13)), as_dict(conn, block(conn, s2, 4))
    assert b3["citations"] == [str(open1["block_id"])] and b3["continues_from"] is None
    assert open1["continued_by"] is None and b3["parent_metablock_id"] is None
    rel = conn.execute("SELECT relationship_type FROM memory.block_relationships WHERE source_block_id = %s "
                       "AND target_block_id = %s", (b3["block_id"], open1["block_id"])).fetchall()
    assert rel == [("cites",)]
    rows = conn.execute("SELECT block_id, reason FROM memory.recall_blocks(%s, 1, %s)", (b3["universal_embedding"], user)).fetchall()
    assert (open1["block_id"], "cited by a match") in rows


def test_a_bulk_cycle_rebuilds_the_block_indexes_once_with_the_same_blocks(conn):
    """A cycle forming more blocks than the table holds (bulk mode) builds the HNSW indexes of
    the blocks and of the turns they keep at its end: same definitions, valid, used by
    recall_blocks, and the same blocks as inserting."""
    hnsw = ("SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
            "WHERE i.indrelid IN ('memory.holographic_blocks'::regclass, 'memory.block_turns'::regclass) "
            "AND a.amname = 'hnsw' ORDER BY 1")
    before = conn.execute(hnsw).fetchall()
    assert [name for name, *_ in before] == ["idx_block_turns_universal", "idx_blocks_native", "idx_blocks_universal"]
    conn.execute("DELETE FROM memory.users")  # as in the night fixture
    conn.execute("SELECT ops.set_setting('night.live_interrogative_distance', '-1')")
    conn.execute("SELECT ops.set_setting('night.index_rebuild_min_blocks', '1')")
    night_script.build(conn)
    run_id = conn.execute("SELECT memory.run_night_cycle()").fetchone()[0]
    assert conn.execute(hnsw).fetchall() == before and all(valid for _, _, valid in before)
    rebuilt = conn.execute("SELECT rows FROM ops.cycle_stage_log WHERE run_id = %s AND stage = 6 AND user_id IS NULL",
                           (run_id,)).fetchone()
    blocks = conn.execute("SELECT count(*) FROM memory.holographic_blocks").fetchone()[0]
    assert rebuilt == (blocks,) and blocks == 8  # 4 arc blocks, 3 gap blocks and the compound of the continued arc
    # the rebuilt index answers: the nearest block to a block's own embedding is itself
    bid, emb = conn.execute("SELECT block_id, universal_embedding::real[] FROM memory.holographic_blocks "
                            "WHERE block_kind = 'arc' LIMIT 1").fetchone()
    conn.execute("SET enable_seqscan = off")
    got = conn.execute("SELECT block_id FROM memory.holographic_blocks ORDER BY universal_embedding <=> %s::vector "
                       "LIMIT 1", (emb,)).fetchone()[0]
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN SELECT block_id FROM memory.holographic_blocks ORDER BY universal_embedding <=> %s::vector LIMIT 1",
        (emb,)))
    assert got == bid and "idx_blocks_universal" in plan
    # a second, small cycle (nothing new) leaves the indexes alone
    run2 = conn.execute("SELECT memory.run_night_cycle()").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM ops.cycle_stage_log WHERE run_id = %s AND stage = 6 AND user_id IS NULL",
                        (run2,)).fetchone()[0] == 0


def test_each_stage_is_a_function_of_run_and_user_in_its_own_file_and_runs_alone(conn):
    """What a psql user does to look at one stage: open a run, call the stages one by one,
    read what each left in the work tables."""
    conn.execute("SELECT ops.set_setting('night.live_interrogative_distance', '-1')")
    user, sessions = night_script.build(conn)
    stages = conn.execute("SELECT s.stage, s.function::text, s.scope, a.path FROM memory.night_stages s "
                          "LEFT JOIN ops.applied_sql a ON (s.function::text || '(bigint,uuid)') = ANY(a.objects) "
                          "ORDER BY s.stage").fetchall()
    assert [st for st, *_ in stages] == list(range(10))
    for st, fn, scope, path in stages:
        assert path is not None and path.startswith(f"functions/night/{st:02d}_") and fn == f"memory.night_{path[16:-4]}"
    assert {st: scope for st, _, scope, _ in stages} == {0: "user", 1: "taken", 2: "taken", 3: "taken", 4: "taken",
                                                       5: "taken", 6: "taken", 7: "user", 8: "run", 9: "user"}
    run = conn.execute("INSERT INTO ops.cycle_runs (cycle_date, user_id) VALUES (current_date, %s) RETURNING run_id",
                       (user,)).fetchone()[0]

    def stage(fn, table=None):
        rows = conn.execute(f"SELECT memory.{fn}(%s, %s)", (run, user)).fetchone()[0]
        return rows, table and conn.execute(f"SELECT count(*) FROM memory.{table} WHERE run_id = %s", (run,)).fetchone()[0]

    assert stage("night_00_select_sessions", "night_sessions") == (27, 3)
    assert stage("night_01_flux_detection", "night_arcs") == (4, 4)
    assert stage("night_02_block_formation", "night_blocks") == (7, 7)  # 4 arcs, 3 gaps
    assert conn.execute("SELECT count(*) FROM memory.night_block_turns WHERE run_id = %s", (run,)).fetchone()[0] == 9 + 4 + 7 + 4 + 3 + 1 + 1
    assert stage("night_03_salience")[0] == 7
    dead = conn.execute("SELECT count(*) FROM memory.night_zones WHERE run_id = %s AND NOT live", (run,)).fetchone()[0]
    assert stage("night_04_compression")[0] == dead
    assert conn.execute("SELECT count(*) FROM memory.night_blocks WHERE run_id = %s AND prose IS NULL", (run,)).fetchone()[0] == 0
    assert stage("night_05_embedding")[0] == 7
    assert conn.execute("SELECT count(*) FROM memory.holographic_blocks WHERE user_id = %s", (user,)).fetchone()[0] == 0
    assert stage("night_06_storage")[0] == 7
    assert conn.execute("SELECT count(*) FROM memory.holographic_blocks WHERE user_id = %s", (user,)).fetchone()[0] == 8
    logged = conn.execute("SELECT memory._night_run_stage(9::smallint, %s, %s)", (run, user)).fetchone()[0]
    assert logged["stage"] == 9 and logged["name"] == "cleanup" and logged["ms"] >= 0


def test_an_arc_still_open_when_its_session_was_consolidated_goes_into_a_continuing_block(conn):
    """The session is consolidated while a flux window is open (turns 6-7), then resumes:
    the arc's later turns, its resolution included, become a block that continues the
    earlier one, instead of lying in no block until retention deletes them."""
    conn.execute("SELECT ops.set_setting('night.live_interrogative_distance', '-1')")
    user = new_user(conn, "night-resumed", "elder")
    t0 = datetime.now(timezone.utc) - timedelta(hours=8)
    sid = new_session(conn, user, "night-resumed-s", t0)
    v = night_script.topic(__import__("numpy").random.default_rng(1), 0)
    for i, p in enumerate([10, 11, 10, 11, 10, 30, 25], start=1):
        record(conn, sid, f"turn {i}: the question.", universal=v, perplexity=p, created_at=t0 + timedelta(minutes=i))
    conn.execute("SELECT memory.run_night_cycle()")
    later = t0 + timedelta(hours=4)
    for i, p in enumerate([20, 15, 14.9, 14.8, 10, 11], start=8):
        content = "oh I see, that makes sense now." if i == 11 else f"turn {i}: the answer."
        record(conn, sid, content, universal=v, perplexity=p, created_at=later + timedelta(minutes=i))
    conn.execute("SELECT memory.run_night_cycle()")

    (first_arc, *first), (second_arc, *second) = conn.execute(
        f"SELECT arc_id, {ARC_COLS}, continued_by_arc_id FROM memory.flux_arcs WHERE session_id = %s ORDER BY start_turn",
        (sid,)).fetchall()
    assert first == [6, 6, 7, False, True, second_arc] and second == [8, 8, 11, True, False, None]
    earlier, later_block = (as_dict(conn, block(conn, sid, t)) for t in (6, 8))
    assert later_block["continues_from"] == earlier["block_id"] and earlier["continued_by"] == later_block["block_id"]
    assert (later_block["first_turn"], later_block["last_turn"]) == (8, 13)
    assert "oh I see, that makes sense now." in "".join(z["content"] for z in later_block["prose"]["live_zones"])
    assert conn.execute("SELECT relationship_type FROM memory.block_relationships WHERE source_block_id = %s "
                        "AND target_block_id = %s", (later_block["block_id"], earlier["block_id"])).fetchall() == [("continues",)]
    # every turn here has one vector, so the gap blocks around the arcs match as well as they do
    conn.execute("DELETE FROM memory.holographic_blocks WHERE session_id = %s AND block_kind = 'gap'", (sid,))
    rows = conn.execute("SELECT block_id, reason FROM memory.recall_blocks(%s, 1, %s)",
                        (later_block["universal_embedding"], user)).fetchall()
    assert {r[0] for r in rows} == {earlier["block_id"], later_block["block_id"]}  # either one recalls the other
    assert any(reason.endswith("part of a matched inquiry") for _, reason in rows)


def test_a_turn_dated_in_the_future_does_not_keep_its_session_from_the_cycle(conn):
    conn.execute("SELECT ops.set_setting('limits.future_skew', '\"7 days\"')")
    conn.execute("SELECT ops.set_setting('night.session_idle', '\"0 seconds\"')")
    user = new_user(conn, "night-future")
    t0 = datetime.now(timezone.utc) - timedelta(hours=2)
    skewed, stamped = new_session(conn, user, "night-future-a", t0), new_session(conn, user, "night-future-b", t0)
    for sid in (skewed, stamped):
        for i in range(1, 6):
            record(conn, sid, f"turn {i}", perplexity=10, created_at=t0 + timedelta(minutes=i))
    record(conn, skewed, "a client clock three days fast", perplexity=10, created_at=t0 + timedelta(days=3))
    now = conn.execute("SELECT now()").fetchone()[0]
    assert conn.execute("SELECT last_turn_at FROM memory.sessions WHERE session_id = %s", (skewed,)).fetchone()[0] == now
    # A stamp in the future from before revision 0015 (or set by hand) is brought back too.
    conn.execute("UPDATE memory.sessions SET last_turn_at = '2099-01-01' WHERE session_id = %s", (stamped,))
    conn.execute("SELECT memory.run_night_cycle()")
    taken = dict(conn.execute("SELECT session_id, last_turn FROM memory.consolidations WHERE user_id = %s", (user,)).fetchall())
    assert taken == {skewed: 6, stamped: 5}
