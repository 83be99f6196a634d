"""The retrieval chain across both tiers (spec 004 section 1.3).

1. The current moment queries the Hippocampus: memory.recall_hippocampus (SQL) returns the
   nearest turns, the nearest blocks with their structural neighbours (citations,
   continuations, metablocks) and the blocks covering matched turns, each with a reason.
2. The hits query the Cortex: blocks nearest the query by vector (the user's only,
   prefiltered on the user_id scalar index), plus the blocks the Hippocampus hits refer to
   that have moved to the Cortex (read there by block_id).
3. Everything comes back with its live zones in full, labelled with its tier and why it
   was returned, de-duplicated (an item found twice keeps every reason), and ordered by
   maximal marginal relevance so near-duplicates do not crowd out the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cortex import Cortex, prose_of


@dataclass
class Recalled:
    kind: str                 # turn | block
    id: str
    tier: str                 # hippocampus | cortex
    reasons: list[str]
    distance: float | None
    text: str                 # a turn's content, or a block's prose rendered (live zones verbatim)
    live_zones: list[dict] = field(default_factory=list)
    via: str | None = None
    session_id: str | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)
    mmr: float | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "id": self.id, "tier": self.tier, "reason": self.reason,
                "distance": self.distance, "via": self.via, "session_id": self.session_id,
                "live_zones": self.live_zones, "text": self.text}


def render_prose(prose: dict) -> str:
    """Margins, then zones in order (live verbatim, dead as summaries)."""
    zones = [(z.get("start") or 0, 0, z["content"]) for z in prose.get("live_zones") or []] + \
            [(z.get("start") or 0, 1, f"[{z.get('summary') or ''}]") for z in prose.get("dead_zone_summaries") or []]
    parts = [prose.get("anterior_margin") or ""] + [t for _, _, t in sorted(zones, key=lambda z: (z[0], z[1]))] + \
            [prose.get("posterior_margin") or ""]
    return "\n".join(p for p in parts if p)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else 0.0


def mmr(items: list[Recalled], query: np.ndarray, limit: int, lam: float = 0.5) -> list[Recalled]:
    """Maximal marginal relevance: lam * similarity to the query - (1 - lam) * max similarity to those picked."""
    pool = [i for i in items if i.embedding is not None]
    rest = [i for i in items if i.embedding is None]
    picked: list[Recalled] = []
    while pool and len(picked) < limit:
        def score(i):
            red = max((_cos(i.embedding, p.embedding) for p in picked), default=0.0)
            return lam * _cos(i.embedding, query) - (1 - lam) * red
        best = max(pool, key=score)
        best.mmr = score(best)
        picked.append(best)
        pool.remove(best)
    return picked + rest[:max(0, limit - len(picked))]


def recall(conn, cortex: Cortex | None, query_vector, user_id, session_id=None, k: int = 10,
           limit: int = 10, lam: float = 0.5) -> list[Recalled]:
    """The whole chain for one user: Hippocampus, then Cortex, merged, de-duplicated, MMR-ordered."""
    q = np.asarray(query_vector, dtype=np.float32)
    found: dict[str, Recalled] = {}

    def add(item: Recalled) -> None:
        if item.id in found:
            for r in item.reasons:
                if r not in found[item.id].reasons:
                    found[item.id].reasons.append(r)
            if found[item.id].embedding is None:
                found[item.id].embedding = item.embedding
            found[item.id].via = found[item.id].via or item.via
        else:
            found[item.id] = item

    # 1. Hippocampus (SQL)
    rows = conn.execute("SELECT item_kind, item_id, session_id, distance, reason, via_id, migrated, content, prose, "
                        "universal_embedding FROM memory.recall_hippocampus(%s::real[], %s, %s, %s)",
                        (q.tolist(), user_id, session_id, k)).fetchall()
    moved: dict[str, tuple[str, str | None]] = {}
    for kind, iid, sid, dist, reason, via, migrated, content, prose, emb in rows:
        iid = str(iid)
        if migrated:  # a structural reference into the Cortex
            moved.setdefault(iid, (reason.replace("block: ", "cortex block: ", 1), via and str(via)))
            continue
        add(Recalled(kind, iid, "hippocampus", [reason], dist,
                     content if kind == "turn" else render_prose(prose),
                     [] if kind == "turn" else list(prose.get("live_zones") or []), via and str(via), str(sid),
                     None if emb is None else np.asarray(emb, dtype=np.float32)))

    # 2. Cortex: vector similarity, then the structural references of the Hippocampus hits
    if cortex is not None and cortex.blocks() is not None:
        for r in cortex.search_blocks(q, k, user_id=user_id):
            add(_from_cortex(r, ["cortex block: vector match"], float(r["_distance"])))
        if moved:
            for r in cortex.get_blocks(list(moved)):
                reason, via = moved[r["block_id"]]
                emb = np.asarray(r["universal_embedding"], dtype=np.float32)
                add(_from_cortex(r, [reason], 1 - _cos(emb, q), via))

    # 3. De-duplicated above; diversity by MMR
    return mmr(list(found.values()), q, limit, lam)


def _from_cortex(r: dict, reasons: list[str], distance: float | None, via=None) -> Recalled:
    prose = prose_of(r)
    return Recalled("block", r["block_id"], "cortex", reasons, distance, render_prose(prose),
                    prose["live_zones"], via, r.get("session_id"),
                    np.asarray(r["universal_embedding"], dtype=np.float32))
