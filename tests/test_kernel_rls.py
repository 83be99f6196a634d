"""Row-level security through every kernel function: two writer logins, each bound to its own
user. Acting for its user, a writer that passes the other user's ids gets exactly the answer
an id that exists nowhere gets, sees none of the other user's words, and changes none of the
other user's rows; a reader recalls its user's cards but cannot write them."""
import json
import re
import uuid

import psycopg
import pytest
from psycopg import sql

from helpers import KERNEL_TABLES

SECRET = {"a": "heronA91", "b": "walrusB91"}
LOGINS = ("kr_writer_a", "kr_writer_b", "kr_reader_a")


def connect_as(url, login):
    return psycopg.connect(url.replace("postgres@", f"{login}@", 1))


@pytest.fixture(scope="module")
def people(db_url):
    with psycopg.connect(db_url, autocommit=True) as owner:
        for login in LOGINS:
            owner.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))
            owner.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(login), sql.Identifier("psimem_reader" if "reader" in login else "psimem_writer")))
    made = {}
    for name in ("a", "b"):
        with connect_as(db_url, f"kr_writer_{name}") as c:
            user = c.execute("SELECT memory.act_for(memory.ensure_user(%s))", (f"kernel-rls-{name}",)).fetchone()[0]
            s = SECRET[name]
            one = c.execute("SELECT card_id FROM kernel.upsert_card(%s, %s, ARRAY['key:pet'], p_embedding => "
                            "ARRAY[1,0,0,0]::real[], p_provider => 'p', p_model => 'm')", (user, f"{s} has a cat")).fetchone()[0]
            two = c.execute("SELECT card_id FROM kernel.upsert_card(%s, %s, ARRAY['key:pet'])", (user, f"{s} has a dog")).fetchone()[0]
            contradiction = c.execute("SELECT contradiction_id FROM kernel.contradictions(%s)", (user,)).fetchone()[0]
            for turn in range(4):
                c.execute("SELECT kernel.journal('Ideation', %s, %s, ARRAY[%s]::uuid[], %s)",
                          (f"{s} turn {turn}", f"{s} decided", one, user))
            c.commit()
            made[name] = {"user": user, "cards": [one, two], "contradiction": contradiction}
    with psycopg.connect(db_url, autocommit=True) as owner:
        owner.execute("SELECT memory.bind_user(%s, 'kr_reader_a')", (made["a"]["user"],))
    yield made
    with psycopg.connect(db_url, autocommit=True) as owner:
        owner.execute("DELETE FROM memory.users WHERE user_id = ANY(%s)", ([made["a"]["user"], made["b"]["user"]],))
        for login in LOGINS:
            owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def fingerprint(db_url, user) -> str:
    with psycopg.connect(db_url) as owner:
        return json.dumps([owner.execute(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                                         f"FROM kernel.{t} t WHERE t.user_id = %s", (user,)).fetchone()[0]
                           for t in KERNEL_TABLES])


# Every public kernel function, called with A's user and the id under test (an id of B's or one
# that exists nowhere) where the function takes that kind of id.
CALLS = {
    "upsert_card": [("SELECT * FROM kernel.upsert_card(%(u)s, 'rewritten', p_card_id => %(card)s)", "card")],
    "delete_card": [("SELECT kernel.delete_card(%(u)s, %(card)s)", "card")],
    "link": [("SELECT kernel.link(%(u)s, %(own)s, %(card)s)", "card"), ("SELECT kernel.link(%(u)s, %(card)s, %(own)s)", "card")],
    "attach": [("SELECT kernel.attach(%(u)s, %(card)s, 'ref', 'x')", "card")],
    "contradictions": [("SELECT * FROM kernel.contradictions(%(user)s, true)", "user")],
    "resolve_contradiction": [("SELECT * FROM kernel.resolve_contradiction(%(u)s, %(contradiction)s)", "contradiction"),
                              ("SELECT * FROM kernel.resolve_contradiction(%(u)s, %(own_contradiction)s, %(card)s)", "card")],
    "compress": [("SELECT * FROM kernel.compress(%(user)s)", "user")],
    "journal": [("SELECT turn FROM kernel.journal('Ideation', 'x', '', ARRAY[%(card)s]::uuid[], %(u)s)", "card"),
                ("SELECT turn FROM kernel.journal('Ideation', 'x', '', '{}', %(user)s)", "user")],
    "write_meta_layer": [("SELECT * FROM kernel.write_meta_layer(%(user)s)", "user")],
    "compact_journal": [("SELECT * FROM kernel.compact_journal(%(user)s, now() + interval '1 year')", "user")],
    "prune": [("SELECT * FROM kernel.prune(%(user)s, now() + interval '100 years')", "user")],
    "recall": [("SELECT card_id, summary, why FROM kernel.recall(%(user)s, %(secret)s, ARRAY[1,0,0,0]::real[])", "user")],
    "export_patch": [("SELECT kernel.export_patch(%(user)s)", "user")],
    "set_config": [("SELECT kernel.set_config(%(user)s, 'recall_top_k', '2')", "user")],
    "get_config": [("SELECT * FROM kernel.get_config(%(user)s)", "user")],
    "refresh_text_stats": [("SELECT kernel.refresh_text_stats(%(user)s)", "user")],
    "summarise_extractive": [("SELECT kernel.summarise_extractive(ARRAY['a text of one''s own'], 5)", None)],
    "ensure_vector_indexes": [("SELECT * FROM kernel.ensure_vector_indexes()", None)],
    "run_maintenance": [("SELECT kernel.run_maintenance()", None)],
}


def attempt(c, query, params) -> tuple:
    c.execute("SAVEPOINT try")
    try:
        cur = c.execute(query, params)
        out = ("ok", json.dumps(cur.fetchall() if cur.description else [], default=str))
    except psycopg.Error as e:
        out = ("error", e.diag.message_primary)
    c.execute("ROLLBACK TO SAVEPOINT try")
    return out


def masked(out, passed: str) -> tuple:
    return out[0], re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", out[1].replace(passed, "<passed>"))


def test_the_calls_cover_every_public_kernel_function(conn):
    public = {r[0] for r in conn.execute("SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                                         "WHERE n.nspname = 'kernel' AND p.proname NOT LIKE '\\_%%' "
                                         "AND p.prorettype <> 'trigger'::regtype")}
    assert public == set(CALLS)


def test_another_users_ids_answer_like_ids_that_exist_nowhere_and_change_nothing(db_url, people):
    a, b = people["a"], people["b"]
    before = fingerprint(db_url, b["user"])
    with connect_as(db_url, "kr_writer_a") as c:
        c.execute("SELECT memory.act_for(%s)", (a["user"],))
        checked = 0
        for name, calls in CALLS.items():
            for query, kind in calls:
                base = {"u": a["user"], "user": a["user"], "own": a["cards"][1], "own_contradiction": a["contradiction"],
                        "card": a["cards"][0], "contradiction": a["contradiction"], "secret": SECRET["b"]}
                if kind is None:  # nothing of another user's to pass: it must still show nothing of B's
                    out = attempt(c, query, base)
                    assert SECRET["b"] not in out[1], (name, out)
                    continue
                theirs = {"user": b["user"], "card": b["cards"][0], "contradiction": b["contradiction"]}[kind]
                nowhere = uuid.uuid4()
                got = attempt(c, query, {**base, kind: theirs})
                random = attempt(c, query, {**base, kind: nowhere})
                assert masked(got, str(theirs)) == masked(random, str(nowhere)), (name, got, random)
                assert SECRET["b"] not in got[1], (name, got)
                checked += 1
        assert checked == sum(kind is not None for calls in CALLS.values() for _, kind in calls)
    assert fingerprint(db_url, b["user"]) == before


def test_recall_finds_only_the_acting_users_cards_even_with_the_other_users_words(db_url, people):
    a, b = people["a"], people["b"]
    with connect_as(db_url, "kr_writer_a") as c:
        c.execute("SELECT memory.act_for(%s)", (a["user"],))
        rows = c.execute("SELECT card_id FROM kernel.recall(%s, %s, ARRAY[1,0,0,0]::real[], 10)",
                         (a["user"], f"{SECRET['b']} cat dog")).fetchall()
        assert {r[0] for r in rows} <= set(a["cards"]) and rows
        # A forged setting (not bound to B) shows nothing of B either.
        c.execute("SELECT set_config('psimem.user_id', %s, false)", (str(b["user"]),))
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="p_user_id: unknown user"):
            c.execute("SELECT * FROM kernel.recall(%s, 'cat')", (b["user"],))


def test_a_reader_recalls_and_exports_its_user_but_cannot_write_cards(db_url, people):
    a = people["a"]
    with connect_as(db_url, "kr_reader_a") as c:
        c.execute("SELECT memory.act_for(%s)", (a["user"],))
        [(count,)] = c.execute("SELECT count(*) FROM kernel.recall(%s, 'cat dog')", (a["user"],)).fetchall()
        assert count == 2
        assert SECRET["a"] in c.execute("SELECT kernel.export_patch(%s)", (a["user"],)).fetchone()[0]
        c.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT kernel.upsert_card(%s, 'a new fact')", (a["user"],))
