"""`make demo`: real conversations into the Hippocampus, then recall with reasons."""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

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
    # The conversations are from 2018: shift them so the newest ends now, keeping every gap.
    shift = datetime.now(timezone.utc) - max(t.created_at for t in turns)
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
            say(f"picked {len(picked)} turns from {len({t.session for t in picked})} conversations of "
                f"{len({t.user for t in picked})} speaker pairs in chitchat-dataset")
            _load(conn, picked, embedder, scorer)
            cache.save()
        _show_overview(conn)
        _recall(conn, embedder, scorer)
        cache.save()
    if not keep_running and not s.database_url:
        Cluster.from_settings(s).stop(say)
    return 0
