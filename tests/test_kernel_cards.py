"""Cards: the same fact twice is one card (also when two writers race), a re-added fact is
never deleted, a contradicting fact keeps both cards and surfaces the pair until resolved,
about five notes on one subject roll into a summary card, and bad input is refused by field
with nothing written."""
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest

from helpers import card, kernel_rows, new_user, recall

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def user(conn):
    return new_user(conn, "kernel-cards")


def cards(conn, user) -> list[tuple]:
    return conn.execute("SELECT id, summary, tags, created_at, updated_at FROM kernel.card WHERE user_id = %s "
                        "ORDER BY created_at, summary", (user,)).fetchall()


def test_the_same_fact_written_again_is_the_same_card_moved_forward_never_a_second_or_a_deletion(conn, user):
    first = card(conn, user, "User is allergic to peanuts.", tags=["health"], at=NOW - timedelta(days=3))
    again = card(conn, user, "  user is ALLERGIC to peanuts ", tags=["food", "health"], at=NOW)
    assert (first["action"], again["action"]) == ("inserted", "updated")
    assert again["card_id"] == first["card_id"]
    [(cid, summary, tags, created, updated)] = cards(conn, user)
    assert cid == first["card_id"] and summary == "  user is ALLERGIC to peanuts "  # newest wording, in place
    assert tags == ["health", "food"] and created == NOW - timedelta(days=3) and updated == NOW
    assert conn.execute("SELECT count(*) FROM kernel.tombstone WHERE user_id = %s", (user,)).fetchone()[0] == 0
    card(conn, user, "User is allergic to cats", at=NOW)
    assert len(cards(conn, user)) == 2


def test_a_card_is_overwritten_in_place_by_id_and_cannot_take_another_cards_fact(conn, user):
    tea = card(conn, user, "User drinks tea", at=NOW - timedelta(days=1))["card_id"]
    coffee = card(conn, user, "User drinks coffee", at=NOW - timedelta(days=1))["card_id"]
    assert card(conn, user, "User drinks green tea", card_id=tea, at=NOW)["card_id"] == tea
    assert conn.execute("SELECT summary, updated_at FROM kernel.card WHERE id = %s", (tea,)).fetchone() == (
        "User drinks green tea", NOW)
    with pytest.raises(psycopg.errors.UniqueViolation, match=f"p_summary: card {coffee} already states this fact"), \
            conn.transaction():
        card(conn, user, "user drinks coffee.", card_id=tea)


def test_the_content_key_constraint_itself_refuses_a_duplicate_written_around_the_functions(conn, user):
    card(conn, user, "User lives in Porto", at=NOW)
    with pytest.raises(psycopg.errors.UniqueViolation, match="card_user_content_key_unique"), conn.transaction():
        conn.execute("INSERT INTO kernel.card (user_id, summary, source, content_key, ts_config) "
                     "VALUES (%s, 'user lives in porto!', 'msc', 'x', 'english')", (user,))


def test_two_writers_racing_on_one_fact_many_times_make_exactly_one_card(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        user = c.execute("SELECT memory.ensure_user('kernel-race')").fetchone()[0]
    start, errors, rounds = threading.Barrier(2), [], 150

    def writer(n: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                start.wait()
                for i in range(rounds):
                    # the shared fact, worded a little differently by each writer, between facts of its own
                    c.execute("SELECT kernel.upsert_card(%s, %s)", (user, ["User is allergic to peanuts",
                                                                          "user is allergic to peanuts."][n]))
                    c.execute("SELECT kernel.upsert_card(%s, %s)", (user, f"writer {n} noted fact {i}"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        with psycopg.connect(db_url) as c:
            peanuts = c.execute("SELECT count(*) FROM kernel.card WHERE user_id = %s AND summary ILIKE %s",
                                (user, "%allergic to peanuts%")).fetchone()[0]
            total = c.execute("SELECT count(*) FROM kernel.card WHERE user_id = %s", (user,)).fetchone()[0]
        assert peanuts == 1 and total == 1 + 2 * rounds
    finally:
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute("DELETE FROM memory.users WHERE user_id = %s", (user,))


def test_two_raw_inserts_of_one_fact_racing_in_open_transactions_leave_one_row(db_url):
    """The constraint decides, not a read before the write: the second insert waits for the
    first transaction and then finds the key taken."""
    with psycopg.connect(db_url, autocommit=True) as c:
        user = c.execute("SELECT memory.ensure_user('kernel-race-raw')").fetchone()[0]
    insert = ("INSERT INTO kernel.card (user_id, summary, source, content_key, ts_config) VALUES (%s, %s, 'msc', '', "
              "'english') ON CONFLICT (user_id, content_key) DO NOTHING")
    try:
        with psycopg.connect(db_url) as one, psycopg.connect(db_url) as two:
            assert one.execute(insert, (user, "User is left-handed")).rowcount == 1
            second = []
            waiter = threading.Thread(target=lambda: second.append(two.execute(insert, (user, "user is LEFT-handed.")).rowcount))
            waiter.start()
            waiter.join(0.5)
            assert waiter.is_alive(), "the second insert did not wait for the first transaction"
            one.commit()
            waiter.join()
            two.commit()
            assert second == [0]
            assert one.execute("SELECT count(*) FROM kernel.card WHERE user_id = %s", (user,)).fetchone()[0] == 1
    finally:
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute("DELETE FROM memory.users WHERE user_id = %s", (user,))


def test_a_contradicting_fact_keeps_both_cards_links_them_and_surfaces_the_pair_until_resolved(conn, user):
    blue = card(conn, user, "User's favourite colour is blue", tags=["key:favourite_colour"], at=NOW)["card_id"]
    green = card(conn, user, "User's favourite colour is green", tags=["key:favourite_colour"], at=NOW)
    assert green["contradicts"] == [blue]
    green = green["card_id"]
    assert {r[0] for r in cards(conn, user)} == {blue, green}
    [pair] = conn.execute("SELECT contradiction_id, summary_a, summary_b, reason FROM kernel.contradictions(%s)",
                          (user,)).fetchall()
    assert {pair[1], pair[2]} == {"User's favourite colour is blue", "User's favourite colour is green"}
    assert pair[3] == "both state key:favourite_colour"
    assert conn.execute("SELECT count(*) FROM kernel.edge WHERE src_id = %s AND dst_id = %s AND type = 'relates_to'",
                        (green, blue)).fetchone()[0] == 1
    [row] = recall(conn, user, "favourite colour", k=1, now=NOW)
    assert "open: see kernel.contradictions" in row["why"]
    # Pruning far in the future leaves both: only an explicit resolution settles it.
    conn.execute("SELECT * FROM kernel.prune(%s, %s)", (user, NOW + timedelta(days=5000)))
    assert len(conn.execute("SELECT * FROM kernel.contradictions(%s)", (user,)).fetchall()) == 1
    kept = conn.execute("SELECT kept_id, deleted_id FROM kernel.resolve_contradiction(%s, %s, %s)",
                        (user, pair[0], green)).fetchone()
    assert kept == (green, blue)
    assert [r[0] for r in cards(conn, user)] == [green]
    assert conn.execute("SELECT * FROM kernel.contradictions(%s)", (user,)).fetchall() == []


def test_a_pair_resolved_as_compatible_stays_resolved_when_a_card_is_written_again(conn, user):
    a = card(conn, user, "User works from home on Mondays", tags=["key:office_days"], at=NOW)["card_id"]
    b = card(conn, user, "User works at the office on Tuesdays", tags=["key:office_days"], at=NOW)["card_id"]
    [(cid,)] = conn.execute("SELECT contradiction_id FROM kernel.contradictions(%s)", (user,)).fetchall()
    assert conn.execute("SELECT kept_id, deleted_id FROM kernel.resolve_contradiction(%s, %s)", (user, cid)).fetchone() == (
        None, None)
    again = card(conn, user, "User works at the office on Tuesdays", tags=["key:office_days"], at=NOW)
    assert again["contradicts"] == [] and again["card_id"] == b
    assert conn.execute("SELECT * FROM kernel.contradictions(%s)", (user,)).fetchall() == []
    assert conn.execute("SELECT count(*) FROM kernel.contradictions(%s, true)", (user,)).fetchone()[0] == 1
    assert {r[0] for r in cards(conn, user)} == {a, b}


def test_near_identical_embeddings_with_different_content_are_a_contradiction(conn, user):
    v = np.zeros(16)
    v[0] = 1
    w = v.copy()
    w[1] = 0.05  # cosine 0.9988
    first = card(conn, user, "User's flight leaves at 9:40", embedding=v, provider="test", model="toy", at=NOW)["card_id"]
    other = card(conn, user, "User's flight leaves at 7:40", embedding=w, provider="test", model="toy", at=NOW)
    assert other["contradicts"] == [first]
    [(reason,)] = conn.execute("SELECT reason FROM kernel.contradictions(%s)", (user,)).fetchall()
    assert reason.startswith("near-identical embeddings (cosine similarity 0.999, test/toy)")
    far = v.copy()
    far[2] = 1.0  # cosine 0.707: related, not the same fact
    assert card(conn, user, "User's hotel is near the airport", embedding=far, provider="test", model="toy",
                at=NOW)["contradicts"] == []


def test_the_fifth_note_on_a_subject_rolls_the_older_four_into_one_summary_card(conn, user):
    rng = np.random.default_rng(1)
    notes, vectors = [], []
    texts = ["The roses need pruning in March.", "Tomatoes go in the greenhouse in April.",
             "The roses had aphids this spring.", "Basil grows best on the kitchen sill.",
             "The roses flowered twice this year."]
    for day, text in enumerate(texts):
        v = rng.standard_normal(8)
        vectors.append(v / np.linalg.norm(v))
        row = card(conn, user, text, subject="Garden", tags=["plants"], embedding=vectors[-1], provider="test",
                   model="toy", at=NOW + timedelta(days=day - 10))
        notes.append(row["card_id"])
        assert (row["summary_card_id"] is None) == (day < 4)
    summary_id = row["summary_card_id"]
    summary, kind, subject, tags = conn.execute("SELECT summary, kind, subject, tags FROM kernel.card WHERE id = %s",
                                                (summary_id,)).fetchone()
    assert (kind, subject, tags) == ("summary", "garden", ["plants"])
    assert summary.startswith("Summary of 4 notes: ")
    assert "roses" in summary and len(summary.split()) <= 70 + 4
    rolled = dict(conn.execute("SELECT id, rolled_into FROM kernel.card WHERE id = ANY(%s)", (notes,)).fetchall())
    assert [rolled[n] for n in notes] == [summary_id] * 4 + [None]  # the newest stays live
    assert sorted(r[0] for r in conn.execute("SELECT dst_id FROM kernel.edge WHERE src_id = %s AND type = 'reflects_on'",
                                             (summary_id,))) == sorted(notes[:4])
    [emb] = conn.execute("SELECT embedding FROM kernel.embedding WHERE mem_id = %s", (summary_id,)).fetchone()
    centre = np.mean(vectors[:4], axis=0)
    assert np.allclose(emb.to_numpy(), centre / np.linalg.norm(centre), atol=1e-5)


def test_the_summariser_is_a_replaceable_hook(conn, user):
    conn.execute("CREATE FUNCTION public.test_shout(p_texts text[], p_max_words int) RETURNS text LANGUAGE sql "
                 "AS $$ SELECT upper(array_to_string(p_texts, ' / ')) $$")
    conn.execute("SELECT ops.set_setting('kernel.summariser', '\"public.test_shout\"')")
    for day in range(5):
        row = card(conn, user, f"Walked the dog for {day + 1} km", subject="dog", at=NOW + timedelta(days=day - 10))
    summary = conn.execute("SELECT summary FROM kernel.card WHERE id = %s", (row["summary_card_id"],)).fetchone()[0]
    assert summary == "Summary of 4 notes: WALKED THE DOG FOR 1 KM / WALKED THE DOG FOR 2 KM / " \
                      "WALKED THE DOG FOR 3 KM / WALKED THE DOG FOR 4 KM"


def test_links_and_attachments_are_kept_once(conn, user):
    a = card(conn, user, "User is learning the cello", at=NOW)["card_id"]
    b = card(conn, user, "User's teacher is Ana", at=NOW)["card_id"]
    edge = conn.execute("SELECT kernel.link(%s, %s, %s)", (user, a, b)).fetchone()[0]
    assert conn.execute("SELECT kernel.link(%s, %s, %s)", (user, a, b)).fetchone()[0] == edge
    att = conn.execute("SELECT kernel.attach(%s, %s, 'url', 'https://example.org/cello', 'Cello school')",
                       (user, a)).fetchone()[0]
    assert conn.execute("SELECT kernel.attach(%s, %s, 'url', 'https://example.org/cello', 'Cello lessons')",
                        (user, a)).fetchone()[0] == att
    assert conn.execute("SELECT title FROM kernel.attachment WHERE mem_id = %s", (a,)).fetchall() == [("Cello lessons",)]


def test_config_values_are_checked_per_key_and_versioning_stays_off(conn, user):
    assert conn.execute("SELECT kernel.set_config(%s, 'prune_policy', '{\"max_cards\": 10}')", (user,)).fetchone()[0] == {
        "max_cards": 10, "stale_after_days": 365}
    for key, value, message in (
            ("versioning", "true", "p_value: versioning must be false: the kernel keeps no versions"),
            ("recall_weights", '{"text": -1}', r"p_value: recall_weights \.text must be a number between 0 and 100"),
            ("prune_policy", '{"stale_after": 3}', "p_value: prune_policy has no field stale_after"),
            ("recall_top_k", "0", "p_value: recall_top_k must be a whole number between 1 and 100"),
            ("emit_auto_on", '"yes"', "p_value: emit_auto_on must be true or false")):
        with pytest.raises(psycopg.Error, match=message), conn.transaction():
            conn.execute("SELECT kernel.set_config(%s, %s, %s)", (user, key, value))
    with pytest.raises(psycopg.Error, match="p_key: must be one of emit_auto_on"), conn.transaction():
        conn.execute("SELECT kernel.set_config(%s, 'colour', '1')", (user,))
    with pytest.raises(psycopg.Error, match="p_value: recall_top_k must be a whole number"), conn.transaction():
        conn.execute("INSERT INTO kernel.config (user_id, key, value) VALUES (%s, 'recall_top_k', '500')", (user,))


UNKNOWN = "00000000-0000-4000-8000-000000000042"
U = object()  # stands for the test's user
BAD = [  # (statement, its arguments, the error)
    ("SELECT kernel.upsert_card(%s, %s)", (U, "x" * 2001), "p_summary: must be at most 2000 characters"),
    ("SELECT kernel.upsert_card(%s, %s)", (U, " \n "), "p_summary: must not be empty"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_source => %s)", (U, "diary"), "p_source: must be one of msc, bio, export, journal"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_tags => %s)", (U, ["t"] * 65), "p_tags: must be a list of at most 64 tags"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_tags => %s)", (U, ["ok", " "]), "p_tags: every tag must be 1 to 100 characters"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_embedding => %s::real[], p_provider => 'p', p_model => 'm')",
     (U, [float("nan")] * 4), "p_embedding: must hold finite numbers only"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_embedding => %s::real[], p_provider => 'p', p_model => 'm')",
     (U, [float("inf")] + [1.0] * 3), "p_embedding: must hold finite numbers only"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_embedding => %s::real[], p_provider => 'p', p_model => 'm')",
     (U, [0.0] * 4), "p_embedding: must not be all zeros"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_embedding => %s::real[], p_provider => 'p', p_model => 'm')",
     (U, [1.0] * 5), "p_embedding: must have 4 dimensions like this user's other embeddings of the same provider and model, got 5"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_embedding => %s::real[])", (U, [1.0] * 4), "p_provider: an embedding needs its provider"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_model => %s)", (U, "m"), "p_embedding: required when p_provider or p_model is given"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_card_id => %s)", (U, UNKNOWN), f"p_card_id: unknown card {UNKNOWN}"),
    ("SELECT kernel.upsert_card(%s, 'ok', p_at => %s)", (U, datetime(2999, 1, 1, tzinfo=timezone.utc)),
     "p_at: must lie between 1970 and now"),
    ("SELECT kernel.upsert_card(%s, 'ok')", (UNKNOWN,), f"p_user_id: unknown user {UNKNOWN}"),
    ("SELECT kernel.link(%s, (SELECT id FROM kernel.card WHERE summary = 'User plays chess'), %s)", (U, UNKNOWN), f"p_dst_id: unknown card {UNKNOWN}"),
    ("SELECT kernel.link(%s, (SELECT id FROM kernel.card WHERE summary = 'User plays chess'), (SELECT id FROM kernel.card WHERE summary = 'User plays go'), %s)", (U, "cites"),
     "p_type: must be reflects_on or relates_to"),
    ("SELECT kernel.attach(%s, (SELECT id FROM kernel.card WHERE summary = 'User plays chess'), %s, 'x')", (U, "image"), "p_kind: must be url, file or ref"),
    ("SELECT kernel.attach(%s, (SELECT id FROM kernel.card WHERE summary = 'User plays chess'), 'url', %s)", (U, "not a url"),
     "p_ref: a url attachment must be an absolute URL"),
    ("SELECT kernel.journal('Ideation', %s, p_user_id => %s)", (" ".join(["word"] * 71), U),
     r"p_summary: must be at most 70 words \(spec 001\), got 71 words"),
    ("SELECT kernel.journal(%s, 'ok', p_user_id => %s)", ("Dreaming", U), "p_stage: must be one of Ideation"),
    ("SELECT kernel.journal('Ideation', 'ok', p_reflected_ids => %s::uuid[], p_user_id => %s)", ([UNKNOWN], U),
     f"p_reflected_ids: unknown card {UNKNOWN}"),
    ("SELECT kernel.journal('Ideation', 'ok', p_evidence => %s, p_user_id => %s)", ("[1]", U), "p_evidence: must be a JSON object"),
    ("SELECT kernel.resolve_contradiction(%s, %s)", (U, UNKNOWN), f"p_contradiction_id: unknown contradiction {UNKNOWN}"),
    ("SELECT kernel.prune(%s, %s)", (U, "infinity"), "p_now: must be a finite time after 1970"),
]


@pytest.mark.parametrize("sql,args,message", BAD, ids=[m.split(":")[0] + "-" + str(i) for i, (_, _, m) in enumerate(BAD)])
def test_bad_input_is_refused_by_field_and_rule_with_nothing_written(conn, user, sql, args, message):
    card(conn, user, "User plays chess", embedding=[1.0, 0, 0, 0], provider="p", model="m", at=NOW)
    card(conn, user, "User plays go", at=NOW)
    before = kernel_rows(conn, user)
    with pytest.raises(psycopg.Error, match=message), conn.transaction():
        conn.execute(sql, tuple(user if a is U else a for a in args))
    assert kernel_rows(conn, user) == before
