"""Bad input is refused with an error naming the field and the rule, and leaves nothing."""
import json

import numpy as np
import psycopg
import pytest

from helpers import NDIM, UDIM, new_session, new_user, record, unit
from loaders.turns import BadInput, ingest_jsonl, ingest_rows


def count(conn, table="memory.day_table"):
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.mark.parametrize("kwargs,message", [
    (dict(universal=np.ones(3)), "p_universal_embedding: must have 768 dimensions"),
    (dict(native=np.ones(NDIM + 1)), "p_native_embedding: must have 4096 dimensions"),
    (dict(universal=np.full(UDIM, np.nan)), "p_universal_embedding: must hold finite numbers only"),
    (dict(native=np.full(NDIM, np.inf)), "p_native_embedding: must hold finite numbers only"),
    (dict(content=""), "content: must not be empty"),
    (dict(content="   \n"), "content: must not be empty"),
    (dict(content="x" * 100001), "content: must be at most 100000 characters"),
    (dict(role="robot"), "role: must be one of user, assistant, system"),
    (dict(perplexity=-0.5), "perplexity_score: must be a finite number between 0 and 1000000000"),
    (dict(perplexity=float("nan")), "perplexity_score: must be a finite number between 0 and 1000000000"),
    (dict(turn_number=0), "turn_number: must be between 1 and 1000000"),
])
def test_record_turn_refuses_bad_fields(conn, kwargs, message):
    s = new_session(conn, new_user(conn, "bad-a"))
    before = count(conn)
    with pytest.raises(psycopg.Error, match=message), conn.transaction():
        record(conn, s, **{"content": "ok", **kwargs})
    assert count(conn) == before


def test_unknown_session_and_user_are_refused(conn):
    with pytest.raises(psycopg.Error, match="session_id: unknown session"), conn.transaction():
        record(conn, "00000000-0000-0000-0000-0000000000aa")
    with pytest.raises(psycopg.Error, match="p_user_id: unknown user"), conn.transaction():
        conn.execute("SELECT memory.start_session('00000000-0000-0000-0000-0000000000bb')")
    with pytest.raises(psycopg.Error, match="p_tier: must be one of normal, meso, elder"), conn.transaction():
        conn.execute("SELECT memory.ensure_user('bad-tier', 'gold')")


def rows(n, rng, **bad):
    out = [dict(user="bulk-u", session="bulk-s", role="user" if i % 2 == 0 else "assistant",
                content=f"turn {i}", universal_embedding=unit(rng, UDIM).tolist(), perplexity_score=10.0 + i)
           for i in range(n)]
    out[2].update(bad)
    return out


@pytest.mark.parametrize("bad,message", [
    (dict(universal_embedding=[0.1] * 5), r"line 3: expected 768 dimensions, not 5 \(column universal_embedding\)"),
    (dict(universal_embedding=[float("nan")] * UDIM), r"line 3: NaN not allowed in vector \(column universal_embedding\)"),
    (dict(universal_embedding=["a"] * UDIM), "line 3: universal_embedding: must be a list of numbers"),
    (dict(role="narrator"), "line 3: role: must be one of user, assistant, system"),
    (dict(content=""), "line 3: content: must not be empty"),
    (dict(perplexity_score=-1), "line 3: perplexity_score: must be a finite number between 0"),
    (dict(session_id="00000000-0000-0000-0000-0000000000cc"), "line 3: session_id: unknown session"),
    (dict(created_at="yesterday"), "line 3: created_at: Invalid isoformat"),
])
def test_bulk_load_with_one_bad_row_loads_nothing_and_names_it(conn, bad, message):
    rng = np.random.default_rng(5)
    before = [count(conn, t) for t in ("memory.day_table", "memory.sessions", "memory.users")]
    with pytest.raises(BadInput, match=message):
        ingest_rows(conn, rows(5, rng, **bad))
    assert [count(conn, t) for t in ("memory.day_table", "memory.sessions", "memory.users")] == before


def test_bulk_load_from_jsonl_loads_every_row_in_order(conn, tmp_path):
    rng = np.random.default_rng(6)
    path = tmp_path / "turns.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows(6, rng)) + "\n")
    assert ingest_jsonl(conn, str(path)) == 6
    got = conn.execute("SELECT turn_number, content, flux_state IS NOT NULL FROM memory.day_table d "
                       "JOIN memory.sessions s USING (session_id) WHERE s.external_ref = 'bulk-s' ORDER BY 1").fetchall()
    assert got == [(i + 1, f"turn {i}", True) for i in range(6)]


def test_bulk_load_reports_the_file_line_past_blank_lines(conn, tmp_path):
    rng = np.random.default_rng(7)
    r = rows(3, rng, role="bot")
    path = tmp_path / "turns.jsonl"
    path.write_text(json.dumps(r[0]) + "\n\n" + json.dumps(r[1]) + "\n" + json.dumps(r[2]) + "\n")
    with pytest.raises(BadInput, match="line 4: role"):
        ingest_jsonl(conn, str(path))
    path.write_text(json.dumps(r[0]) + "\n{not json\n")
    with pytest.raises(BadInput, match="line 2: not valid JSON"):
        ingest_jsonl(conn, str(path))


@pytest.mark.parametrize("kwargs,message", [
    (dict(turn_number=2**31 - 2), "turn_number: must be between 1 and 1000000"),
    (dict(created_at="9999-12-31 00:00:00+00"), "created_at: must lie between 1970-01-01 and now"),
    (dict(created_at="1969-12-31 00:00:00+00"), "created_at: must lie between 1970-01-01 and now"),
    (dict(perplexity=1e39), "perplexity_score: must be a finite number between 0 and 1000000000"),
    (dict(perplexity=float("inf")), "perplexity_score: must be a finite number between 0 and 1000000000"),
    (dict(universal=np.zeros(UDIM)), "p_universal_embedding: must not be all zeros"),
    (dict(native=np.zeros(NDIM)), "p_native_embedding: must not be all zeros"),
])
def test_out_of_range_numbers_times_and_zero_vectors_are_refused_by_field(conn, kwargs, message):
    s = new_session(conn, new_user(conn, "bad-range"))
    before = count(conn)
    with pytest.raises(psycopg.Error, match=message), conn.transaction():
        record(conn, s, **{"content": "ok", **kwargs})
    assert count(conn) == before
    record(conn, s, "the session still takes turns")  # a refused turn number left nothing behind
    assert count(conn) == before + 1


def test_a_future_session_start_is_refused(conn):
    user = new_user(conn, "bad-future")
    before = count(conn, "memory.sessions")
    with pytest.raises(psycopg.Error, match="p_started_at: must lie between 1970-01-01"), conn.transaction():
        new_session(conn, user, started_at="9999-01-01 00:00:00+00")
    assert count(conn, "memory.sessions") == before


@pytest.mark.parametrize("fn", ["memory.recall_recent", "memory.recall_blocks"])
def test_an_all_zero_query_vector_is_refused(conn, fn):
    s = new_session(conn, new_user(conn, "bad-q"))
    args = "%s::real[], %s, NULL, 5" if fn == "memory.recall_recent" else "%s::real[], 5"
    params = ([0.0] * UDIM, s) if fn == "memory.recall_recent" else ([0.0] * UDIM,)
    with pytest.raises(psycopg.Error, match="p_query_vector: must not be all zeros"), conn.transaction():
        conn.execute(f"SELECT * FROM {fn}({args})", params)


def test_bulk_load_refuses_unknown_keys_and_zero_vectors_naming_the_line(conn, tmp_path):
    rng = np.random.default_rng(8)
    before = count(conn)
    with pytest.raises(BadInput, match=r"line 3: perplexity: unknown key \(known: .*perplexity_score"):
        ingest_rows(conn, rows(4, rng, perplexity=12.0))
    with pytest.raises(BadInput, match="line 3: universal_embedding: must not be all zeros"):
        ingest_rows(conn, rows(4, rng, universal_embedding=[0.0] * UDIM))
    with pytest.raises(BadInput, match="line 3: turn_number: must be between 1 and 1000000"):
        ingest_rows(conn, rows(4, rng, turn_number=2**31 - 1))
    assert count(conn) == before


@pytest.mark.parametrize("key,value,message", [
    ("flux.baseline_window", 0, "flux.baseline_window must be between 2 and 1000, got 0"),
    ("limits.content_max_chars", -1, "limits.content_max_chars must be between 1 and 10000000, got -1"),
    ("flux.spike_sigma", "high", r"flux.spike_sigma must be a JSON number between 0 and 100"),
    ("night.margin_turns", 1.5, "night.margin_turns must be an integer between 0 and 100"),
    ("recall.window", "a week or so", 'recall.window must be an interval such as "30 minutes"'),
    ("night.insight_markers", "(unclosed", "night.insight_markers must be a valid regular expression"),
    ("night.summariser", "memory.no_such_function", "night.summariser must name an existing function"),
    ("cron.night_cycle", "every night", "cron.night_cycle must be a pg_cron schedule"),
    ("cortex.index_type", "HNSW_MAGIC", "cortex.index_type must be one of IVF_FLAT, IVF_PQ, IVF_HNSW_SQ, IVF_HNSW_PQ"),
    ("embedding.universal_dim", 384, "embedding.universal_dim is fixed at install time"),
])
def test_every_setting_is_checked_against_its_type_and_range(conn, key, value, message):
    before = conn.execute("SELECT value FROM ops.settings WHERE key = %s", (key,)).fetchone()[0]
    with pytest.raises(psycopg.Error, match=message), conn.transaction():
        conn.execute("SELECT ops.set_setting(%s, %s::jsonb)", (key, json.dumps(value)))
    # a plain UPDATE (psql, a BI tool's admin) meets the same rule
    with pytest.raises(psycopg.Error, match=message.replace("setting ", "")), conn.transaction():
        conn.execute("UPDATE ops.settings SET value = %s::jsonb WHERE key = %s", (json.dumps(value), key))
    assert conn.execute("SELECT value FROM ops.settings WHERE key = %s", (key,)).fetchone()[0] == before


def test_every_installed_setting_satisfies_its_own_rule(conn):
    bad = conn.execute("SELECT key, ops._setting_problem(value, value_type, min_value, max_value, allowed) "
                       "FROM ops.settings WHERE ops._setting_problem(value, value_type, min_value, max_value, allowed) "
                       "IS NOT NULL").fetchall()
    assert bad == []
    assert conn.execute("SELECT count(*) FROM ops.settings WHERE value_type = 'text' AND key <> 'sql.code_version'"
                        ).fetchone()[0] == 0


def test_a_retried_turn_with_the_same_external_ref_is_recorded_once(conn):
    s = new_session(conn, new_user(conn, "retry"))
    first = conn.execute("SELECT memory.record_turn(%s, 'user', 'hello there', p_external_ref => 'msg-1')", (s,)).fetchone()[0]
    again = conn.execute("SELECT memory.record_turn(%s, 'user', 'hello there', p_external_ref => 'msg-1')", (s,)).fetchone()[0]
    assert first == again
    assert conn.execute("SELECT count(*), max(turn_count) FROM memory.day_table JOIN memory.sessions USING (session_id) "
                        "WHERE session_id = %s", (s,)).fetchone() == (1, 1)
    with pytest.raises(psycopg.Error, match="external_ref: 'msg-1' is already a turn of session .* with another role or content"), \
            conn.transaction():
        conn.execute("SELECT memory.record_turn(%s, 'user', 'something else', p_external_ref => 'msg-1')", (s,))
    assert conn.execute("SELECT external_ref FROM memory.day_table WHERE entry_id = %s", (first,)).fetchone()[0] == "msg-1"


def test_concurrent_retries_of_one_turn_leave_one_row(db_url):
    """Two clients retrying the same unacknowledged commit at once: the session lock orders
    them and the second finds the first's turn."""
    from concurrent.futures import ThreadPoolExecutor

    with psycopg.connect(db_url) as c:
        user = new_user(c, "retry-race")
        s = new_session(c, user)
        c.commit()
    try:
        def write(i):
            with psycopg.connect(db_url) as c:
                return [c.execute("SELECT memory.record_turn(%s, 'user', %s, p_external_ref => %s)",
                                  (s, f"turn {n}", f"m-{n}")).fetchone()[0] for n in range(30)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(write, range(4)))
        assert all(r == results[0] for r in results)
        with psycopg.connect(db_url) as c:
            assert c.execute("SELECT count(*), count(DISTINCT external_ref), max(turn_number) FROM memory.day_table "
                             "WHERE session_id = %s", (s,)).fetchone() == (30, 30, 30)
    finally:
        with psycopg.connect(db_url) as c:
            c.execute("DELETE FROM memory.users WHERE user_id = %s", (user,))


def test_every_damaged_psi_blob_is_refused_on_decode(conn):
    from realtime import codec_core as cc

    rng = np.random.default_rng(11)
    blob = cc.encode(rng.uniform(0, 6, (20, 256)), rng.lognormal(-4, 1, (20, 256)), 1, reconstruct=False)[0]
    crc = cc.crc32c(blob)
    assert len(conn.execute("SELECT * FROM psi.decode_frame(%s, %s)", (blob, crc)).fetchall()) == 20
    for _ in range(200):
        bad = bytearray(blob)
        i = int(rng.integers(len(bad)))
        bad[i] ^= 1 << int(rng.integers(8))
        with pytest.raises(psycopg.Error, match="psi_blob: CRC-32C is .* corrupt"), conn.transaction():
            conn.execute("SELECT * FROM psi.decode_frame(%s, %s)", (bytes(bad), crc))
    # trailing junk is refused even when the CRC covers it
    junk = blob + b"\x00junk"
    with pytest.raises(psycopg.Error, match="bytes after the end of the compressed section"), conn.transaction():
        conn.execute("SELECT * FROM psi.decode_frame(%s, %s)", (junk, cc.crc32c(junk)))
    with pytest.raises(psycopg.Error, match="p_blob, p_crc: must not be NULL"), conn.transaction():
        conn.execute("SELECT * FROM psi.decode_frame(%s, NULL)", (blob,))
