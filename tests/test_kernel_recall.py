"""kernel.recall on a crafted set whose right answers are known: a card only the words find,
one only the vector finds, a tie the recency leg breaks, a near-duplicate MMR keeps out of
the top k, a query whose keyword leg finds nothing and says so; usage bumped in the same
transaction, weights from the user's recall_weights, the HNSW path agreeing with exact."""
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest

from helpers import card, new_user, recall

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
DIM = 8


def axis(i: int, tilt: float = 0.0, j: int = 7) -> list[float]:
    """A unit vector along axis i, tilted towards axis j."""
    v = np.zeros(DIM)
    v[i], v[j] = 1.0, tilt
    return list(v / np.linalg.norm(v))


@pytest.fixture
def user(conn):
    return new_user(conn, "kernel-recall")


def ids(rows) -> list:
    return [r["card_id"] for r in rows]


def test_a_text_only_hit_and_a_vector_only_hit_both_come_back_each_from_its_leg(conn, user):
    bread = card(conn, user, "User bakes sourdough bread on Sundays", tags=["baking"], at=NOW)["card_id"]
    sister = card(conn, user, "User's sister lives in Lisbon", tags=["family"], embedding=axis(0),
                  provider="test", model="toy", at=NOW)["card_id"]
    unrelated = card(conn, user, "User runs five kilometres before work", tags=["sport"], embedding=axis(3),
                     provider="test", model="toy", at=NOW)["card_id"]
    rows = recall(conn, user, "sourdough", query_vector=axis(0, 0.1), k=2, now=NOW)
    by_id = {r["card_id"]: r for r in rows}
    assert set(by_id) == {bread, sister} and unrelated not in by_id
    assert by_id[bread]["text_rank"] == 1 and by_id[bread]["vector_rank"] is None
    assert by_id[sister]["vector_rank"] == 1 and by_id[sister]["text_rank"] is None
    assert by_id[sister]["vector_similarity"] > 0.99
    assert "text #1" in by_id[bread]["why"] and "vector #1" in by_id[sister]["why"]


def test_recency_breaks_a_tie_of_the_text_leg_whichever_card_is_newer(conn, user):
    friday = card(conn, user, "Jazz concert on Friday", at=NOW - timedelta(days=60))["card_id"]
    monday = card(conn, user, "Jazz concert on Monday", at=NOW - timedelta(days=1))["card_id"]
    with conn.transaction(force_rollback=True):  # a recall touches what it returns: undo that here
        rows = recall(conn, user, "jazz concert", k=2, now=NOW)
    assert ids(rows) == [monday, friday]
    assert rows[0]["text_rank"] == rows[1]["text_rank"] == 1  # the words alone cannot tell them apart
    assert rows[0]["recency_rank"] == 1 and rows[1]["recency_rank"] == 2
    # Friday's card written again today: now it is the newer one and comes first.
    card(conn, user, "jazz concert on friday.", at=NOW)
    assert ids(recall(conn, user, "jazz concert", k=2, now=NOW + timedelta(minutes=1))) == [friday, monday]


def test_a_near_duplicate_is_kept_out_of_the_top_k_by_mmr_and_only_by_mmr(conn, user):
    first = card(conn, user, "User's daughter Mia starts school in September", at=NOW)["card_id"]
    twin = card(conn, user, "User's daughter Mia starts school in September this year", at=NOW)["card_id"]
    others = [card(conn, user, text, at=NOW)["card_id"] for text in (
        "Mia loves painting animals", "The school bus stops at the corner", "User met the new teacher in September")]
    top = ids(recall(conn, user, "Mia school September", k=3, now=NOW))
    assert len({first, twin} & set(top)) == 1, "both near-duplicates crowd the top 3"
    assert len(set(others) & set(top)) == 2
    # The same recall ranked by relevance alone (lambda 1) keeps both: MMR is what kept one out.
    conn.execute("UPDATE ops.settings SET value = '1' WHERE key = 'kernel.mmr_lambda'")
    assert {first, twin} <= set(ids(recall(conn, user, "Mia school September", k=3, now=NOW)))


def test_a_keyword_leg_that_finds_nothing_says_so_and_the_vector_leg_still_answers(conn, user):
    sister = card(conn, user, "User's sister lives in Lisbon", embedding=axis(0), provider="test", model="toy",
                  at=NOW)["card_id"]
    rows = recall(conn, user, "quantum chromodynamics", query_vector=axis(0), now=NOW)
    assert ids(rows) == [sister]
    assert rows[0]["legs"]["text"] == {**rows[0]["legs"]["text"], "ran": True, "matched": 0}
    assert "text leg: no card matches the query words" in rows[0]["why"]
    # Without a vector nothing is found, and the one row says why instead of returning nothing.
    [empty] = recall(conn, user, "quantum chromodynamics", now=NOW)
    assert empty["card_id"] is None and empty["rank"] == 0
    assert empty["why"] == ("nothing recalled: text leg: no card matches the query words; "
                            "vector leg not run: no query vector given")
    [stop] = recall(conn, user, "the and of", now=NOW)
    assert "text leg not run: the query text has no searchable words" in stop["why"]


def test_a_word_most_cards_contain_does_not_make_every_such_card_a_candidate(conn, user):
    """Word statistics keep a common query word from making thousands of candidates: a card
    with only that word is not one; a card with a rarer query word, or with all of them, is."""
    conn.execute("UPDATE ops.settings SET value = '3' WHERE key = 'kernel.text_common_cards'")
    coffee = [card(conn, user, text, at=NOW)["card_id"] for text in (
        "User drinks coffee every morning", "Coffee beans come from Brazil", "The coffee machine broke down")]
    grinder = card(conn, user, "User bought a grinder for spices", at=NOW)["card_id"]
    both = card(conn, user, "A new grinder for the coffee", at=NOW)["card_id"]
    for text in ("User walked the dog", "User read a book", "User went swimming", "User cooked pasta"):
        card(conn, user, text, at=NOW)
    assert conn.execute("SELECT kernel.refresh_text_stats(%s)", (user,)).fetchone()[0] >= 1
    assert conn.execute("SELECT ndoc FROM kernel.text_stats WHERE user_id = %s AND lexeme = 'coffe'",
                        (user,)).fetchone() == (4,)
    rows = recall(conn, user, "coffee grinder", k=5, now=NOW)
    assert ids(rows) == [both, grinder] and not set(coffee) & set(ids(rows))
    assert rows[0]["legs"]["text"]["common_words"] == ["coffe"]
    # A query of common words only matches them all together: each coffee card has the one word.
    assert set(ids(recall(conn, user, "coffee", k=5, now=NOW))) == {*coffee, both}


def test_a_recall_without_a_vector_reports_the_vector_leg_as_not_run(conn, user):
    card(conn, user, "User collects vinyl records", at=NOW)
    [row] = recall(conn, user, "vinyl", now=NOW)
    assert row["legs"]["vector"] == {"ran": False, "reason": "no query vector given"}
    assert row["why"].endswith("vector leg not run: no query vector given")


def test_usage_is_bumped_for_what_came_back_in_the_same_transaction(conn, user):
    hit = card(conn, user, "User speaks Portuguese", at=NOW)["card_id"]
    miss = card(conn, user, "User dislikes olives", at=NOW)["card_id"]
    used = "SELECT used_count, last_used_at FROM kernel.usage WHERE mem_id = %s"
    with conn.transaction(force_rollback=True):
        [row] = recall(conn, user, "Portuguese", now=NOW + timedelta(hours=1))
        assert row["card_id"] == hit and row["used_count"] == 1 and row["legs"]["usage"]["bumped"] is True
        assert conn.execute(used, (hit,)).fetchone() == (1, NOW + timedelta(hours=1))
        assert conn.execute(used, (miss,)).fetchone() == (0, None)
    assert conn.execute(used, (hit,)).fetchone() == (0, None), "the bump outlived its transaction's rollback"


def test_a_read_only_transaction_recalls_without_bumping_usage_and_says_so(conn, user):
    hit = card(conn, user, "User speaks Portuguese", at=NOW)["card_id"]
    conn.commit()
    try:
        conn.execute("SET TRANSACTION READ ONLY")
        [row] = recall(conn, user, "Portuguese", now=NOW)
        assert row["card_id"] == hit
        assert row["legs"]["usage"] == {"bumped": False, "reason": "read-only transaction"}
        conn.rollback()
        assert conn.execute("SELECT used_count FROM kernel.usage WHERE mem_id = %s", (hit,)).fetchone()[0] == 0
    finally:
        conn.rollback()
        conn.execute("DELETE FROM memory.users WHERE user_id = %s", (user,))
        conn.commit()


def test_the_users_recall_weights_decide_between_the_legs(conn, user):
    words = card(conn, user, "User owns a red bicycle", at=NOW)["card_id"]
    vector = card(conn, user, "User commutes by train", embedding=axis(1), provider="test", model="toy", at=NOW)["card_id"]
    conn.execute("SELECT kernel.set_config(%s, 'recall_weights', '{\"text\": 1, \"vector\": 0.1}')", (user,))
    assert ids(recall(conn, user, "bicycle", query_vector=axis(1), k=1, now=NOW)) == [words]
    conn.execute("SELECT kernel.set_config(%s, 'recall_weights', '{\"text\": 0.1, \"vector\": 1}')", (user,))
    [row] = recall(conn, user, "bicycle", query_vector=axis(1), k=1, now=NOW)
    assert row["card_id"] == vector and row["legs"]["weights"]["vector"] == 1
    conn.execute("SELECT kernel.set_config(%s, 'recall_top_k', '1')", (user,))
    assert len(recall(conn, user, "bicycle", query_vector=axis(1), now=NOW)) == 1


def test_rolled_up_notes_are_recalled_through_their_summary(conn, user):
    for day in range(5):
        card(conn, user, f"Tomatoes in the garden need water on day {day}", subject="garden",
             at=NOW - timedelta(days=5 - day))
    rows = recall(conn, user, "tomatoes garden", k=5, now=NOW)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("summary") == 1 and kinds.count("note") == 1  # the summary and the newest note
    assert "summary of 4 rolled-up notes" in next(r["why"] for r in rows if r["kind"] == "summary")


def test_the_hnsw_path_returns_what_the_exact_scan_returns(conn, user):
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((60, DIM))
    for i, v in enumerate(vectors):
        card(conn, user, f"Fact number {i}", embedding=list(v / np.linalg.norm(v)), provider="test", model="toy", at=NOW)
    query = list(vectors[17] + 0.05 * rng.standard_normal(DIM))
    exact = recall(conn, user, None, query_vector=query, k=3, now=NOW)
    assert exact[0]["legs"]["vector"]["method"] == "exact"
    conn.execute("UPDATE ops.settings SET value = '50' WHERE key = 'kernel.vector_exact_below'")
    built = conn.execute("SELECT dim, action FROM kernel.ensure_vector_indexes()").fetchall()
    assert built == [(DIM, "created")]
    indexed = recall(conn, user, None, query_vector=query, k=3, now=NOW)
    assert indexed[0]["legs"]["vector"]["method"] == "hnsw"
    assert ids(indexed)[0] == ids(exact)[0] == conn.execute(
        "SELECT id FROM kernel.card WHERE summary = 'Fact number 17'").fetchone()[0]


@pytest.mark.parametrize("kw,message", [
    (dict(k=0), "p_k: must be between 1 and 100, got 0"),
    (dict(query_vector=[0.0] * DIM), "p_query_vector: must not be all zeros"),
    (dict(query_vector=[float("nan")] * DIM), "p_query_vector: must hold finite numbers only"),
    (dict(query_vector=[1.0] * 5), r"p_query_vector: must have the size of this user's card embeddings \(8\), got 5"),
])
def test_bad_recall_arguments_are_refused_naming_the_field(conn, user, kw, message):
    card(conn, user, "User's sister lives in Lisbon", embedding=axis(0), provider="test", model="toy", at=NOW)
    with pytest.raises(psycopg.Error, match=message), conn.transaction():
        recall(conn, user, "sister", **kw)
    with pytest.raises(psycopg.Error, match="p_query_text, p_query_vector: give at least one"), conn.transaction():
        recall(conn, user, "  ")
