"""The retrieval chain across both tiers (spec 004 section 1.3), as one ranked list.

1. The Hippocampus: memory.recall (SQL) ranks the user's turns over their whole history,
   raw or as their blocks keep them, by reciprocal rank fusion of a full-text and a vector
   leg.
2. The Cortex: LanceDB's hybrid search (its full-text index and vectors, fused by its RRF
   reranker) ranks the user's blocks.
3. The two are fused the same way, by rank: a turn inside a Cortex block gains
   recall.weight_cortex / (recall.rrf_k + the block's rank); a Cortex block none of whose
   turns the Hippocampus returned brings its best turn (memory.recall_in_blocks), and a
   block PostgreSQL keeps no turns of (imported into the Cortex) comes back whole, costing
   the turns it covers. The list is filled in score order within the caller's budget of
   turns; every item says which legs found it. Maximal marginal relevance is available
   (mmr_lambda) but off: on LoCoMo it lowered evidence recall (bench/memory_quality.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from .cortex import Cortex, prose_of, prose_text


@dataclass
class Recalled:
    kind: str                 # turn | kept_turn (as its block keeps it) | block
    id: str                   # entry id, "block id:turn" for a kept turn, block id
    tier: str                 # hippocampus | cortex
    session_id: str | None
    first_turn: int
    last_turn: int
    score: float
    legs: list[str]
    reasons: list[str]
    text: str
    created_at: datetime | None = None
    external_ref: str | None = None
    block_id: str | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def turns(self) -> int:
        """What the item costs of a budget: the turns it covers."""
        return max(1, self.last_turn - self.first_turn + 1)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "id": self.id, "tier": self.tier, "session_id": self.session_id,
                "first_turn": self.first_turn, "last_turn": self.last_turn, "turns": self.turns,
                "score": self.score, "legs": self.legs, "reason": self.reason, "created_at": self.created_at,
                "external_ref": self.external_ref, "block_id": self.block_id, "text": self.text}


def _settings(conn) -> dict:
    return dict(conn.execute("SELECT key, value #>> '{}' FROM ops.settings WHERE key IN "
                             "('recall.rrf_k', 'recall.weight_cortex', 'recall.leg_candidates')").fetchall())


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else 0.0


def mmr(items: list[Recalled], query: np.ndarray, limit: int, lam: float = 0.5) -> list[Recalled]:
    """Maximal marginal relevance over items with embeddings: lam * similarity to the query -
    (1 - lam) * the highest similarity to those already picked; items without one follow."""
    pool = [i for i in items if i.embedding is not None]
    rest = [i for i in items if i.embedding is None]
    picked: list[Recalled] = []
    while pool and len(picked) < limit:
        def score(i):
            return lam * _cos(i.embedding, query) - (1 - lam) * max((_cos(i.embedding, p.embedding) for p in picked),
                                                                    default=0.0)
        best = max(pool, key=score)
        picked.append(best)
        pool.remove(best)
    return picked + rest[:max(0, limit - len(picked))]


def within_budget(items: list[Recalled], budget: int) -> list[Recalled]:
    """Items in order while they fit a budget of turns (one that does not fit is passed over)."""
    out, used = [], 0
    for i in items:
        if used + i.turns <= budget:
            out.append(i)
            used += i.turns
    return out


def recall(conn, cortex: Cortex | None, query_text: str | None, query_vector, user_id, session_id=None,
           budget: int = 10, since: datetime | None = None, until: datetime | None = None,
           mmr_lambda: float | None = None) -> list[Recalled]:
    """The whole chain for one user: memory.recall fused with the Cortex's hybrid search."""
    s = _settings(conn)
    k, w_cortex = float(s["recall.rrf_k"]), float(s["recall.weight_cortex"])
    wanted = max(budget * 2, int(s["recall.leg_candidates"]))
    q = None if query_vector is None else np.asarray(query_vector, dtype=np.float32)
    found: dict[tuple[str, int], Recalled] = {}

    # 1. The Hippocampus, over the user's whole history (SQL)
    for (kind, sid, turn, n, at, role, content, ref, entry, block, verbatim, score, legs, reason, emb) in conn.execute(
            "SELECT r.item_kind, r.session_id, r.turn_number, r.turns, r.created_at, r.role, r.content, r.external_ref, "
            "r.entry_id, r.block_id, r.verbatim, r.score, r.legs, r.reason, "
            "coalesce(d.universal_embedding, b.universal_embedding)::real[] "
            "FROM memory.recall(%s, %s, %s::real[], %s, %s, %s, %s) r "
            "LEFT JOIN memory.day_table d ON d.entry_id = r.entry_id "
            "LEFT JOIN memory.block_turns b ON b.user_id = %s AND b.block_id = r.block_id AND b.turn_number = r.turn_number",
            (user_id, query_text, None if q is None else q.tolist(), session_id, wanted, since, until, user_id)):
        item_id = str(entry) if entry else f"{block}:{turn}"
        found[(str(sid), turn)] = Recalled(kind, item_id, "hippocampus", str(sid), turn, turn + n - 1, score,
                                           list(legs), [reason], f"{role}: {content}", at, ref,
                                           block and str(block), None if emb is None else np.asarray(emb, np.float32))

    # 2. The Cortex, by its own hybrid search; 3. fused by rank
    if cortex is not None and q is not None and cortex.blocks() is not None:
        hits = cortex.search_hybrid(q, query_text, wanted, user_id=user_id, rrf_k=int(k), since=since, until=until)
        unmatched, gained = {}, set()
        for rank, h in enumerate(hits, 1):
            gain = w_cortex / (k + rank)
            legs = [leg for leg, col in (("cortex vector", "_distance"), ("cortex text", "_score")) if h.get(col) is not None]
            why = f"in Cortex block #{rank} ({', '.join(legs)})"
            inside = [it for it in found.values() if it.session_id == h["session_id"]
                      and h["first_turn"] <= it.first_turn <= h["last_turn"]]
            for it in inside:
                if id(it) not in gained:  # a turn in two blocks (overlapping margins) gains from the better one
                    gained.add(id(it))
                    it.score += gain
                    it.legs.append("cortex")
                    it.reasons.append(why)
            if not inside:
                unmatched[h["block_id"]] = (gain, why, h)
        if unmatched:
            kept = set()
            for (block, _, sid, turn, at, role, content, ref, verbatim, _, _) in conn.execute(
                    "SELECT * FROM memory.recall_in_blocks(%s, %s::uuid[], %s, %s::real[], 1)",
                    (user_id, list(unmatched), query_text, q.tolist())):
                gain, why, _ = unmatched[str(block)]
                kept.add(str(block))
                key = (str(sid), turn)
                if key not in found:
                    found[key] = Recalled("kept_turn", f"{block}:{turn}", "cortex", str(sid), turn, turn, gain,
                                          ["cortex"], [f"best turn {why}" + ("" if verbatim else ", as its summary kept it")],
                                          f"{role}: {content}", at, ref, str(block))
            for block, (gain, why, h) in unmatched.items():
                if block not in kept:  # PostgreSQL keeps no turn of it: the block itself
                    found[(block, 0)] = Recalled("block", block, "cortex", h["session_id"], h["first_turn"] or 0,
                                                 h["last_turn"] or 0, gain, ["cortex"], [why],
                                                 prose_text(prose_of(h)), h.get("arc_start_time"), None, block)

    ranked = sorted(found.values(), key=lambda i: (-i.score, i.session_id or "", i.first_turn))
    if mmr_lambda is not None and q is not None:
        ranked = mmr(ranked, q, len(ranked), mmr_lambda)
    return within_budget(ranked, budget)
