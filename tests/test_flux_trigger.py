"""The day_table trigger sets flux_state live from the session's rolling perplexity."""
import statistics

from helpers import new_session, new_user, record

# 5 baseline turns, a spike, a fall, two stable turns that close the window, then calm.
SCRIPT = [10, 11, 10, 11, 10, 30, 25, 15, 14.5, 14.4, 10]
EXPECTED = ["baseline"] * 5 + ["spike", "resolution", "resolution", "resolution", "stable", "baseline"]


def states(conn, sid):
    return [r[0] for r in conn.execute(
        "SELECT flux_state FROM memory.day_table WHERE session_id = %s ORDER BY turn_number", (sid,))]


def test_scripted_sequence_gives_spike_and_resolution_turns(conn):
    sid = new_session(conn, new_user(conn, "flux-a"))
    for p in SCRIPT:
        record(conn, sid, content=f"ppl {p}", perplexity=p)
    assert states(conn, sid) == EXPECTED
    open_, peak, baseline = conn.execute(
        "SELECT flux_window_open, flux_peak, flux_baseline FROM memory.sessions WHERE session_id = %s", (sid,)).fetchone()
    assert not open_ and peak == 30 and abs(baseline - 10.4) < 1e-6


def test_rising_again_inside_an_open_window_is_a_spike(conn):
    sid = new_session(conn, new_user(conn, "flux-b"))
    for p in [10, 11, 10, 11, 10, 20, 40, 39.9, 39.8]:
        record(conn, sid, content="x", perplexity=p)
    assert states(conn, sid)[5:] == ["spike", "spike", "resolution", "stable"]


def test_parameters_come_from_the_settings_table(conn):
    conn.execute("SELECT ops.set_setting('flux.spike_sigma', '100')")
    sid = new_session(conn, new_user(conn, "flux-c"))
    for p in SCRIPT:
        record(conn, sid, content="x", perplexity=p)
    assert set(states(conn, sid)) == {"baseline"}


def test_sessions_are_independent_and_turns_without_perplexity_get_no_state(conn):
    u = new_user(conn, "flux-d")
    s1, s2 = new_session(conn, u), new_session(conn, u)
    for p in SCRIPT[:5]:
        record(conn, s1, content="x", perplexity=p)
    record(conn, s2, content="x", perplexity=30)  # a new session has no baseline yet
    record(conn, s1, content="no score")
    record(conn, s1, content="x", perplexity=30)
    assert states(conn, s2) == ["baseline"]
    assert states(conn, s1)[5:] == [None, "spike"]


def test_turns_are_numbered_per_session(conn):
    u = new_user(conn, "flux-e")
    s = new_session(conn, u)
    for _ in range(3):
        record(conn, s, content="x")
    nums = [r[0] for r in conn.execute("SELECT turn_number FROM memory.day_table WHERE session_id = %s ORDER BY 1", (s,))]
    assert nums == [1, 2, 3]


def test_each_turn_keeps_its_live_baseline_and_the_spike_that_opened_its_window(conn):
    sid = new_session(conn, new_user(conn, "flux-f"))
    for p in SCRIPT:
        record(conn, sid, content="x", perplexity=p)
    rows = conn.execute("SELECT flux_baseline_mean, flux_baseline_sd, flux_arc_start FROM memory.day_table "
                        "WHERE session_id = %s ORDER BY turn_number", (sid,)).fetchall()
    # the spike (turn 6) to the stable turn closing its window (turn 10) belong to arc 6
    assert [r[2] for r in rows] == [None] * 5 + [6] * 5 + [None]
    assert rows[0][0] is None and rows[0][1] == 0
    assert abs(rows[5][0] - statistics.mean(SCRIPT[:5])) < 1e-6
    assert abs(rows[5][1] - statistics.stdev(SCRIPT[:5])) < 1e-6
    assert abs(rows[10][0] - statistics.mean(SCRIPT[:10])) < 1e-5  # window of up to 20 earlier turns
