"""record_turn and recall_recent: what comes back, from where, and why."""
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from helpers import NDIM, UDIM, new_session, new_user, record, unit

NOW = datetime.now(timezone.utc)


def recall(conn, fn, q, session_id, user_id, k=10):
    return conn.execute(
        f"SELECT entry_id, session_id, distance, reason FROM memory.{fn}(%s::real[], %s, %s, %s)",
        (list(map(float, q)), session_id, user_id, k)).fetchall()


def test_record_turn_returns_the_entry_and_fills_it_from_the_session(conn):
    u = new_user(conn, "rec-a", "meso")
    s = new_session(conn, u)
    rng = np.random.default_rng(1)
    eid = record(conn, s, "what is a holographic block?", universal=unit(rng, UDIM), native=unit(rng, NDIM),
                 perplexity=12.5)
    row = conn.execute("SELECT session_id, user_id, user_tier, role, content, turn_number, perplexity_score "
                       "FROM memory.day_table WHERE entry_id = %s", (eid,)).fetchone()
    assert row == (s, u, "meso", "user", "what is a holographic block?", 1, 12.5)


def test_recall_covers_current_session_or_the_users_last_7_days(conn):
    rng = np.random.default_rng(2)
    alice, bob = new_user(conn, "rec-alice"), new_user(conn, "rec-bob")
    current, recent, old = new_session(conn, alice), new_session(conn, alice), new_session(conn, alice)
    bobs = new_session(conn, bob)
    q = unit(rng, UDIM)
    near = lambda: unit(rng, UDIM) * 0.3 + q  # noqa: E731 - close to the query
    e_cur = record(conn, current, "cur", universal=near())
    e_recent = record(conn, recent, "recent", universal=near(), created_at=NOW - timedelta(days=3))
    record(conn, old, "old", universal=near(), created_at=NOW - timedelta(days=9))
    record(conn, bobs, "bob", universal=q)  # the closest of all, but another user's
    rows = recall(conn, "recall_recent", q, current, alice)
    got = {r[0]: r[3] for r in rows}
    assert got == {e_cur: "current session", e_recent: "same user, within 7 days"}
    # an old turn of the current session still counts: the session is the conversation
    e_cur_old = record(conn, current, "cur-old", universal=near(), created_at=NOW - timedelta(days=30))
    assert e_cur_old in {r[0] for r in recall(conn, "recall_recent", q, current, alice)}


@pytest.mark.parametrize("fn,dim,col,selective_rows", [("recall_recent", UDIM, "universal", 0),
                                                        ("recall_recent", UDIM, "universal", None),
                                                        ("recall_recent_native", NDIM, "native", 0),
                                                        ("recall_recent_native", NDIM, "native", None)])
def test_recall_returns_k_exact_nearest_even_when_the_filter_keeps_1_percent(conn, fn, dim, col, selective_rows):
    """Force the HNSW path (no btree indexes, no seq scan, recall.selective_rows 0 so the
    filter does not count as selective): iterative scans must still fill k. With the
    default, the filter is selective and its 10 rows are all re-ranked exactly."""
    if selective_rows is not None:
        conn.execute("UPDATE ops.settings SET value = to_jsonb(%s::int) WHERE key = 'recall.selective_rows'",
                     (selective_rows,))
    rng = np.random.default_rng(3)
    users = [new_user(conn, f"rec-many-{i}") for i in range(50)]
    sessions = [new_session(conn, u) for u in users]
    vecs = {}
    with conn.cursor() as cur:
        for i in range(1000):
            v = unit(rng, dim)
            s = sessions[0] if i % 100 == 0 else sessions[1 + i % 49]
            eid = record(cur, s, f"t{i}", **{col: v})
            if s == sessions[0]:
                vecs[eid] = v
    assert len(vecs) == 10
    # Without the user's (user_id, created_at) index no bitmap can cover the filter's OR: the HNSW path.
    conn.execute("DROP INDEX memory.idx_day_table_user_time")
    conn.execute("SET enable_seqscan = off")
    q = unit(rng, dim)
    rows = recall(conn, fn, q, sessions[0], users[0], k=5)
    exact = sorted(vecs, key=lambda e: 1 - float(np.dot(vecs[e], q)))[:5]
    assert [r[0] for r in rows] == exact
    assert all(abs(r[2] - (1 - float(np.dot(vecs[r[0]], q)))) < 1e-5 for r in rows)


def test_a_selective_filter_is_ranked_by_stored_code_then_exactly(conn):
    """Below recall.selective_rows, every row of the filter is ranked by the Hamming distance
    of its stored sign code, and the best recall.binary_overfetch_selective per wanted row are
    re-ranked by exact cosine distance: with a pool of k, the k rows of smallest Hamming
    distance come back in cosine order; with the default pool, the exact k nearest."""
    rng = np.random.default_rng(5)
    u = new_user(conn, "rec-code")
    s = new_session(conn, u)
    vecs = {}
    with conn.cursor() as cur:
        for i in range(120):
            v = unit(rng, UDIM)
            vecs[record(cur, s, f"t{i}", universal=v)] = v
    q = unit(rng, UDIM)
    cosine = {e: 1 - float(np.dot(v, q)) for e, v in vecs.items()}
    hamming = {e: int(np.count_nonzero((v > 0) != (q > 0))) for e, v in vecs.items()}
    exact = sorted(vecs, key=cosine.get)[:5]

    conn.execute("UPDATE ops.settings SET value = '1' WHERE key = 'recall.binary_overfetch_selective'")
    got = [r[0] for r in recall(conn, "recall_recent", q, s, u, k=5)]
    fifth = sorted(hamming.values())[4]
    assert all(hamming[e] <= fifth for e in got) and len(got) == 5
    assert got == sorted(got, key=cosine.get)
    assert got != exact  # the code's order is not cosine's: the pool decided

    conn.execute("UPDATE ops.settings SET value = '40' WHERE key = 'recall.binary_overfetch_selective'")
    assert [r[0] for r in recall(conn, "recall_recent", q, s, u, k=5)] == exact


def test_recall_refuses_bad_arguments_by_name(conn):
    u = new_user(conn, "rec-bad")
    s = new_session(conn, u)
    rng = np.random.default_rng(4)
    cases = [
        ((unit(rng, 3), s, u, 10), "p_query_vector: must have 768 dimensions"),
        ((unit(rng, UDIM), s, u, 0), "p_k: must be between 1 and 1000"),
        ((unit(rng, UDIM), None, None, 5), "p_session_id, p_user_id: give at least one"),
        ((unit(rng, UDIM), "00000000-0000-0000-0000-000000000001", None, 5), "p_session_id: unknown session"),
    ]
    for args, message in cases:
        with pytest.raises(Exception, match=message), conn.transaction():
            recall(conn, "recall_recent", *args)
    nan = [float("nan")] * UDIM
    with pytest.raises(Exception, match="p_query_vector: must hold finite numbers"), conn.transaction():
        conn.execute("SELECT * FROM memory.recall_recent(%s::real[], %s, %s, 5)", (nan, s, u))


def test_recall_judges_a_filters_size_from_session_turn_counts_and_then_rows(conn):
    """A filter under recall.selective_rows rows is ranked on codes: the bound must count the
    current session (however old) and the user's sessions active within the window, not
    older ones, and fall back to counting rows when there are hundreds of short sessions."""
    u = new_user(conn, "rec-size")
    current = new_session(conn, u)
    for i in range(5):
        record(conn, current, f"old {i}", created_at=NOW - timedelta(days=10))
    for _ in range(3):
        s = new_session(conn, u)
        for i in range(4):
            record(conn, s, f"recent {i}", created_at=NOW - timedelta(days=2))
    stale = new_session(conn, u)
    for i in range(6):
        record(conn, stale, f"stale {i}", created_at=NOW - timedelta(days=9))

    def below(session, rows):
        return conn.execute("SELECT memory._recall_filter_below(%s, %s, interval '7 days', %s)",
                            (session, u, rows)).fetchone()[0]

    assert below(current, 18) and not below(current, 17)  # 5 + 3 x 4 rows
    assert below(None, 13) and not below(None, 12)
    many = new_user(conn, "rec-size-many")
    with conn.cursor() as cur:
        for _ in range(300):
            record(cur, new_session(cur, many), "one turn", created_at=NOW - timedelta(hours=1))
    counted = lambda rows: conn.execute(  # noqa: E731
        "SELECT memory._recall_filter_below(NULL, %s, interval '7 days', %s)", (many, rows)).fetchone()[0]
    assert counted(301) and not counted(300)


def test_recording_a_turn_updates_its_session_without_writing_an_index_entry(conn):
    """The trigger's UPDATE of the session (turn count, last turn time, flux state) is HOT:
    no indexed column changes (revision 0015 dropped the index on last_turn_at)."""
    s = new_session(conn, new_user(conn, "rec-hot"))
    for i in range(6):
        record(conn, s, f"t{i}", perplexity=10 + i)
    assert conn.execute("SELECT pg_stat_get_xact_tuples_updated('memory.sessions'::regclass), "
                        "pg_stat_get_xact_tuples_hot_updated('memory.sessions'::regclass)").fetchone() == (6, 6)
