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
