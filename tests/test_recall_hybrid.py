"""memory.recall: one ranked list over a user's whole history, by full text and by vector."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest

from helpers import UDIM, new_session, new_user, record, unit

NOW = datetime.now(timezone.utc)


def recall(conn, user, text=None, vector=None, budget=10, **kw):
    cur = conn.execute(
        "SELECT * FROM memory.recall(p_user_id => %s, p_query_text => %s, p_query_vector => %s::real[], "
        "p_budget_turns => %s, p_since => %s, p_until => %s)",
        (user, text, None if vector is None else [float(x) for x in vector], budget, kw.get("since"), kw.get("until")))
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


@pytest.fixture
def history(conn):
    """Alice's month: every turn names her (a word in all of them), one mentions a xylophone,
    one (with a known vector) is about gardening; turns from 30 days ago to today."""
    rng = np.random.default_rng(7)
    user = new_user(conn, "hybrid-alice", "elder")
    other = new_user(conn, "hybrid-bob", "elder")
    turns = {}
    for day in range(30, -1, -3):
        s = new_session(conn, user, f"alice-day-{day}", NOW - timedelta(days=day, hours=1))
        for i in range(4):
            text = f"Alice: chatting about the weather on day {day}, turn {i}."
            if (day, i) == (27, 2):
                text = "Alice: I started xylophone lessons with a teacher called Ruth."
            turns[(day, i)] = record(conn, s, text, universal=unit(rng, UDIM),
                                     created_at=NOW - timedelta(days=day, hours=1) + timedelta(minutes=i))
    garden = unit(rng, UDIM)
    s = new_session(conn, user, "alice-garden", NOW - timedelta(days=12, hours=1))
    turns["garden"] = record(conn, s, "Alice: the tomatoes finally came up.", universal=garden,
                             created_at=NOW - timedelta(days=12, hours=1))
    sb = new_session(conn, other, "bob-1", NOW - timedelta(days=2))
    bob = record(conn, sb, "Bob: my xylophone lessons with Ruth start soon.", universal=garden,
                 created_at=NOW - timedelta(days=2))
    return user, turns, garden, bob


def test_a_rare_word_finds_its_turn_from_a_month_ago_through_a_word_every_turn_has(conn, history):
    user, turns, _, bob = history
    rows = recall(conn, user, "What did Alice say about the xylophone?")
    assert rows[0]["entry_id"] == turns[(27, 2)]
    assert rows[0]["legs"] == ["text"] and rows[0]["created_at"] < NOW - timedelta(days=26)  # beyond the 7-day window
    # BM25 weighs words by rarity: "alice" is in every turn, "xylophone" in one
    bm25 = [float(r["reason"].split("(bm25 ")[1].split(")")[0]) for r in rows]
    assert bm25[0] > 5 * bm25[1]
    assert all(r["entry_id"] != bob for r in rows)  # never another user's turn, though it shares the words
    assert "text #1 (bm25" in rows[0]["reason"]


def test_a_vector_finds_its_turn_when_no_word_matches(conn, history):
    user, turns, garden, _ = history
    rows = recall(conn, user, "harvest zucchini", garden)
    assert rows[0]["entry_id"] == turns["garden"]
    assert rows[0]["legs"] == ["vector"] and "text 0 hits" in rows[0]["reason"]


def test_legs_that_cannot_run_say_so(conn, history):
    user, turns, garden, _ = history
    rows = recall(conn, user, None, garden)
    assert rows[0]["entry_id"] == turns["garden"] and "text (not run: no query text)" in rows[0]["reason"]
    rows = recall(conn, user, "xylophone", None)
    assert rows[0]["entry_id"] == turns[(27, 2)] and "vector (not run: no query vector)" in rows[0]["reason"]
    rows = recall(conn, user, "the and of", garden)
    assert "text (not run: only stop words)" in rows[0]["reason"]


def test_budget_and_time_range(conn, history):
    user, turns, garden, _ = history
    rows = recall(conn, user, "Alice weather", garden, budget=3)
    assert len(rows) == 3 and [r["rank"] for r in rows] == [1, 2, 3]
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    recent = recall(conn, user, "xylophone Alice", garden, budget=20, since=NOW - timedelta(days=10))
    assert recent and all(r["created_at"] >= NOW - timedelta(days=10) for r in recent)
    assert turns[(27, 2)] not in {r["entry_id"] for r in recent}
    old = recall(conn, user, "tomatoes", garden, since=NOW - timedelta(days=13), until=NOW - timedelta(days=11))
    assert old[0]["entry_id"] == turns["garden"]  # and the day's other turns, by vector: nothing else
    assert {r["created_at"].date() for r in old} == {(NOW - timedelta(days=12, hours=1)).date()}


def test_a_common_query_word_fetches_no_candidates_beyond_the_cap(conn, history):
    """The text leg fetches turns by the rarest query words while together they hold at most
    recall.text_candidate_docs turns; a commoner word then only adds to those turns' scores."""
    user, turns, _, _ = history
    leg = "SELECT entry_id FROM memory._recall_text_leg(%s, 'xylophone weather', 50) JOIN memory.day_table USING (session_id, turn_number)"
    conn.execute("UPDATE ops.settings SET value = '10' WHERE key = 'recall.text_candidate_docs'")
    assert [r[0] for r in conn.execute(leg, (user,))] == [turns[(27, 2)]]  # 1 + 43 turns > 10: "weather" fetches none
    conn.execute("UPDATE ops.settings SET value = '44' WHERE key = 'recall.text_candidate_docs'")
    assert len(conn.execute(leg, (user,)).fetchall()) == 44  # both words fetch
    conn.execute("UPDATE ops.settings SET value = '1' WHERE key = 'recall.text_candidate_docs'")
    assert len(conn.execute("SELECT * FROM memory._recall_text_leg(%s, 'weather', 50)", (user,)).fetchall()) == 43  # the rarest word always


def test_text_statistics_count_each_users_turns_once(conn, history):
    user, _, _, _ = history
    stats = dict(conn.execute("SELECT lexeme, turns FROM memory.text_stats WHERE user_id = %s", (user,)).fetchall())
    total = conn.execute("SELECT turns FROM memory.text_totals WHERE user_id = %s", (user,)).fetchone()[0]
    assert total == 45 and stats["alic"] == 45 and stats["xylophon"] == 1 and stats["tomato"] == 1
    assert stats["weather"] == 43  # 11 days x 4 turns, less the xylophone one
    other = conn.execute("SELECT turns FROM memory.text_stats s JOIN memory.users u USING (user_id) "
                         "WHERE u.external_ref = 'hybrid-bob' AND s.lexeme = 'xylophon'").fetchone()[0]
    assert other == 1


def test_a_bulk_load_counts_its_turns_in_one_statement(conn, tmp_path):
    from loaders.turns import ingest_rows

    rows = [dict(user="hybrid-bulk", session="hybrid-bulk-s", role="user", content=f"parsnip number {i}",
                 created_at=(NOW - timedelta(minutes=100 - i)).isoformat(), turn_number=i + 1) for i in range(40)]
    ingest_rows(conn, rows)
    user = conn.execute("SELECT memory.find_user('hybrid-bulk')").fetchone()[0]
    assert conn.execute("SELECT turns FROM memory.text_stats WHERE user_id = %s AND lexeme = 'parsnip'",
                        (user,)).fetchone()[0] == 40
    assert conn.execute("SELECT turns, lexemes FROM memory.text_totals WHERE user_id = %s", (user,)).fetchone() == (40, 120)  # parsnip, number and the digits


@pytest.mark.parametrize("args, field", [
    (dict(budget=0), "p_budget_turns"),
    (dict(budget=1001), "p_budget_turns"),
    (dict(text=None, vector=None), "p_query_text, p_query_vector"),
    (dict(text="   ", vector=None), "p_query_text, p_query_vector"),
    (dict(vector=np.zeros(UDIM)), "p_query_vector"),
    (dict(vector=np.ones(UDIM - 1)), "p_query_vector"),
    (dict(since=NOW, until=NOW - timedelta(days=1)), "p_since, p_until"),
])
def test_bad_input_is_refused_by_field(conn, history, args, field):
    user = history[0]
    kw = dict(text="xylophone", vector=None, budget=10) | args
    with pytest.raises(psycopg.Error) as e:
        recall(conn, user, kw.pop("text"), kw.pop("vector"), kw.pop("budget"), **kw)
    assert e.value.diag.message_primary.startswith(field + ":"), e.value.diag.message_primary


def test_an_unknown_user_and_another_users_session_are_refused_alike(conn, history):
    user = history[0]
    bob = conn.execute("SELECT memory.find_user('hybrid-bob')").fetchone()[0]
    bob_session = conn.execute("SELECT session_id FROM memory.sessions WHERE user_id = %s", (bob,)).fetchone()[0]
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="p_session_id: unknown session"):
        conn.execute("SELECT * FROM memory.recall(%s, 'xylophone', p_session_id => %s)", (user, bob_session))
    conn.rollback()
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="p_user_id: unknown user"):
        conn.execute("SELECT * FROM memory.recall('00000000-0000-4000-8000-000000000000', 'xylophone')")
