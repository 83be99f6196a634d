"""CALL memory.night_cycle(): commits per batch of users, resumes a killed run (terminated
backend and server crash), holds a taken session only for its user's batch, and fails the
call when a user failed. The procedure commits, so these tests commit their data and
remove it afterwards (users by reference, runs and jobs by id)."""
from __future__ import annotations

import os
import signal
import threading
import time

import psycopg
import pytest

import night_script
from conftest import wait_until_accepting
from helpers import record

MARK = "night-test"  # the test summariser holds an advisory lock (MARK, user) while it runs
SUMMARISER = f"""
CREATE OR REPLACE FUNCTION public.night_test_summariser(p_session_id uuid, p_first int, p_last int)
RETURNS TABLE (turn_number int, sentence text) LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('{MARK}'),
        hashtext((SELECT s.user_id::text FROM memory.sessions s WHERE s.session_id = p_session_id)));
    PERFORM pg_sleep(%s);
    IF EXISTS (SELECT 1 FROM memory.sessions s JOIN memory.users u USING (user_id)
               WHERE s.session_id = p_session_id AND u.external_ref LIKE 'night-bad-%%') THEN
        RAISE EXCEPTION 'summariser refused';
    END IF;
    RETURN QUERY SELECT * FROM memory.summarise_facts(p_session_id, p_first, p_last);
END $$"""
SETTINGS = ("night.summariser", "night.live_interrogative_distance", "night.batch_users", "night.session_idle",
            "night.index_rebuild_min_blocks", "night.index_rebuild_ratio")
COUNTED = ("memory.flux_arcs", "memory.holographic_blocks", "memory.block_relationships", "memory.consolidations")


class Night:
    """Committed Night Cycle data for one test, and the knobs the tests turn."""

    def __init__(self, url: str):
        self.url = url
        self.c = psycopg.connect(url, autocommit=True)
        self.saved = dict(self.c.execute("SELECT key, value FROM ops.settings WHERE key = ANY(%s)", (list(SETTINGS),)))
        self.first_run = self.c.execute("SELECT coalesce(max(run_id), 0) FROM ops.cycle_runs").fetchone()[0]
        self.first_job = self.c.execute("SELECT coalesce(max(job_id), 0) FROM ops.jobs").fetchone()[0]
        self.refs: list[str] = []
        self.summariser_sleep(0)
        self.set("night.summariser", '"public.night_test_summariser"')
        self.set("night.live_interrogative_distance", "-1")  # dead zones: the summariser runs for every user

    def reconnect(self) -> None:
        self.c.close()
        wait_until_accepting(self.url)
        self.c = psycopg.connect(self.url, autocommit=True)

    def set(self, key: str, value: str) -> None:
        self.c.execute("SELECT ops.set_setting(%s, %s)", (key, value))

    def summariser_sleep(self, seconds: float) -> None:
        self.c.execute(SUMMARISER % float(seconds))

    def build(self, n: int, prefix: str) -> list[tuple]:
        """n users of the scripted conversation (27 turns, 4 arcs, 5 blocks each), in the
        order the cycle takes them (user_id)."""
        users = []
        with psycopg.connect(self.url) as c:
            for i in range(n):
                ref = f"{prefix}-{i}"
                self.refs.append(ref)
                users.append(night_script.build(c, ref=ref))
        return sorted(users, key=lambda u: u[0])

    def counts(self, user) -> list[int]:
        return [self.c.execute(f"SELECT count(*) FROM {t} WHERE user_id = %s", (user,)).fetchone()[0] for t in COUNTED]

    def runs(self) -> list[tuple]:
        return self.c.execute("SELECT run_id, status, users_done, users_failed FROM ops.cycle_runs WHERE run_id > %s "
                              "ORDER BY run_id", (self.first_run,)).fetchall()

    def in_flight(self, user) -> bool:
        """Whether the cycle is summarising a zone of this user (past stage 0: its sessions are taken)."""
        return self.c.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
            "AND classid::bigint = (hashtext(%s)::bigint & 4294967295) AND objid::bigint = (hashtext(%s)::bigint & 4294967295))",
            (MARK, str(user))).fetchone()[0]

    def wait_until_in_flight(self, user, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not self.in_flight(user):
            assert time.monotonic() < deadline, f"the cycle never reached user {user}"
            time.sleep(0.02)

    def close(self) -> None:
        self.reconnect()
        for key, value in self.saved.items():
            self.c.execute("UPDATE ops.settings SET value = %s WHERE key = %s", (psycopg.types.json.Jsonb(value), key))
        self.c.execute("DELETE FROM memory.users WHERE external_ref = ANY(%s)", (self.refs,))
        self.c.execute("DELETE FROM ops.cycle_runs WHERE run_id > %s", (self.first_run,))
        self.c.execute("DELETE FROM ops.jobs WHERE job_id > %s", (self.first_job,))
        self.c.execute("DROP FUNCTION public.night_test_summariser(uuid, int, int)")
        self.c.close()


@pytest.fixture
def night(db_url):
    n = Night(db_url)
    try:
        yield n
    finally:
        n.close()


def wait_until_reaped(pid: int, seconds: float = 30) -> None:
    """Until the postmaster has reaped the killed backend it still accepts connections; from
    then on it is in crash recovery. Reconnecting earlier could catch the server still up and
    then lose that connection to the recovery."""
    deadline = time.monotonic() + seconds
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, f"backend {pid} was never reaped"
        time.sleep(0.02)


class Call(threading.Thread):
    """CALL memory.night_cycle() in its own session, as pg_cron does."""

    def __init__(self, url: str, args: str = ""):
        super().__init__(daemon=True)
        self.url, self.args = url, args
        self.pid = self.error = self.ended = None
        self.notices: list[str] = []
        self.started_pid = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as c:
                c.add_notice_handler(lambda d: self.notices.append(d.message_primary))
                self.pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
                self.started_pid.set()
                c.execute(f"CALL memory.night_cycle({self.args})")
        except psycopg.Error as e:
            self.error = e
        finally:
            self.ended = time.monotonic()
            self.started_pid.set()


def call(url: str, args: str = "") -> Call:
    t = Call(url, args)
    t.start()
    t.join(120)
    assert not t.is_alive()
    return t


def assert_whole_or_untouched(night: Night, users) -> list:
    """Every user is either fully consolidated (5 blocks, every session consolidated once) or
    untouched: a killed batch leaves nothing half-written. Returns the consolidated ones."""
    done = []
    for user, sessions in users:
        counts = night.counts(user)
        assert counts in ([4, 8, 6, 3], [0, 0, 0, 0]), (user, counts)  # arcs, blocks, relationships, consolidations
        taken = night.c.execute("SELECT count(*) FROM memory.sessions WHERE session_id = ANY(%s) AND consolidated_turn > 0",
                                (sessions,)).fetchone()[0]
        assert taken == (3 if counts[0] else 0)
        if counts[0]:
            done.append(user)
    return done


def assert_resumed_to_the_end(night: Night, users, run_id: int) -> None:
    """The run finished as one run: every user consolidated once, each stage logged once per user."""
    assert [r[:2] for r in night.runs()][0] == (run_id, "ok")
    assert assert_whole_or_untouched(night, users) == [u for u, _ in users]
    for user, _ in users:
        logged = night.c.execute("SELECT stage, count(*) FROM ops.cycle_stage_log WHERE run_id = %s AND user_id = %s "
                                 "GROUP BY stage ORDER BY stage", (run_id, user)).fetchall()
        assert logged == [(s, 1) for s in (0, 1, 2, 3, 4, 5, 6, 7, 9)], (user, logged)
    before = [night.counts(u) for u, _ in users]
    again = call(night.url)
    assert again.error is None
    assert [night.counts(u) for u, _ in users] == before  # a second complete run creates nothing
    assert night.runs()[-1][1] == "ok"


def test_a_terminated_run_resumes_where_it_stopped(night):
    night.set("night.batch_users", "1")
    users = night.build(4, "night-term")
    night.summariser_sleep(0.15)
    cycle = Call(night.url)
    cycle.start()
    night.wait_until_in_flight(users[1][0])  # the first user's batch has committed
    night.c.execute("SELECT pg_terminate_backend(%s)", (cycle.pid,))
    cycle.join(30)
    assert isinstance(cycle.error, psycopg.OperationalError)

    (run_id, status, done, failed), = night.runs()
    assert status == "running" and failed == 0 and done >= 1
    assert assert_whole_or_untouched(night, users) == [users[0][0]]
    cursor = night.c.execute("SELECT resume_after FROM ops.cycle_runs WHERE run_id = %s", (run_id,)).fetchone()[0]
    assert users[0][0] <= cursor < users[1][0]
    assert night.c.execute("SELECT pg_try_advisory_lock(hashtext('psimem.night_cycle'))").fetchone()[0]  # released
    night.c.execute("SELECT pg_advisory_unlock(hashtext('psimem.night_cycle'))")

    night.summariser_sleep(0)
    resumed = call(night.url)
    assert resumed.error is None and any(f"resuming run {run_id}" in n for n in resumed.notices)
    assert_resumed_to_the_end(night, users, run_id)


def test_a_server_crash_mid_run_loses_nothing_and_the_next_call_finishes_the_run(night):
    """kill -9 of the cycle's backend: PostgreSQL kills every session and recovers from WAL,
    as after a server crash. Backfill mode is on, so the HNSW indexes of the blocks and of
    the turns they keep are dropped (committed) when the crash comes; the resumed run builds them."""
    night.set("night.batch_users", "1")
    night.set("night.index_rebuild_min_blocks", "1")
    night.set("night.index_rebuild_ratio", "0")
    hnsw = ("SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid IN ('memory.holographic_blocks'::regclass, "
            "'memory.block_turns'::regclass) AND a.amname = 'hnsw' ORDER BY 1")
    indexes = night.c.execute(hnsw).fetchall()
    assert len(indexes) == 3
    users = night.build(4, "night-crash")
    night.summariser_sleep(0.15)
    cycle = Call(night.url)
    cycle.start()
    night.wait_until_in_flight(users[2][0])
    os.kill(cycle.pid, signal.SIGKILL)
    cycle.join(30)
    assert cycle.error is not None
    wait_until_reaped(cycle.pid)
    night.reconnect()

    (run_id, status, *_), = night.runs()
    assert status == "running"
    # Batches commit asynchronously: the last ones before the crash may be lost, whole.
    done = assert_whole_or_untouched(night, users)
    assert done == [u for u, _ in users][:len(done)] and len(done) < 4
    assert night.c.execute(hnsw).fetchall() == []
    assert len(night.c.execute("SELECT block_indexes FROM ops.cycle_runs WHERE run_id = %s", (run_id,)).fetchone()[0]) == 3
    assert night.c.execute("SELECT count(*) FROM memory.night_blocks").fetchone()[0] == 0  # unlogged: emptied by recovery

    night.summariser_sleep(0)
    resumed = call(night.url)
    assert resumed.error is None
    assert night.c.execute(hnsw).fetchall() == indexes
    blocks = night.c.execute("SELECT count(*) FROM memory.holographic_blocks").fetchone()[0]
    assert night.c.execute("SELECT rows FROM ops.cycle_stage_log WHERE run_id = %s AND stage = 6 AND user_id IS NULL",
                           (run_id,)).fetchall() == [(blocks,)]
    night.set("night.index_rebuild_min_blocks", "2000")  # the run that checks "nothing new" is not a backfill
    assert_resumed_to_the_end(night, users, run_id)


def test_a_writer_into_a_taken_session_waits_for_that_users_batch_only(night):
    """A turn written into a session the cycle has taken waits until that user's batch
    commits (not until the cycle ends) and is left for the next cycle; a turn written into
    a session of a user the cycle has not reached yet does not wait, and that session is
    then left whole for the next cycle (it is no longer idle)."""
    night.set("night.batch_users", "1")
    (first, (f1, f2, f3)), (second, (s1, s2, s3)) = night.build(2, "night-writer")
    night.summariser_sleep(0.6)  # a second and more per user (at least two dead zones each)
    cycle = Call(night.url)
    cycle.start()
    night.wait_until_in_flight(first)
    waits = {}

    def write(key, sid):
        t0 = time.monotonic()
        with psycopg.connect(night.url) as c:
            record(c, sid, f"a late turn ({key})", perplexity=12)
            c.commit()
        waits[key] = (time.monotonic() - t0, time.monotonic())

    writers = [threading.Thread(target=write, args=a) for a in (("taken", f1), ("ahead", s1))]
    for w in writers:
        w.start()
    night.wait_until_in_flight(second)  # the first user's batch has committed
    second_started = time.monotonic()
    for w in writers:
        w.join(60)
    cycle.join(60)
    assert cycle.error is None
    assert waits["ahead"][0] < 0.5
    assert waits["taken"][0] > 0.3, "the taken session was not locked"
    assert waits["taken"][1] < second_started + 0.3 and waits["taken"][1] < cycle.ended - 0.5, \
        "the writer waited for more than its user's batch"
    consolidated = dict(night.c.execute("SELECT session_id, consolidated_turn FROM memory.sessions WHERE session_id = ANY(%s)",
                                        ([f1, s1, s2],)).fetchall())
    assert consolidated == {f1: 14, s1: 0, s2: 8}
    assert night.c.execute("SELECT max(turn_number) FROM memory.day_table WHERE session_id = %s", (f1,)).fetchone()[0] == 15

    night.set("night.session_idle", '"0 seconds"')
    assert call(night.url).error is None  # the next cycle takes both late turns
    consolidated = dict(night.c.execute("SELECT session_id, consolidated_turn FROM memory.sessions WHERE session_id = ANY(%s)",
                                        ([f1, s1],)).fetchall())
    assert consolidated == {f1: 15, s1: 15}


def test_a_failed_user_fails_the_call_after_the_others_commit(night):
    """So that pg_cron's job_run_details does not say succeeded (test_cron_runs shows it does
    not), with each failure in ops.cycle_stage_log and the others' work committed."""
    night.set("night.batch_users", "2")
    users = night.build(1, "night-bad") + night.build(2, "night-good")
    bad = users[[u for u, _ in users].index(night.c.execute(
        "SELECT user_id FROM memory.users WHERE external_ref = 'night-bad-0'").fetchone()[0])][0]
    done = call(night.url)
    assert isinstance(done.error, psycopg.errors.RaiseException)
    message = done.error.diag.message_primary
    assert f"user {bad}, stage 4 (compression): summariser refused" in message
    assert any("failed at stage 4 (compression): summariser refused" in n for n in done.notices)
    for user, _ in users:
        assert night.counts(user) == ([0, 0, 0, 0] if user == bad else [4, 8, 6, 3])
    (run_id, status, ok, failed), = night.runs()
    assert (status, failed) == ("partial", 1) and ok >= 2
    assert night.c.execute("SELECT user_id, stage, ok FROM ops.cycle_stage_log WHERE run_id = %s AND NOT ok",
                           (run_id,)).fetchall() == [(bad, 4, False)]
    assert night.c.execute("SELECT pg_try_advisory_lock(hashtext('psimem.night_cycle'))").fetchone()[0]  # released
    night.c.execute("SELECT pg_advisory_unlock(hashtext('psimem.night_cycle'))")


def test_the_procedure_refuses_to_run_inside_a_transaction_and_holds_no_lock_after(night):
    with psycopg.connect(night.url) as c:
        with pytest.raises(psycopg.errors.InvalidTransactionTermination):
            c.execute("CALL memory.night_cycle()")
        c.rollback()
        assert c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                         ).fetchone()[0] == 0
    assert night.runs() == []
