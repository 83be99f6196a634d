"""The turn protocol's journal and the kernel's upkeep, on a controlled clock: at most 70
words per entry, lifecycle stages that follow spec 001's triggers with every transition
recorded, a meta layer every 4 turns, journal compaction into weekly summaries, pruning by
prune_policy, and the pg_cron maintenance job (advisory-locked, idempotent, logged in ops)."""
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from helpers import card, journal, new_user

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def user(conn):
    return new_user(conn, "kernel-journal")


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_a_summary_of_70_words_is_taken_and_one_of_71_refused_naming_field_and_count(conn, user):
    assert journal(conn, user, "Ideation", words(70), at=NOW)["turn"] == 1
    with pytest.raises(psycopg.errors.StringDataRightTruncation,
                       match=r"^p_summary: must be at most 70 words \(spec 001\), got 71 words"), conn.transaction():
        journal(conn, user, "Ideation", words(71), at=NOW)
    with pytest.raises(psycopg.errors.CheckViolation, match="journal_summary_at_most_70_words"), conn.transaction():
        conn.execute("INSERT INTO kernel.journal (user_id, stage, summary, turn) VALUES (%s, 'Ideation', %s, 9)",
                     (user, words(71)))
    assert conn.execute("SELECT count(*) FROM kernel.journal WHERE user_id = %s", (user,)).fetchone()[0] == 1


def test_stages_follow_the_spec_triggers_and_every_transition_is_recorded(conn, user):
    with pytest.raises(psycopg.Error, match="p_stage: a lifecycle starts at Ideation"), conn.transaction():
        journal(conn, user, "Exploration", "jumped ahead", at=NOW)
    assert journal(conn, user, "Ideation", "what is the problem", at=NOW)["transition"] == "Ideation (start)"
    with pytest.raises(psycopg.Error, match=r"p_evidence: Ideation -> Data Acquisition .* needs p_evidence.unknowns "
                                            r"as a list of at least 2 non-empty texts, got 1"), conn.transaction():
        journal(conn, user, "Data Acquisition", "one unknown", evidence={"unknowns": ["budget"]}, at=NOW)
    with pytest.raises(psycopg.Error, match="p_stage: from Ideation the lifecycle moves on to Data Acquisition or "
                                            "Retrospective Innovation .*, got Synthesis"), conn.transaction():
        journal(conn, user, "Synthesis", "skipping", at=NOW)
    steps = [("Data Acquisition", {"unknowns": ["budget", "deadline"]}), ("Exploration", {"approaches": ["a", "b"]}),
             ("Synthesis", {"compared": ["a is cheaper", "b is faster"]}),
             ("Productionization", {"definition_of_done": "ships on Friday"})]
    for stage, evidence in steps:
        assert journal(conn, user, stage, f"now {stage}", evidence=evidence, at=NOW)["stage"] == stage
    with pytest.raises(psycopg.Error, match="p_evidence: Retrospective Innovation remixes an older summary"), \
            conn.transaction():
        journal(conn, user, "Retrospective Innovation", "remix", at=NOW)
    remix = journal(conn, user, "Retrospective Innovation", "remix the first idea",
                    evidence={"remix_of": str(conn.execute("SELECT id FROM kernel.journal WHERE turn = 1 AND user_id = %s",
                                                           (user,)).fetchone()[0])}, at=NOW)
    assert remix["transition"].startswith("Productionization -> Retrospective Innovation (every 5 turns")
    assert journal(conn, user, "Productionization", "back to shipping", at=NOW)["transition"] == (
        "Retrospective Innovation -> Productionization (back from Retrospective Innovation)")
    recorded = conn.execute("SELECT from_stage, to_stage, turn, trigger FROM kernel.stage_transition WHERE user_id = %s "
                            "ORDER BY turn", (user,)).fetchall()
    assert [(f, t, n) for f, t, n, _ in recorded] == [
        (None, "Ideation", 1), ("Ideation", "Data Acquisition", 2), ("Data Acquisition", "Exploration", 3),
        ("Exploration", "Synthesis", 4), ("Synthesis", "Productionization", 5),
        ("Productionization", "Retrospective Innovation", 6), ("Retrospective Innovation", "Productionization", 7)]
    assert recorded[1][3] == "at least 2 unknowns"


def test_retrospective_innovation_comes_only_every_five_turns(conn, user):
    first = journal(conn, user, "Ideation", "start", at=NOW)["journal_id"]
    for turn in range(2, 5):
        assert journal(conn, user, "Ideation", f"turn {turn}", at=NOW)["retrospective_due"] is False
    with pytest.raises(psycopg.Error, match="p_stage: Retrospective Innovation comes every 5 turns; 4 journaled"), \
            conn.transaction():
        journal(conn, user, "Retrospective Innovation", "too soon", evidence={"remix_of": str(first)}, at=NOW)
    assert journal(conn, user, "Ideation", "turn 5", at=NOW)["retrospective_due"] is True
    journal(conn, user, "Retrospective Innovation", "now", evidence={"remix_of": str(first)}, at=NOW)


def test_a_meta_layer_comes_every_four_turns_with_patterns_contradictions_and_decisions(conn, user):
    tea = card(conn, user, "User drinks tea", tags=["drinks", "key:drink"], at=NOW)["card_id"]
    coffee = card(conn, user, "User drinks coffee", tags=["drinks", "key:drink"], at=NOW)["card_id"]
    for turn in range(1, 4):
        row = journal(conn, user, "Ideation", f"turn {turn}", conclusion=f"decision {turn}", reflected_ids=[tea, coffee],
                      at=NOW)
        assert row["meta_layer_due"] is False
    with pytest.raises(psycopg.Error, match="turn: a meta-layer entry comes every 4 turns; 3 journaled since the last one"), \
            conn.transaction():
        conn.execute("SELECT kernel.write_meta_layer(%s)", (user,))
    assert journal(conn, user, "Ideation", "turn 4", reflected_ids=[tea], at=NOW)["meta_layer_due"] is True
    turn, summary, detail = conn.execute("SELECT turn, summary, detail FROM kernel.write_meta_layer(%s)", (user,)).fetchone()
    assert turn == 4 and len(summary.split()) <= 70
    assert detail["decisions"] == ["decision 1", "decision 2", "decision 3"]
    assert detail["patterns"][:2] == ["drinks (7)", "key:drink (7)"]
    [pair] = detail["contradictions"]
    assert sorted(pair.split(" <> ")) == ["User drinks coffee", "User drinks tea"]
    assert detail["turns"] == [1, 4]
    with pytest.raises(psycopg.Error, match="every 4 turns; 0 journaled"), conn.transaction():
        conn.execute("SELECT kernel.write_meta_layer(%s)", (user,))


def test_journal_entries_older_than_the_keep_are_compacted_week_by_week_once(conn, user):
    # Two full weeks of daily entries, long ago, and two recent ones.
    conn.execute("SET TIME ZONE 'UTC'")  # weeks start on Monday at midnight in the session's time zone
    monday = datetime(2025, 3, 3, tzinfo=timezone.utc)
    for day in range(14):
        journal(conn, user, "Ideation", f"Day {day} we talked about plan {day % 3}.", conclusion=f"keep plan {day % 3}",
                at=monday + timedelta(days=day, hours=9))
    for day in (1, 2):
        journal(conn, user, "Ideation", f"Recent day {day}.", at=NOW - timedelta(days=day))
    done = conn.execute("SELECT period_start, entries FROM kernel.compact_journal(%s, %s)", (user, NOW)).fetchall()
    assert done == [(monday, 7), (monday + timedelta(days=7), 7)]
    rows = conn.execute("SELECT kind, turn, summary, detail->>'entries', detail->>'first_turn' FROM kernel.journal "
                        "WHERE user_id = %s ORDER BY turn", (user,)).fetchall()
    assert [(k, t, e, f) for k, t, _, e, f in rows] == [
        ("compaction", 7, "7", "1"), ("compaction", 14, "7", "8"), ("turn", 15, None, None), ("turn", 16, None, None)]
    assert all(len(s.split()) <= 70 and s.startswith("Day ") for k, _, s, _, _ in rows if k == "compaction")
    assert conn.execute("SELECT * FROM kernel.compact_journal(%s, %s)", (user, NOW)).fetchall() == []
    # A late entry for a compacted week is folded into that week's entry.
    journal(conn, user, "Ideation", "A late note for the first week.", at=monday + timedelta(days=2))
    assert conn.execute("SELECT period_start, entries FROM kernel.compact_journal(%s, %s)", (user, NOW)).fetchall() == [
        (monday, 8)]
    assert journal(conn, user, "Ideation", "next", at=NOW)["turn"] == 18  # turn numbers keep counting


def test_prune_removes_stale_cards_and_trims_to_max_cards_by_usage_aware_recency(conn, user):
    def at(days):
        return NOW - timedelta(days=days)
    stale = card(conn, user, "User once lived in Oslo", at=at(400))["card_id"]
    recalled = card(conn, user, "User's passport number is in the drawer", at=at(400))["card_id"]
    conn.execute("SELECT * FROM kernel.recall(%s, 'passport drawer', p_now => %s)", (user, at(10)))  # touched since
    kept = [card(conn, user, f"Recent fact {i}", at=at(i))["card_id"] for i in range(1, 6)]
    conn.execute("SELECT kernel.set_config(%s, 'prune_policy', '{\"stale_after_days\": 365, \"max_cards\": 4}')", (user,))
    assert conn.execute("SELECT stale_deleted, trimmed FROM kernel.prune(%s, %s)", (user, NOW)).fetchone() == (1, 2)
    left = {r[0] for r in conn.execute("SELECT id FROM kernel.card WHERE user_id = %s", (user,))}
    # the oldest of the recent facts went; the card recalled 10 days ago counts as recent
    assert stale not in left and recalled in left and left == {recalled, *kept[:3]}
    assert conn.execute("SELECT stale_deleted, trimmed FROM kernel.prune(%s, %s)", (user, NOW)).fetchone() == (0, 0)
    assert conn.execute("SELECT row_key FROM kernel.tombstone WHERE user_id = %s AND table_name = 'card' ORDER BY 1",
                        (user,)).fetchall() == sorted([(str(stale),), (str(kept[3]),), (str(kept[4]),)])


def test_a_null_prune_limit_means_no_limit(conn, user):
    card(conn, user, "An old fact", at=NOW - timedelta(days=4000))
    conn.execute("SELECT kernel.set_config(%s, 'prune_policy', '{\"stale_after_days\": null}')", (user,))
    assert conn.execute("SELECT stale_deleted FROM kernel.prune(%s, %s)", (user, NOW)).fetchone()[0] == 0


def test_maintenance_runs_each_user_once_a_day_logs_in_ops_and_isolates_a_failing_user(conn, user):
    other = new_user(conn, "kernel-journal-other")
    card(conn, user, "An old fact", at=NOW - timedelta(days=4000))
    conn.execute("UPDATE ops.settings SET value = '6' WHERE key = 'kernel.compress_after'")  # nothing rolled on write
    for day in range(5):  # the summariser below fails on this user's notes
        card(conn, other, f"boom note {day}", subject="bombs", at=NOW - timedelta(days=10 - day))
    conn.execute("CREATE FUNCTION public.test_fragile(p_texts text[], p_max_words int) RETURNS text LANGUAGE plpgsql AS "
                 "$$ BEGIN IF array_to_string(p_texts, ' ') LIKE '%%boom%%' THEN RAISE EXCEPTION 'cannot summarise'; END IF; "
                 "RETURN 'fine'; END $$")
    conn.execute("SELECT ops.set_setting('kernel.summariser', '\"public.test_fragile\"')")
    conn.execute("UPDATE ops.settings SET value = '5' WHERE key = 'kernel.compress_after'")
    later = NOW + timedelta(days=1)
    run = conn.execute("SELECT kernel.run_maintenance(%s)", (later,)).fetchone()[0]
    log = conn.execute("SELECT user_id, step, rows, ok, error FROM ops.kernel_run_log WHERE run_id = %s "
                       "AND user_id IN (%s, %s) ORDER BY user_id, logged_at", (run, user, other)).fetchall()
    mine = [(s, r) for u, s, r, ok, _ in log if u == user]
    assert mine == [("prune stale", 1), ("trim to max_cards", 0), ("compress", 0), ("compact journal", 0),
                    ("text stats", 0), ("done", 0)]
    [(_, step, _, ok, error)] = [row for row in log if row[0] == other]
    assert (step, ok) == ("failed", False) and error.startswith("compress: cannot summarise")
    assert conn.execute("SELECT count(*) FROM kernel.card WHERE user_id = %s AND rolled_into IS NOT NULL",
                        (other,)).fetchone()[0] == 0
    status = conn.execute("SELECT status, users_done, users_failed FROM bi.kernel_runs WHERE run_id = %s",
                          (run,)).fetchone()
    assert status[0] == "partial" and status[1] >= 1 and status[2] == 1
    # Same day again: the maintained user is not redone; the failed one is retried.
    again = conn.execute("SELECT kernel.run_maintenance(%s)", (later,)).fetchone()[0]
    redone = {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM ops.kernel_run_log WHERE run_id = %s "
                                         "AND user_id IS NOT NULL", (again,))}
    assert user not in redone and other in redone


def test_maintenance_takes_an_advisory_lock_and_a_second_run_waits_for_nothing(conn, db_url):
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('psimem.kernel.maintenance'))")
        try:
            assert conn.execute("SELECT kernel.run_maintenance()").fetchone()[0] is None
        finally:
            holder.execute("SELECT pg_advisory_unlock(hashtext('psimem.kernel.maintenance'))")
    assert conn.execute("SELECT kernel.run_maintenance()").fetchone()[0] is not None


def test_pg_cron_runs_the_maintenance_on_the_configured_schedule(conn):
    conn.execute("SELECT ops.set_schedule('kernel_maintenance', '5 * * * *')")
    assert conn.execute("SELECT schedule, command FROM cron.job WHERE jobname = 'psimem-kernel-maintenance'").fetchone() == (
        "5 * * * *", "SELECT kernel.run_maintenance()")
    with pytest.raises(psycopg.Error, match="setting cron.kernel_maintenance must be a pg_cron schedule"), conn.transaction():
        conn.execute("SELECT ops.set_schedule('kernel_maintenance', 'hourly')")
