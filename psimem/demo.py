"""`make demo`: real conversations into the Hippocampus, then recall with reasons."""
from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg.types.json import Jsonb

from . import migrate
from .cluster import Cluster
from .connect import connect, database_url
from .settings import Settings

QUERIES = [
    "I am so tired, I did not sleep well last night",
    "what kind of music do you like to listen to?",
    "I have a big exam coming up and I am stressed",
]


def say(msg: str) -> None:
    print(f"psimem: {msg}", file=sys.stderr, flush=True)


def _ensure_database(universal_dim: int, native_dim: int) -> str:
    s = Settings.from_env()
    if not s.database_url:
        Cluster.from_settings(s).start(say)
    url = database_url(s)
    say("migrating (alembic upgrade head)")
    migrate.upgrade(url, universal_dim=universal_dim, native_dim=native_dim)
    with connect(url) as conn:
        dims = dict(conn.execute("SELECT key, value FROM ops.settings WHERE key IN "
                                 "('embedding.universal_dim', 'embedding.native_dim')").fetchall())
    if (dims["embedding.universal_dim"], dims["embedding.native_dim"]) != (universal_dim, native_dim):
        raise SystemExit(f"psimem: this database was installed with embedding sizes {dims}; the demo's models "
                         f"give {universal_dim}/{native_dim}. Use a fresh PSIMEM_HOME (or database) for the demo.")
    return url


def _load(conn, turns, embedder, scorer) -> None:
    from loaders.turns import ingest_rows

    texts = [t.content for t in turns]
    # Perplexity of each turn given up to three earlier turns of its conversation.
    contexts = ["\n".join(p.content for p in turns[max(0, i - 3):i] if p.session == t.session)
                for i, t in enumerate(turns)]
    say(f"embedding {len(texts)} turns (universal, {embedder.dim}-d)")
    universal = embedder.embed(texts)
    say(f"scoring {len(texts)} turns (perplexity and native {scorer.dim}-d embedding)")
    ppl, native = scorer.score(texts, contexts)
    # The conversations are from 2018: shift them so the newest ended an hour ago (idle,
    # so tonight's cycle takes it), keeping every gap.
    shift = datetime.now(timezone.utc) - timedelta(hours=1) - max(t.created_at for t in turns)
    tiers = {}
    for rank, user in enumerate(dict.fromkeys(t.user for t in turns)):
        tiers[user] = "elder" if rank == 0 else "meso" if rank == 1 else "normal"
    records = [dict(user=t.user, user_tier=tiers[t.user], session=t.session, role=t.role, content=t.content,
                    created_at=(t.created_at + shift).isoformat(), turn_number=t.turn_number,
                    universal_embedding=universal[i].tolist(), native_embedding=native[i].tolist(),
                    perplexity_score=float(ppl[i]), token_count=len(t.content.split()))
               for i, t in enumerate(turns)]
    t0 = time.perf_counter()
    n = ingest_rows(conn, records, progress=True)
    say(f"loaded {n} turns in {time.perf_counter() - t0:.1f}s (binary COPY, every row checked by the trigger)")


def _show_overview(conn) -> None:
    print("\n== The Hippocampus")
    for tier, users, sessions, turns in conn.execute(
            "SELECT u.tier, count(DISTINCT u.user_id), count(DISTINCT s.session_id), count(d.entry_id) "
            "FROM memory.users u JOIN memory.sessions s USING (user_id) JOIN memory.day_table d USING (session_id) "
            "GROUP BY 1 ORDER BY 1"):
        print(f"  {tier:<7} {users} user(s), {sessions} sessions, {turns} turns")
    states = conn.execute("SELECT flux_state, count(*) FROM memory.day_table GROUP BY 1 ORDER BY 2 DESC").fetchall()
    print("  flux states set live by the trigger: " + ", ".join(f"{s}={n}" for s, n in states))
    print("\n== Biggest perplexity spikes (flux_state = 'spike', opening a window)")
    for ppl, base, content in conn.execute(
            "SELECT d.perplexity_score, s.flux_baseline, d.content FROM memory.day_table d "
            "JOIN memory.sessions s USING (session_id) WHERE d.flux_state = 'spike' "
            "ORDER BY d.perplexity_score DESC LIMIT 3"):
        print(f"  ppl {ppl:7.1f}  {content[:90]!r}")


def _recall(conn, embedder, scorer) -> None:
    user_id, session_id, sref = conn.execute(
        "SELECT s.user_id, s.session_id, s.external_ref FROM memory.sessions s "
        "ORDER BY s.last_turn_at DESC NULLS LAST LIMIT 1").fetchone()
    print(f"\n== Recall, acting in the newest session {sref} (its user's other sessions count within 7 days)")
    qu = embedder.embed(QUERIES, progress=False)
    _, qn = scorer.score(QUERIES, progress=False)
    for i, q in enumerate(QUERIES):
        for fn, vec in (("recall_recent", qu[i]), ("recall_recent_native", qn[i])):
            print(f"\n  {fn}({q!r})")
            rows = conn.execute(
                f"SELECT distance, reason, s.external_ref, r.created_at, r.turn_number, r.role, r.content "
                f"FROM memory.{fn}(%s::real[], %s, %s, 3) r JOIN memory.sessions s USING (session_id)",
                (vec.tolist(), session_id, user_id)).fetchall()
            for dist, reason, ref, at, turn, role, content in rows:
                print(f"    d={dist:.3f}  {reason:<26} {ref[9:17]}… turn {turn:<3} {at:%Y-%m-%d %H:%M}  "
                      f"{role}: {content[:60]!r}")


def _kernel(conn, embedder) -> None:
    """The Core Memory Kernel for the user with the longest history: a card for each of their
    first-person statements (with the turn's embedding), a journal entry per conversation (the
    lifecycle moving on once a conversation asks two questions), the meta layers that fall due,
    then one recall with its score parts. Every step is a kernel SQL function."""
    print("\n== The Core Memory Kernel (schema kernel): cards and journal of the longest history")
    user = conn.execute("SELECT user_id FROM memory.day_table GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    t0 = time.perf_counter()
    # The first sentence of each of the user's "I ..." / "My ..." turns; its two longest words tag it.
    written = conn.execute("""
        SELECT t.session_id, c.card_id, c.action FROM (
            SELECT d.session_id, d.created_at, d.universal_embedding,
                   left(coalesce((regexp_match(d.content, '^(.+?[.!?])(\s|$)'))[1], d.content), 300) AS fact
            FROM memory.day_table d
            WHERE d.user_id = %(u)s AND d.role = 'user' AND d.content ~* '^(i|i''m|i am|my|i''ve|i have)\M'
              AND length(d.content) BETWEEN 25 AND 400) t,
        LATERAL kernel.upsert_card(p_user_id => %(u)s, p_summary => t.fact,
            p_tags => ARRAY(SELECT w FROM unnest(tsvector_to_array(to_tsvector('english', t.fact))) w
                            ORDER BY length(w) DESC, w LIMIT 2),
            p_embedding => t.universal_embedding::real[], p_provider => 'psimem-demo', p_model => 'all-MiniLM-L6-v2',
            p_at => t.created_at) c
        ORDER BY t.created_at""", {"u": user}).fetchall()
    actions = [a for _, _, a in written]
    print(f"  kernel.upsert_card: {actions.count('inserted')} cards written, {actions.count('updated')} facts already "
          f"held (the same fact is one card) in {time.perf_counter() - t0:.2f}s")
    if not conn.execute("SELECT count(*) FROM kernel.journal WHERE user_id = %s", (user,)).fetchone()[0]:
        sessions = conn.execute("""
            SELECT s.session_id, kernel.summarise_extractive(array_agg(d.content ORDER BY d.turn_number), 40),
                   (array_agg(left(d.content, 80) ORDER BY d.turn_number) FILTER (WHERE d.role = 'user' AND d.content ~ '[?]\s*$'))[1:2],
                   max(d.created_at)
            FROM memory.sessions s JOIN memory.day_table d USING (session_id)
            WHERE s.user_id = %s GROUP BY s.session_id ORDER BY max(d.created_at)""", (user,)).fetchall()
        stage, transitions, metas = "Ideation", [], 0
        for session, summary, questions, at in sessions:
            cards = sorted({card for s_id, card, _ in written if s_id == session})
            nxt, evidence = stage, None
            if stage == "Ideation" and questions and len(questions) >= 2:
                nxt, evidence = "Data Acquisition", {"unknowns": questions}
            row = conn.execute("SELECT transition, meta_layer_due FROM kernel.journal(p_stage => %s, p_summary => %s, "
                               "p_conclusion => %s, p_reflected_ids => %s::uuid[], p_user_id => %s, p_evidence => %s, "
                               "p_at => %s)", (nxt, summary or "(no words)", f"{len(cards)} facts noted", cards, user,
                                               Jsonb(evidence) if evidence else None, at)).fetchone()
            stage = nxt
            if row[0]:
                transitions.append(row[0])
            if row[1]:
                conn.execute("SELECT kernel.write_meta_layer(p_user_id => %s, p_at => %s)", (user, at))
                metas += 1
        print(f"  kernel.journal: {len(sessions)} turn entries (at most 70 words each), {metas} meta-layer entries; "
              f"stage transitions: {'; '.join(transitions)}")
    conn.commit()
    counts = conn.execute("SELECT count(*) FILTER (WHERE kind = 'note'), count(*) FILTER (WHERE kind = 'summary'), "
                          "count(*) FILTER (WHERE rolled_into IS NOT NULL) FROM kernel.card WHERE user_id = %s",
                          (user,)).fetchone()
    print(f"  cards: {counts[0]} notes ({counts[2]} rolled into {counts[1]} summary cards), "
          f"{len(conn.execute('SELECT * FROM kernel.contradictions(%s)', (user,)).fetchall())} open contradictions")
    query = QUERIES[1]
    vec = embedder.embed([query], progress=False)[0]
    print(f"\n  kernel.recall({query!r}, k=5): full text + vector, RRF, MMR")
    for r in conn.execute("SELECT rank, score, text_rank, vector_rank, vector_similarity, recency_rank, summary, why "
                          "FROM kernel.recall(p_user_id => %s, p_query_text => %s, p_query_vector => %s::real[], p_k => 5)",
                          (user, query, vec.tolist())):
        rank, score, t_rank, v_rank, v_sim, rec_rank, summary, why = r
        if summary is None:
            print(f"    {why}")
            continue
        sim = f"{v_sim:.2f}" if v_sim is not None else "-"
        print(f"    {rank}. score {score:.3f}  text #{t_rank or '-'}  vector #{v_rank or '-'} (cos {sim})  "
              f"recency #{rec_rank}  {summary[:70]!r}")
        print(f"       why: {why[:160]}")
    conn.commit()


def _night_cycle(conn) -> None:
    print("\n== Night Cycle (CALL memory.night_cycle(), as pg_cron runs it: all in SQL, a commit per user)")
    conn.commit()
    conn.autocommit = True  # a procedure that commits runs outside a transaction block
    t0 = time.perf_counter()
    try:
        conn.execute("CALL memory.night_cycle()")
    except psycopg.Error as e:  # users failed: the others' work is committed, the stages below say which
        print(f"  {e.diag.message_primary}")
    finally:
        conn.autocommit = False
    run_id = conn.execute("SELECT max(run_id) FROM ops.cycle_runs").fetchone()[0]
    print(f"  run {run_id} in {time.perf_counter() - t0:.2f}s; stages (rows, ms):")
    for stage, name, rows, ms, failures in conn.execute(
            "SELECT stage, stage_name, rows, duration_ms, failures FROM bi.cycle_stages WHERE run_id = %s ORDER BY stage",
            (run_id,)):
        print(f"    {stage} {name:<18} {rows:>6} rows {ms:>9.1f} ms" + (f"  {failures} FAILED" if failures else ""))
    arcs = conn.execute("SELECT count(*), count(*) FILTER (WHERE resolved), count(*) FILTER (WHERE open_at_session_end), "
                        "count(*) FILTER (WHERE continued_by_arc_id IS NOT NULL) FROM memory.flux_arcs").fetchone()
    print(f"  flux arcs: {arcs[0]} ({arcs[1]} resolved, {arcs[2]} open at session end, {arcs[3]} continued in a later session)")
    kinds = dict(conn.execute("SELECT block_kind, count(*) FROM memory.holographic_blocks GROUP BY 1").fetchall())
    rels = dict(conn.execute("SELECT relationship_type, count(*) FROM memory.block_relationships GROUP BY 1").fetchall())
    jobs = dict(conn.execute("SELECT kind, count(*) FROM ops.jobs GROUP BY 1").fetchall())
    print(f"  blocks: {kinds.get('arc', 0)} from arcs, {kinds.get('compound', 0)} metablocks; relationships {rels or '{}'}; "
          f"queued for the Cortex: {jobs.get('cortex_migrate', 0)}")
    print("\n== The three blocks with the highest TIES-merge weight")
    for b in conn.execute(
            "SELECT s.external_ref, b.first_turn, b.last_turn, b.flux_metrics, b.salience_scores->>'composite', "
            "b.coherence_gain, b.ties_merge_weight, b.prose FROM memory.holographic_blocks b "
            "JOIN memory.sessions s USING (session_id) WHERE b.block_kind = 'arc' "
            "ORDER BY b.ties_merge_weight DESC LIMIT 3"):
        ref, first, last, fm, composite, gain, ties, prose = b
        print(f"  {ref[9:17]}… turns {first}-{last}: peak {fm['peak_perplexity']:.0f} over baseline "
              f"{fm['baseline_perplexity']:.0f} -> final {fm['final_perplexity']:.0f}, reversal quality "
              f"{fm['flux_reversal_quality']:.0f}; salience {composite}, coherence gain {gain:.3f}, TIES {ties:.3f}")
        for z in prose["live_zones"][:2]:
            print(f"    live [{z['start']}-{z['end']}] {z['content'][:110]!r}")
        for z in prose["dead_zone_summaries"][:1]:
            print(f"    dead [{z['start']}-{z['end']}] summary: {z['summary'][:100]!r}")


def run_demo(turns: int = 400, keep_running: bool = True) -> int:
    from loaders.chitchat import pick_turns
    from loaders.models import Cache, SmolScorer, UniversalEmbedder

    s = Settings.from_env()
    cache = Cache(s.home / "cache" / "model-outputs.npz")
    embedder, scorer = UniversalEmbedder(cache), SmolScorer(cache)
    url = _ensure_database(embedder.dim, scorer.dim)
    with connect(url) as conn:
        loaded = conn.execute("SELECT count(*) FROM memory.sessions WHERE external_ref LIKE 'chitchat:%'").fetchone()[0]
        if loaded:
            say(f"conversations already loaded ({loaded} sessions); skipping the load")
        else:
            picked = pick_turns(turns)
            long = max(sorted({t.user for t in picked}), key=lambda u: sum(t.user == u for t in picked))
            mine = [t for t in picked if t.user == long]
            say(f"picked {len(picked)} turns from {len({t.session for t in picked})} conversations of "
                f"{len({t.user for t in picked})} users in chitchat-dataset; the longest history, "
                f"{long.removeprefix('chitchat:')[:8]}…'s, is {len(mine)} turns in {len({t.session for t in mine})} "
                f"conversations over {(max(t.created_at for t in mine) - min(t.created_at for t in mine)).days} days")
            _load(conn, picked, embedder, scorer)
            cache.save()
        _show_overview(conn)
        _recall(conn, embedder, scorer)
        _kernel(conn, embedder)
        _night_cycle(conn)
        from loaders.demo_part import run_after_night_cycle

        run_after_night_cycle(conn, embedder, QUERIES)
        cache.save()
    from realtime.demo_part import run_psi_demo

    run_psi_demo(url)
    if not keep_running and not s.database_url:
        Cluster.from_settings(s).stop(say)
    return 0
