"""The trust boundary, tried the way an adversarial user would: every relation and every
function of every psimem schema, generated from the catalog (a new function or table is
covered without editing this file), called by real login roles — writer, reader, bi,
admin and a login with no psimem role — acting for their own user, pretending to act for
another (act_for refused, then psimem.user_id forged by hand) and acting for nobody.

For each call the test asserts, for every role but the admin:
- no leak: nothing another user's rows hold (ids, content, vectors' nearest turn) comes
  back, in rows or in an error message;
- no write: the other user's rows are byte-for-byte what they were (a SECURITY DEFINER
  fingerprint taken inside the same transaction, after the call);
- no oracle: passing the other user's id gives exactly the answer (rows or error, ids
  masked) a random id gives.

The data is committed (logins connect separately), so the module creates its own users
and logins and removes them afterwards.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql

from helpers import NDIM, UDIM, unit
from realtime import codec_core as cc

SCHEMAS = ("memory", "psi", "procedural", "kernel", "ops", "bi")
SECRET = {"A": "otterA7q", "B": "zebraB7q"}
LOGINS = {  # login -> psimem roles it is granted
    "matrix_writer": ("psimem_writer",), "matrix_writer_b": ("psimem_writer",),
    "matrix_reader": ("psimem_reader",), "matrix_bi": ("psimem_bi",), "matrix_admin": ("psimem_admin",),
    "matrix_nobody": (),
}
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX_RE = re.compile(r"\b[0-9a-f]{32}\b")
TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}(:\d{2})?)?")


@dataclass
class Person:
    """One user's data, as the ids and markers a leak would show."""
    user: str
    sessions: list = field(default_factory=list)
    entries: list = field(default_factory=list)
    blocks: list = field(default_factory=list)
    reflexes: list = field(default_factory=list)
    cards: list = field(default_factory=list)
    contradictions: list = field(default_factory=list)
    uttr_hash: bytes = b""
    universal: list | None = None
    native: list | None = None
    secret: str = ""

    def ids(self) -> dict[str, list[str]]:
        return {"user": [self.user], "session": self.sessions, "entry": self.entries, "block": self.blocks,
                "reflex": self.reflexes, "card": self.cards, "contradiction": self.contradictions}

    def markers(self) -> set[str]:
        return {self.secret, self.uttr_hash.hex(), *(i for v in self.ids().values() for i in v)}


def connect_as(url: str, login: str) -> psycopg.Connection:
    c = psycopg.connect(url.replace("postgres@", f"{login}@", 1))
    register_vector(c)
    return c


def build_person(url: str, login: str, name: str) -> Person:
    """What a writer does (README): ensure the user, open sessions, record turns, voice one,
    learn reflexes; then the owner's Night Cycle consolidates and queues Cortex jobs."""
    rng = np.random.default_rng(ord(name))
    with connect_as(url, login) as c:
        user = c.execute("SELECT memory.act_for(memory.ensure_user(%s, 'normal'))", (f"matrix-{name}",)).fetchone()[0]
        p = Person(str(user), secret=SECRET[name])
        t0 = datetime.now(timezone.utc) - timedelta(hours=8)
        for n, script in enumerate(([10, 11, 10, 11, 10, 30, 25, 15, 14.5, 14.4, 10, 11], [12, 11, 12, 30, 20, 12])):
            sid = c.execute("SELECT memory.start_session(%s, %s, %s)", (user, f"matrix-{name}-s{n}",
                                                                         t0 + timedelta(hours=n))).fetchone()[0]
            p.sessions.append(str(sid))
            for i, ppl in enumerate(script, start=1):
                u, v = unit(rng, UDIM), unit(rng, NDIM)
                e = c.execute("SELECT memory.record_turn(p_session_id => %s, p_role => %s, p_content => %s, "
                              "p_universal_embedding => %s::real[], p_native_embedding => %s::real[], "
                              "p_perplexity_score => %s, p_created_at => %s, p_external_ref => %s)",
                              (sid, "user" if i % 2 else "assistant", f"{p.secret} says thing {n}.{i} about pottery",
                               u.tolist(), v.tolist(), ppl, t0 + timedelta(hours=n, minutes=2 * i),
                               f"{name}-{n}-{i}")).fetchone()[0]
                p.entries.append(str(e))
                if p.universal is None:
                    p.universal, p.native = u.tolist(), v.tolist()
        content = c.execute("SELECT content FROM memory.day_table WHERE entry_id = %s", (p.entries[1],)).fetchone()[0]
        p.uttr_hash = cc.utterance_hash(uuid.UUID(p.entries[1]).bytes, content)
        c.execute("INSERT INTO psi.utterances (uttr_hash, user_id, entry_id, mode, oscillator_count, codec_version, "
                  "sample_rate, started_at_ms) VALUES (%s, %s, %s, 'analysis', 128, 1, 8000, 1700000000000)",
                  (p.uttr_hash, user, p.entries[1]))
        blob = cc.encode(rng.uniform(0, 6, (3, 128)), rng.lognormal(-4, 1, (3, 128)), 1, reconstruct=False)[0]
        c.execute("INSERT INTO psi.psi_frames (uttr_hash, user_id, ts_epoch_ms, band, duration_ms, frame_count, psi_blob, "
                  "integrity_crc) VALUES (%s, %s, 1700000000000, 0, 20, 3, %s, %s)", (p.uttr_hash, user, blob, cc.crc32c(blob)))
        c.execute("INSERT INTO psi.surprise_events (uttr_hash, user_id, ts_epoch_ms, epsilon, threshold) "
                  "VALUES (%s, %s, 1700000000040, 2, 1)", (p.uttr_hash, user))
        # A day ahead: pg_cron's every-minute psi.decay_centroids would otherwise fade and delete it
        # while the matrix runs, changing the other user's rows under the fingerprint.
        c.execute("INSERT INTO psi.band_centroids (uttr_hash, user_id, band, ts_epoch_ms, centroid) "
                  "VALUES (%s, %s, 1, (extract(epoch FROM now() + interval '1 day') * 1000)::bigint, '{1,2,3}')",
                  (p.uttr_hash, user))
        r1 = c.execute("SELECT procedural.learn_reflex(%s, 'tool_call', %s)", (f"{p.secret} search", p.secret)).fetchone()[0]
        r2 = c.execute("SELECT procedural.learn_reflex(%s, 'delegation')", (f"{p.secret} ask",)).fetchone()[0]
        c.execute("SELECT procedural.record_outcome(%s, true)", (r1,))
        c.execute("SELECT procedural.observe_causal_edge(%s, %s, 3.0)", (r1, r2))
        c.execute("SELECT procedural.log_attempt(gen_random_uuid(), %s, 1, false, 'error')", (f"{p.secret} task",))
        p.reflexes = [str(r1), str(r2)]
        build_kernel(c, p, rng)
        c.commit()
    return p


def build_kernel(c: psycopg.Connection, p: Person, rng) -> None:
    """Kernel memory as a writer keeps it: cards (one contradicting another, one with an
    embedding, one with an attachment), a link, four journaled turns and a meta layer, a config."""
    write = ("SELECT card_id FROM kernel.upsert_card(p_user_id => %s, p_summary => %s, p_tags => %s, "
             "p_embedding => %s::real[], p_provider => %s, p_model => %s)")
    for n, (text, tags) in enumerate(((f"{p.secret} drinks tea every morning", ["drinks", "key:morning"]),
                                      (f"{p.secret} drinks coffee every morning", ["drinks", "key:morning"]),
                                      (f"{p.secret} plays the cello", ["music"]))):
        vec = unit(rng, UDIM).tolist() if n == 2 else None
        p.cards.append(str(c.execute(write, (p.user, text, tags, vec, vec and "matrix", vec and "m1")).fetchone()[0]))
    p.contradictions = [str(r[0]) for r in c.execute("SELECT contradiction_id FROM kernel.contradictions(%s)", (p.user,))]
    assert p.contradictions, "the two morning-drink cards did not contradict: the matrix would test less"
    c.execute("SELECT kernel.link(%s, %s, %s)", (p.user, p.cards[2], p.cards[0]))
    c.execute("SELECT kernel.attach(%s, %s, 'url', %s)", (p.user, p.cards[2], f"https://example.org/{p.secret}"))
    for turn in range(4):
        c.execute("SELECT kernel.journal(%s, %s, %s, %s, %s)",
                  ("Ideation", f"{p.secret} turn {turn}", f"{p.secret} decided {turn}", p.cards[:1], p.user))
    c.execute("SELECT kernel.write_meta_layer(%s)", (p.user,))
    c.execute("SELECT kernel.set_config(%s, 'recall_top_k', '3')", (p.user,))


@pytest.fixture(scope="module")
def world(db_url):
    owner = psycopg.connect(db_url, autocommit=True)
    # pg_cron's jobs change users' rows on their own (psi.decay_centroids every minute): paused
    # here, so that every change to the other user's fingerprint is one a caller made.
    paused = [r[0] for r in owner.execute("SELECT jobid FROM cron.job WHERE active")]
    for job in paused:
        owner.execute("SELECT cron.alter_job(%s, active => false)", (job,))
    for login, roles in LOGINS.items():
        owner.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))
        owner.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        for r in roles:
            owner.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(r), sql.Identifier(login)))
    jobs_before = owner.execute("SELECT coalesce(max(job_id), 0) FROM ops.jobs").fetchone()[0]
    a = build_person(db_url, "matrix_writer", "A")
    b = build_person(db_url, "matrix_writer_b", "B")
    owner.execute("SELECT memory.bind_user(%s, 'matrix_reader')", (a.user,))
    runs = [owner.execute("SELECT memory.run_night_cycle(p_user_id => %s)", (p.user,)).fetchone()[0] for p in (a, b)]
    for p in (a, b):
        p.blocks = [str(r[0]) for r in owner.execute(
            "SELECT block_id FROM memory.holographic_blocks WHERE user_id = %s ORDER BY 1", (p.user,))]
        assert p.blocks, "the Night Cycle formed no block: the matrix would test nothing"
        # a zone row even where the Night Cycle does not write zones yet
        owner.execute("INSERT INTO memory.block_zones (block_id, user_id, zone_no, zone_kind, session_id, first_turn, "
                      "last_turn, content) SELECT block_id, user_id, 99, 'dead', session_id, first_turn, last_turn, %s "
                      "FROM memory.holographic_blocks WHERE block_id = %s ON CONFLICT DO NOTHING", (p.secret, p.blocks[0]))
    # Inside a caller's transaction, the other user's rows as one hash (the caller cannot see them).
    owner.execute(_fingerprint_function(owner, b.user))
    for login in LOGINS:
        owner.execute(sql.SQL("GRANT EXECUTE ON FUNCTION public.matrix_fingerprint() TO {}").format(sql.Identifier(login)))
    yield a, b
    owner.execute("DROP FUNCTION public.matrix_fingerprint()")
    owner.execute("DELETE FROM ops.jobs WHERE job_id > %s", (jobs_before,))
    owner.execute("DELETE FROM ops.cycle_runs WHERE run_id = ANY(%s)", (runs,))
    owner.execute("DELETE FROM memory.users WHERE user_id = ANY(%s)", ([a.user, b.user],))
    for login in LOGINS:
        owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
    for job in paused:
        owner.execute("SELECT cron.alter_job(%s, active => true)", (job,))
    owner.close()


def _user_tables(conn) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT format('%%I.%%I', c.relnamespace::regnamespace::text, c.relname) FROM pg_class c "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped "
        "WHERE c.relkind IN ('r', 'p') AND c.relnamespace::regnamespace::text = ANY(%s) ORDER BY 1", (list(SCHEMAS),))]


def _fingerprint_function(conn, user: str) -> str:
    parts = " || ".join(
        f"coalesce((SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {t} t WHERE t.user_id = '{user}'), '-')"
        for t in _user_tables(conn))
    return (f"CREATE OR REPLACE FUNCTION public.matrix_fingerprint() RETURNS text LANGUAGE sql SECURITY DEFINER "
            f"SET search_path = pg_catalog, public, pg_temp AS $$ SELECT md5({parts}) $$")


# ---------------------------------------------------------------- the callers

MODES = [  # (login, acting): self = its own user A, forged = psimem.user_id set to B by hand, none = nobody
    ("matrix_writer", "self"), ("matrix_writer", "forged"), ("matrix_writer", "none"),
    ("matrix_reader", "self"), ("matrix_reader", "forged"), ("matrix_reader", "none"),
    ("matrix_bi", "none"), ("matrix_bi", "forged"), ("matrix_nobody", "none"), ("matrix_nobody", "forged"),
]


def open_mode(url, login, acting, a: Person, b: Person) -> psycopg.Connection:
    c = connect_as(url, login)
    c.autocommit = True
    if acting == "self":
        c.execute("SELECT memory.act_for(%s)", (a.user,))
    elif acting == "forged":
        if login in ("matrix_writer", "matrix_reader"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not act for user"):
                c.execute("SELECT memory.act_for(%s)", (b.user,))
        c.execute("SELECT set_config('psimem.user_id', %s, false)", (b.user,))
    c.execute("SET statement_timeout = '10s'")
    c.autocommit = False
    return c


def attempt(c: psycopg.Connection, query, params=()) -> tuple:
    """Run one statement in a savepoint that is rolled back; the outcome and the other
    user's fingerprint as seen inside the same transaction."""
    c.execute("SAVEPOINT attempt")
    try:
        cur = c.execute(query, params)
        rows = cur.fetchall() if cur.description else []
        outcome = ("ok", cur.rowcount, json.dumps(rows, default=str))
        fp = c.execute("SELECT public.matrix_fingerprint()").fetchone()[0]
    except psycopg.Error as e:
        outcome = ("error", e.sqlstate, " ".join(filter(None, (e.diag.message_primary, e.diag.message_detail))))
        fp = None
    c.execute("ROLLBACK TO SAVEPOINT attempt")
    return outcome, fp


def masked(outcome: tuple, passed: str = "") -> tuple:
    """The outcome with ids and times masked; an error's numbers too (a CRC of the input,
    say, differs with the input but reveals nothing stored)."""
    text = outcome[2].replace(passed, "<passed>") if passed else outcome[2]
    text = TIME_RE.sub("<time>", HEX_RE.sub("<hex>", UUID_RE.sub("<uuid>", text)))
    if outcome[0] == "error":
        text = re.sub(r"\d+", "<n>", text)
    return outcome[0], outcome[1], text


def leaks(outcome: tuple, b: Person, passed: str = "") -> set[str]:
    text = outcome[2].replace(passed, "") if passed else outcome[2]
    return {m for m in b.markers() if m and m in text}


# ---------------------------------------------------------------- relations

def relations(conn) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname), c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1", (list(SCHEMAS),)).fetchall()


def test_no_relation_shows_or_lets_anyone_touch_another_users_rows(db_url, world, conn):
    a, b = world
    rels = relations(conn)
    clean = conn.execute("SELECT public.matrix_fingerprint()").fetchone()[0]
    insertable = {}
    for rel, kind in rels:
        if kind in ("r", "p") and rel in _user_tables(conn):
            cols = [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "AND attgenerated = '' AND attidentity = '' ORDER BY attnum", (rel,))]
            sample = conn.execute(sql.SQL("SELECT to_jsonb(t) FROM {} t WHERE user_id = %s LIMIT 1").format(
                sql.SQL(rel)), (a.user,)).fetchone()
            if sample:
                insertable[rel] = (cols, json.dumps({**sample[0], "user_id": b.user}))
    checked = seen_own = 0
    for login, acting in MODES:
        c = open_mode(db_url, login, acting, a, b)
        try:
            for rel, kind in rels:
                r = sql.SQL(rel)
                out, _ = attempt(c, sql.SQL("SELECT t::text FROM {} t").format(r))
                assert not leaks(out, b), f"{login} ({acting}) reads {rel}: {leaks(out, b)}"
                if login in ("matrix_writer", "matrix_reader") and acting == "self" and rel == "memory.day_table":
                    seen_own = len(json.loads(out[2]))
                visible = len(json.loads(out[2])) if out[0] == "ok" else 0
                if kind not in ("r", "p"):
                    continue
                first = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum = 1",
                                     (rel,)).fetchone()[0]
                for dml in (sql.SQL("UPDATE {} t SET {c} = t.{c}").format(r, c=sql.Identifier(first)),
                            sql.SQL("DELETE FROM {} t").format(r)):
                    out, fp = attempt(c, dml)
                    assert out[0] == "error" or out[1] <= visible, f"{login} ({acting}): {dml.as_string(c)} hit unseen rows"
                    assert fp in (None, clean), f"{login} ({acting}): {dml.as_string(c)} changed the other user's rows"
                if rel in insertable:
                    cols, row = insertable[rel]
                    ins = sql.SQL("INSERT INTO {} ({cols}) SELECT {cols} FROM jsonb_populate_record(NULL::{}, %s::jsonb)").format(
                        r, r, cols=sql.SQL(", ").join(map(sql.Identifier, cols)))
                    out, fp = attempt(c, ins, (row,))
                    assert out[0] == "error" or out[1] == 0, f"{login} ({acting}) inserted a row owned by the other user into {rel}"
                    assert fp in (None, clean)
                checked += 1
        finally:
            c.close()
    assert seen_own >= 1, "acting for its own user, a writer saw none of its turns: the matrix proves nothing"
    assert checked >= 10 * len(MODES)


# ---------------------------------------------------------------- functions

def functions(conn) -> list[dict]:
    return [dict(zip(("sig", "schema", "name", "kind", "names", "types", "modes"), r)) for r in conn.execute(
        "SELECT p.oid::regprocedure::text, n.nspname, p.proname, p.prokind, p.proargnames, "
        "       ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t), p.proargmodes "
        "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = ANY(%s) AND p.prorettype <> 'trigger'::regtype ORDER BY 1", (list(SCHEMAS),))]


UUID_KIND = (("user", "user"), ("session", "session"), ("block", "block"), ("entry", "entry"), ("turn", "entry"),
             ("reflex", "reflex"), ("contradiction", "contradiction"), ("card", "card"), ("src", "card"),
             ("dst", "card"), ("reflected", "card"))
# Text arguments that are not data: a caller's own words echoed back (an argument's name in an
# error, a summary returned) must not count as a leak of the other user's secret.
TEXT = {"p_key": "recall.window", "p_role": "user", "p_tier": "normal", "p_kind": "cortex_migrate",
        "p_worker_id": "matrix-worker", "p_space": "universal", "p_job": "night_cycle", "p_schedule": "0 3 * * *",
        "p_action_type": "tool_call", "p_failure_mode": "error", "p_external_ref": "matrix-A-ref",
        "p_field": "p_field", "p_value": "a value", "p_text": "a text", "p_move": "a move", "p_to": "Ideation",
        "p_stage": "Ideation", "p_source": "msc", "p_type": "relates_to", "p_summary": "a summary",
        "p_conclusion": "a conclusion", "p_ref": "https://example.org/matrix", "p_reason": "a reason"}
NUMBER = {"p_k": 5, "p_limit": 5, "p_band": 0, "p_budget_turns": 10, "p_gap_seconds": 1.0, "p_turn_number": None}


def _kind(name: str) -> str | None:
    return next((k for part, k in UUID_KIND if part in name), None)


def arguments(fn: dict, a: Person, b: Person) -> tuple[list, list[int]]:
    """(args as (name, value, cast)), positions of uuid-like args to vary."""
    args, vary = [], []
    names = fn["names"] or []
    for i, t in enumerate(fn["types"]):
        name = names[i] if i < len(names) else f"arg{i}"
        if t == "uuid":
            args.append((name, (a.ids().get(_kind(name) or "user") or [a.user])[0], "uuid"))
            vary.append(i)
        elif t == "uuid[]":
            args.append((name, (a.ids().get(_kind(name)) or a.blocks)[:1], "uuid[]"))
            vary.append(i)
        elif t == "bytea":
            args.append((name, a.uttr_hash, "bytea"))
            vary.append(i)
        elif t in ("real[]", "vector", "double precision[]"):
            native = "native" in name or fn["name"].endswith("_native")
            args.append((name, b.native if native else b.universal, "real[]"))
        elif t in ("text", "character varying"):
            args.append((name, TEXT.get(name, b.secret), "text"))
        elif t in ("integer", "smallint", "bigint"):
            args.append((name, NUMBER.get(name, 1), t))
        elif t in ("double precision", "real", "numeric"):
            args.append((name, NUMBER.get(name, 0.5), t))
        elif t == "boolean":
            args.append((name, True, t))
        elif t == "jsonb":
            args.append((name, json.dumps({}), t))
        elif t == "timestamp with time zone":
            args.append((name, datetime.now(timezone.utc), t))
        elif t == "date":
            args.append((name, datetime.now(timezone.utc).date(), t))
        elif t == "interval":
            args.append((name, "1 day", t))
        elif t == "regrole":
            args.append((name, "matrix_writer", t))
        elif t == "text[]":
            args.append((name, [], t))
        else:
            args.append((name, None, t))
    return args, vary


def call(fn: dict, args: list) -> tuple:
    parts = sql.SQL(", ").join(sql.SQL("{} => %s::{}").format(sql.Identifier(n), sql.SQL(cast)) for n, _, cast in args)
    target = sql.SQL("{}.{}").format(sql.Identifier(fn["schema"]), sql.Identifier(fn["name"]))
    q = (sql.SQL("CALL {}({})") if fn["kind"] == "p" else sql.SQL("SELECT * FROM {}({})")).format(target, parts)
    return q, [v for _, v, _ in args]


def other_value(b: Person, name: str, cast: str):
    if cast == "uuid":
        return (b.ids().get(_kind(name) or "user") or [b.user])[0]
    if cast == "uuid[]":
        return (b.ids().get(_kind(name)) or b.blocks)[:1]
    return b.uttr_hash


def random_value(cast: str):
    return str(uuid.uuid4()) if cast == "uuid" else [str(uuid.uuid4())] if cast == "uuid[]" else uuid.uuid4().bytes


def test_no_function_leaks_writes_or_answers_differently_for_another_users_ids(db_url, world, conn):
    a, b = world
    fns = functions(conn)
    clean = conn.execute("SELECT public.matrix_fingerprint()").fetchone()[0]
    ran = ok = 0
    for login, acting in MODES + [("matrix_admin", "self")]:
        c = open_mode(db_url, login, acting, a, b)
        try:
            for fn in fns:
                args, vary = arguments(fn, a, b)
                q, params = call(fn, args)
                base, fp = attempt(c, q, params)
                ran += 1
                ok += base[0] == "ok"
                if login == "matrix_admin":
                    continue  # the admin may see and change anyone's memory; it is run to show it can
                assert not leaks(base, b), f"{login} ({acting}) {fn['sig']}: {leaks(base, b)} in {base[2][:300]}"
                assert fp in (None, clean), f"{login} ({acting}) {fn['sig']} changed the other user's rows"
                for i in vary:
                    name, _, cast = args[i]
                    theirs, rand = other_value(b, name, cast), random_value(cast)
                    out_b, fp_b = attempt(c, q, params[:i] + [theirs] + params[i + 1:])
                    out_r, _ = attempt(c, q, params[:i] + [rand] + params[i + 1:])
                    passed = theirs.hex() if isinstance(theirs, bytes) else json.dumps(theirs).strip('"[]')
                    assert not leaks(out_b, b, passed), f"{login} ({acting}) {fn['sig']}({name} = theirs): {leaks(out_b, b, passed)}"
                    assert fp_b in (None, clean), f"{login} ({acting}) {fn['sig']}({name} = theirs) changed their rows"
                    assert masked(out_b, passed) == masked(out_r, rand.hex() if isinstance(rand, bytes) else
                                                           json.dumps(rand).strip('"[]')), (
                        f"{login} ({acting}) {fn['sig']}({name}): another user's id answers\n  {out_b}\n"
                        f"but a random id answers\n  {out_r}")
        finally:
            c.close()
    print("MATRIX", len(fns), ran, ok)
    assert ran >= len(fns) * len(MODES) and ok >= len(fns) // 3, (ran, ok)
