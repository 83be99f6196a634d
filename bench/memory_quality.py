"""Does psimem remember? LoCoMo evidence recall through psimem's own recall paths.

Each LoCoMo conversation (see bench/locomo.py) is loaded as an agent would load it: one
elder user, one session per LoCoMo session with its real date (all dates shifted by one
offset so the newest session ended an hour ago: the recall window and retention count from
now()), MiniLM universal embeddings, SmolLM2 perplexities and native embeddings, through
the bulk ingest path. Then, as pg_cron would, the Night Cycle runs once per session date in
date order with retention on, and the worker moves what it queues to the Cortex.

For every question (categories 1-4) the recall paths get the question's text and its MiniLM
embedding, and a budget of turns: a returned turn costs one, a returned zone or block the
turns it covers. Evidence recall@k = the share of the question's evidence turns that the
items returned within a budget of k turns cover, averaged over questions. Reported per
category and overall for k = 5, 10, 20:

  flat          exact top-k by cosine over all raw turns of the conversation (no psimem),
                computed here in numpy: the baseline
  raw hybrid    memory.recall on the raw turns, before any Night Cycle (its text and
                vector legs fused)
  sql           memory.recall after consolidation and retention (what a psql user gets)
  chain         loaders.recall.recall (psimem recall): memory.recall fused with the
                Cortex's hybrid search, after the worker has run

and, after consolidation, how much of the evidence survives: verbatim (a live zone, a
margin, a kept turn), in a summary (a sentence of the turn kept in a dead-zone summary), or
only within a zone's turn range. Parameters are tuned on the development split (the
default); --heldout reports the other five conversations, never used to choose anything.

Without the data (PSIMEM_LOCOMO_DIR or --data) it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from common import Timer, bench_database, percentile_ms, report, say
from locomo import CATEGORIES, DEV, Conversation, conversations, locate

from pgvector.psycopg import register_vector

from loaders.models import NATIVE_DIM, UNIVERSAL_DIM, Cache, SmolScorer, UniversalEmbedder
from psimem.connect import connect

HOME = Path("/var/tmp/psimem-bench-quality")
KS = (5, 10, 20)


def models(convs: list[Conversation]):
    """Embeddings and perplexities for every turn and question, cached (a load resumes)."""
    cache = Cache(HOME / "cache" / "model-outputs.npz")
    embedder, scorer = UniversalEmbedder(cache), SmolScorer(cache)
    turns = [t for c in convs for t in c.turns]
    texts = [t.content for t in turns]
    # Perplexity given up to three earlier turns of the same session, as the demo scores.
    contexts, prev = [], []
    for t in turns:
        prev = [p for p in prev if (p.session_no, p.at) == (t.session_no, t.at)][-3:]
        contexts.append("\n".join(p.content for p in prev))
        prev.append(t)
    say(f"embedding {len(texts)} turns and {sum(len(c.questions) for c in convs)} questions (MiniLM)")
    universal = embedder.embed(texts)
    questions = embedder.embed([q.text for c in convs for q in c.questions])
    say(f"scoring {len(texts)} turns (SmolLM2 perplexity and native embeddings)")
    ppl, native = scorer.score(texts, contexts)
    cache.save()
    return universal, questions, ppl, native


def user_ref(conv: Conversation) -> str:
    return f"locomo:{conv.sample_id}"


def session_ref(conv: Conversation, session_no: int) -> str:
    return f"locomo:{conv.sample_id}:{session_no}"


def load(conn, convs: list[Conversation], universal, ppl, native) -> None:
    """Every conversation as an elder user with one session per LoCoMo session, through the bulk
    ingest path; a turn's external reference is its LoCoMo id ("D3:7")."""
    from loaders.turns import ingest_rows

    newest = max(t.at for c in convs for t in c.turns)
    shift = datetime.now(timezone.utc) - timedelta(hours=2) - newest
    records, i = [], 0
    for c in convs:
        for t in c.turns:
            records.append(dict(
                user=user_ref(c), user_tier="elder", session=session_ref(c, t.session_no),
                role="user" if t.speaker == c.speakers[0] else "assistant", content=t.content,
                created_at=(t.at + shift + timedelta(seconds=30 * t.turn_no)).isoformat(), turn_number=t.turn_no,
                external_ref=f"D{t.session_no}:{t.turn_no}", universal_embedding=universal[i].tolist(),
                native_embedding=None if native is None else native[i].tolist(), perplexity_score=float(ppl[i]),
                token_count=len(t.content.split())))
            i += 1
    say(f"loading {len(records)} turns")
    ingest_rows(conn, records, progress=True)


def night_cycles(conn) -> list[dict]:
    """The Night Cycle once per session date, in date order, as pg_cron would run it."""
    dates = [r[0] for r in conn.execute(
        "SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM memory.day_table ORDER BY 1").fetchall()]
    say(f"running the Night Cycle for {len(dates)} session dates")
    runs = []
    conn.commit()
    conn.autocommit = True  # CALL commits per batch of users, as under pg_cron
    try:
        for d in dates:
            t0 = time.perf_counter()
            conn.execute("CALL memory.night_cycle(p_cycle_date => %s)", (d,))
            runs.append({"date": str(d), "seconds": round(time.perf_counter() - t0, 2)})
    finally:
        conn.autocommit = False
    return runs


class Scores:
    """Evidence recall@k per category for one retrieval path."""

    def __init__(self):
        self.hits: dict[int, dict[int, list[float]]] = {k: defaultdict(list) for k in KS}

    def add(self, question, covered_by_k: dict[int, set]) -> None:
        for k in KS:
            self.hits[k][question.category].append(len(question.evidence & covered_by_k[k]) / len(question.evidence))

    def table(self) -> dict:
        out = {}
        for k in KS:
            every = [x for v in self.hits[k].values() for x in v]
            out[f"recall@{k}"] = round(float(np.mean(every)), 4) if every else None
            for cat, name in CATEGORIES.items():
                v = self.hits[k].get(cat, [])
                out[f"recall@{k} {name}"] = round(float(np.mean(v)), 4) if v else None
        return out


def covered(items: list[tuple[int, int, int]], budget: int) -> set:
    """The (session, turn) pairs covered by items (session, first turn, last turn) taken in rank
    order while they fit a budget of turns."""
    out, used = set(), 0
    for s, first, last in items:
        cost = last - first + 1
        if used + cost > budget:
            continue
        used += cost
        out.update((s, t) for t in range(first, last + 1))
    return out


def flat(convs, universal, questions) -> Scores:
    """Exact top-k by cosine over all raw turns of the question's conversation."""
    scores, i, j = Scores(), 0, 0
    for c in convs:
        v = universal[i:i + len(c.turns)]
        keys = [(t.session_no, t.turn_no) for t in c.turns]
        for q in c.questions:
            order = np.argsort(-(v @ questions[j]))
            scores.add(q, {k: {keys[x] for x in order[:k]} for k in KS})
            j += 1
        i += len(c.turns)
    return scores


def evaluate(conn, convs, questions, recall_fn) -> tuple[Scores, list[float]]:
    """Evidence recall of recall_fn(user, session ids by number, question, vector, budget) -> items
    (session_no, first turn, last turn) in rank order, for every question at the largest
    budget; smaller budgets take what fits of the same list."""
    scores, j, latency = Scores(), 0, []
    for c in convs:
        user = conn.execute("SELECT memory.find_user(%s)", (user_ref(c),)).fetchone()[0]
        sessions = {str(sid): int(ref.rsplit(":", 1)[1]) for sid, ref in conn.execute(
            "SELECT session_id, external_ref FROM memory.sessions WHERE user_id = %s", (user,)).fetchall()}
        for q in c.questions:
            t0 = time.perf_counter()
            items = recall_fn(user, sessions, q.text, questions[j], max(KS))
            latency.append(time.perf_counter() - t0)
            scores.add(q, {k: covered(items, k) for k in KS})
            j += 1
        conn.rollback()
    return scores, latency


def sql_path(conn):
    def fn(user, sessions, text, vector, budget):
        rows = conn.execute("SELECT session_id, turn_number, turns FROM memory.recall(%s, %s, %s::real[], "
                            "p_budget_turns => %s)", (user, text, vector.tolist(), budget)).fetchall()
        return [(sessions[str(s)], t, t + n - 1) for s, t, n in rows]
    return fn


def chain_path(conn, cortex, mmr_lambda=None):
    from loaders.recall import recall

    def fn(user, sessions, text, vector, budget):
        got = recall(conn, cortex, text, vector, user, budget=budget, mmr_lambda=mmr_lambda)
        return [(sessions.get(r.session_id, 0), r.first_turn, r.last_turn) for r in got]
    return fn


def survival(conn, convs) -> dict:
    """Where each evidence turn is after consolidation and retention: still raw, kept verbatim by
    a block, in a dead-zone summary (some of its sentences), only within a zone's turn range
    (nothing of it kept), or nowhere. And what the Night Cycle made of all turns."""
    where = defaultdict(int)
    for c in convs:
        user = conn.execute("SELECT memory.find_user(%s)", (user_ref(c),)).fetchone()[0]
        ev = sorted({e for q in c.questions for e in q.evidence})
        for s, t in ev:
            row = conn.execute("""
                SELECT EXISTS (SELECT 1 FROM memory.day_table d WHERE d.session_id = x.session_id AND d.turn_number = %s),
                       bool_or(b.verbatim), count(b.*) > 0,
                       EXISTS (SELECT 1 FROM memory.block_zones z WHERE z.session_id = x.session_id
                               AND %s BETWEEN z.first_turn AND z.last_turn)
                FROM memory.sessions x LEFT JOIN memory.block_turns b ON b.session_id = x.session_id AND b.turn_number = %s
                WHERE x.user_id = %s AND x.external_ref = %s GROUP BY x.session_id""",
                (t, t, t, user, session_ref(c, s))).fetchone()
            raw, verbatim, kept, zone = row
            where["verbatim" if verbatim else "in summary" if kept else "zone only" if zone else "raw only" if raw
                  else "lost"] += 1
            where["still raw"] += raw
    total = sum(where[k] for k in ("verbatim", "in summary", "zone only", "raw only", "lost"))
    out = {f"evidence {k}": round(where[k] / total, 4) for k in ("verbatim", "in summary", "zone only", "raw only", "lost")}
    out["evidence still raw"] = round(where["still raw"] / total, 4)
    users = [conn.execute("SELECT memory.find_user(%s)", (user_ref(c),)).fetchone()[0] for c in convs]
    out.update(dict(zip(
        ("turns", "turns left raw", "turns in a zone", "turns kept by blocks", "turns kept verbatim",
         "blocks arc", "blocks gap", "blocks compound", "kept text / raw text"),
        conn.execute("""
            SELECT (SELECT sum(s.turn_count) FROM memory.sessions s WHERE s.user_id = ANY(%(u)s)),
                   (SELECT count(*) FROM memory.day_table d WHERE d.user_id = ANY(%(u)s)),
                   (SELECT count(DISTINCT (z.session_id, t)) FROM memory.block_zones z,
                           generate_series(z.first_turn, z.last_turn) t WHERE z.user_id = ANY(%(u)s)),
                   (SELECT count(DISTINCT (b.session_id, b.turn_number)) FROM memory.block_turns b WHERE b.user_id = ANY(%(u)s)),
                   (SELECT count(DISTINCT (b.session_id, b.turn_number)) FROM memory.block_turns b
                    WHERE b.user_id = ANY(%(u)s) AND b.verbatim),
                   (SELECT count(*) FROM memory.holographic_blocks b WHERE b.user_id = ANY(%(u)s) AND b.block_kind = 'arc'),
                   (SELECT count(*) FROM memory.holographic_blocks b WHERE b.user_id = ANY(%(u)s) AND b.block_kind = 'gap'),
                   (SELECT count(*) FROM memory.holographic_blocks b WHERE b.user_id = ANY(%(u)s) AND b.block_kind = 'compound'),
                   (SELECT round(sum(length(x.kept))::numeric / nullif(%(raw)s, 0), 3) FROM (
                        SELECT DISTINCT ON (b.session_id, b.turn_number) b.kept FROM memory.block_turns b
                        WHERE b.user_id = ANY(%(u)s)) x)""",
                     {"u": users, "raw": sum(len(t.content) for c in convs for t in c.turns)}).fetchone())))
    return {k: (float(v) if v is not None and not isinstance(v, int) else v) for k, v in out.items()}


def show(results: dict) -> None:
    paths = [p for p in ("flat", "raw hybrid", "sql", "chain", "chain + mmr") if p in results]
    cols = [f"recall@{k}" for k in KS] + [f"recall@10 {n}" for n in CATEGORIES.values()]
    print(f"\nLoCoMo evidence recall, {results['split']} split ({results['questions']} questions, "
          f"{results['turns']} turns); a block costs the turns it covers")
    print(f"{'path':<12}" + "".join(f"{c.replace('recall@10 ', '@10 '):>14}" for c in cols))
    for p in paths:
        print(f"{p:<12}" + "".join(f"{results[p][c] if results[p][c] is not None else '-':>14}" for c in cols))
    if "consolidation" in results:
        print("after consolidation and retention: " + ", ".join(f"{k} {v}" for k, v in results["consolidation"].items()))
    base = results["flat"]["recall@10"]
    for p in paths[1:]:
        print(f"{p}: recall@10 {results[p]['recall@10']} = {results[p]['recall@10'] / base:.2f}x the flat baseline")


@contextmanager
def settings_for_run(conn, pairs: list[str]):
    """--set KEY=VALUE: settings for this run only (ops.set_setting, so its checks apply),
    put back when the run ends, so the next run starts from the installed values."""
    previous = {}
    try:
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise SystemExit(f"--set {pair}: expected KEY=VALUE (VALUE in JSON: 0.2, \"text\")")
            previous.setdefault(key, conn.execute("SELECT ops.set_setting(%s, %s::jsonb)", (key, value)).fetchone()[0])
        conn.commit()
        yield {k: conn.execute("SELECT value FROM ops.settings WHERE key = %s", (k,)).fetchone()[0] for k in previous}
    finally:
        conn.rollback()
        for key, value in previous.items():
            conn.execute("SELECT ops.set_setting(%s, %s::jsonb)", (key, json.dumps(value)))
        conn.commit()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="LoCoMo's data/locomo10.zip or the folder it unpacks to (default: $PSIMEM_LOCOMO_DIR)")
    ap.add_argument("--heldout", action="store_true", help="report the five held-out conversations, not the development split")
    ap.add_argument("--reuse", action="store_true", help="keep the turns a previous run loaded (no reload)")
    ap.add_argument("--models-only", action="store_true", help="compute and cache the model outputs, then stop")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for this run only (restored at the end; VALUE in JSON), e.g. "
                         "recall.neighbour_weight=0.2; repeatable. Tune on the development split only")
    args = ap.parse_args()
    data = locate(args.data)
    if data is None:
        say("LoCoMo data not found: fetch snap-research/locomo and set PSIMEM_LOCOMO_DIR to its data/locomo10.zip "
            "(or pass --data); nothing measured")
        return 0
    convs = [c for c in conversations(data) if (c.sample_id in DEV) != args.heldout]
    say(f"{'held-out' if args.heldout else 'development'} split: {', '.join(c.sample_id for c in convs)}: "
        f"{sum(len(c.turns) for c in convs)} turns, {sum(len(c.questions) for c in convs)} questions")
    universal, questions, ppl, native = models(convs)
    if args.models_only:
        return 0
    results: dict = {"split": "held-out" if args.heldout else "development",
                     "conversations": [c.sample_id for c in convs],
                     "turns": sum(len(c.turns) for c in convs), "questions": sum(len(c.questions) for c in convs)}
    results["flat"] = flat(convs, universal, questions).table()
    say(f"flat baseline: {results['flat']}")
    url = bench_database(str(HOME), 55437, universal_dim=UNIVERSAL_DIM, native_dim=NATIVE_DIM)
    with connect(url) as conn, settings_for_run(conn, args.set) as changed:
        register_vector(conn)
        results["settings changed"] = changed
        if not args.reuse:
            conn.execute("TRUNCATE memory.users, ops.jobs, ops.cycle_runs CASCADE")
            conn.commit()
            shutil.rmtree(HOME / "cortex", ignore_errors=True)
            load(conn, convs, universal, ppl, native)
            raw, lat = evaluate(conn, convs, questions, sql_path(conn))
            results["raw hybrid"] = raw.table()
            say(f"raw hybrid: {results['raw hybrid']}")
        results["night cycles"] = night_cycles(conn)
        results["consolidation"] = survival(conn, convs)
        say(f"after the Night Cycles: {results['consolidation']}")
        sql, lat = evaluate(conn, convs, questions, sql_path(conn))
        results["sql"] = sql.table()
        results["sql latency ms"] = {"p50": round(percentile_ms(lat, 50), 2), "p95": round(percentile_ms(lat, 95), 2)}
        say(f"memory.recall after consolidation: {results['sql']}")
        from loaders.cortex import Cortex
        from loaders.worker import Worker

        cortex_uri = str(HOME / "cortex")
        with Timer() as t:
            stats = Worker(url, cortex_uri=cortex_uri, say=lambda m: None).run(once=True)
        results["worker"] = {"seconds": round(t.seconds, 1), **{k: v for k, v in stats.items() if isinstance(v, int)}}
        cortex = Cortex.for_database(conn, cortex_uri)
        chain, lat = evaluate(conn, convs, questions, chain_path(conn, cortex))
        results["chain"] = chain.table()
        results["chain latency ms"] = {"p50": round(percentile_ms(lat, 50), 2), "p95": round(percentile_ms(lat, 95), 2)}
        mmr_scores, _ = evaluate(conn, convs, questions, chain_path(conn, cortex, mmr_lambda=0.5))
        results["chain + mmr"] = mmr_scores.table()
    show(results)
    report("memory_quality" + ("_heldout" if args.heldout else ""), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
