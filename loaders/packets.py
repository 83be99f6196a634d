"""Bifocal Packets (spec 004 section 6): a block's prose and vectors travelling together.

Export: any block, from the Hippocampus (full prose, content_type "full") or the Cortex
(compressed prose, content_type "summary"), as a packet of exactly the spec's shape;
vectors are little-endian float32 in base64, so a round trip is bit-exact.

prose.content renders the block: anterior margin, zones in order (live zones verbatim,
dead zones as their summaries), posterior margin, joined by blank lines. live_zones give
each live zone's [start, end) in code points of content, so the live text travels byte
for byte. On import the rest of the text is read back as margins (first and last parts)
and dead-zone summaries (the parts between); zone positions become ordinals, since turn
numbers do not travel.

Import: into the Cortex (one LanceDB merge-insert for the whole batch) or the Hippocampus
(memory.import_block per packet, one transaction). In either store a block id that is
there already is left as it is when an import created it for the same user, and refuses
the batch otherwise (naming the packet and the block): an import never replaces a block
it did not create for that user. Every packet of a batch is checked
first against loaders/bifocal_packet.schema.json and then for what a schema cannot say
(base64 that decodes to the stated dimensions, the installed embedding sizes, finite
numbers, live-zone offsets inside the content, references to blocks that exist); one bad
packet refuses the batch and names the packet and the field.
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psycopg

from .cortex import Cortex, as_f32, flux_struct, prose_of, salience_struct

SCHEMA_PATH = Path(__file__).with_name("bifocal_packet.schema.json")
SEP = "\n\n"


class BadPacket(ValueError):
    def __init__(self, index: int | None, field: str, rule: str):
        self.index, self.field, self.rule = index, field, rule
        where = "" if index is None else f"packet {index}: "
        super().__init__(f"{where}{field}: {rule}")


def encode_vector(v) -> str:
    return base64.b64encode(as_f32(v).astype("<f4").tobytes()).decode("ascii")


def decode_vector(data: str, dimensions: int, field: str, index: int | None = None) -> np.ndarray:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadPacket(index, f"{field}.data", f"not valid base64 ({e})") from None
    if len(raw) != 4 * dimensions:
        raise BadPacket(index, f"{field}.data", f"decodes to {len(raw)} bytes, {dimensions} float32 dimensions need {4 * dimensions}")
    v = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.isfinite(v).all():
        raise BadPacket(index, f"{field}.data", "holds NaN or infinite values")
    return v


def render(prose: dict) -> tuple[str, list[dict]]:
    """prose JSON -> (content, live zone offsets)."""
    zones = sorted([(z.get("start") or 0, 0, z["content"]) for z in prose.get("live_zones") or []] +
                   [(z.get("start") or 0, 1, z.get("summary") or "") for z in prose.get("dead_zone_summaries") or []],
                   key=lambda z: (z[0], z[1]))
    parts: list[tuple[bool, str]] = []
    if prose.get("anterior_margin"):
        parts.append((False, prose["anterior_margin"]))
    parts += [(live == 0, text) for _, live, text in zones]
    if prose.get("posterior_margin"):
        parts.append((False, prose["posterior_margin"]))
    content, offsets = "", []
    for i, (live, text) in enumerate(parts):
        if i:
            content += SEP
        if live:
            offsets.append({"start": len(content), "end": len(content) + len(text), "preserved": True})
        content += text
    return content, offsets


def parse(content: str, live_zones: list[dict]) -> dict:
    """(content, live zone offsets) -> prose JSON; live zones are the exact substrings."""
    def pieces(gap: str) -> list[str]:
        return [p for p in gap.split(SEP) if p]

    spans = sorted((z["start"], z["end"]) for z in live_zones)
    gaps, pos = [], 0
    for s, e in spans:
        gaps.append(content[pos:s])
        pos = e
    gaps.append(content[pos:])
    lead, trail = pieces(gaps[0]), pieces(gaps[-1]) if spans else []
    anterior = lead.pop(0) if lead else ""
    posterior = trail.pop() if trail else ""
    zones: list[tuple[bool, str]] = [(False, t) for t in lead]
    for i, (s, e) in enumerate(spans):
        zones.append((True, content[s:e]))
        if i + 1 < len(spans):
            zones += [(False, t) for t in pieces(gaps[i + 1])]
    zones += [(False, t) for t in trail]
    live = [{"start": n, "end": n, "content": t} for n, (is_live, t) in enumerate(zones) if is_live]
    dead = [{"start": n, "end": n, "summary": t} for n, (is_live, t) in enumerate(zones) if not is_live]
    return {"anterior_margin": anterior, "live_zones": live, "dead_zone_summaries": dead, "posterior_margin": posterior}


def _u(v) -> str | None:
    return None if v is None else str(v)


def make_packet(block: dict, content_type: str, packet_type: str = "memory_block") -> dict:
    """A packet from a block dict (keys as in memory.blocks_for_transfer / cortex_blocks)."""
    for space in ("native", "universal"):
        if block.get(f"{space}_embedding") is None:
            raise BadPacket(None, f"vectors.{space}", f"block {block['block_id']} has no {space} embedding to send")
    content, offsets = render(block["prose"])
    sal = block.get("salience_scores") or {}
    return {
        "packet_id": str(uuid.uuid4()),
        "packet_type": packet_type,
        "timestamp": (block.get("arc_start_time") or datetime.now(timezone.utc)).isoformat(),
        "prose": {"content": content, "content_type": content_type, "live_zones": offsets},
        "vectors": {
            "native": {"dimensions": len(as_f32(block["native_embedding"])), "encoding": "base64",
                       "data": encode_vector(block["native_embedding"])},
            "universal": {"dimensions": len(as_f32(block["universal_embedding"])), "encoding": "base64",
                          "data": encode_vector(block["universal_embedding"])},
        },
        "metadata": {"source_block_id": str(block["block_id"]), "coherence_gain": float(block.get("coherence_gain") or 0),
                     "salience_composite": sal.get("composite"),
                     "preoccupation_centroid_id": _u(block.get("preoccupation_centroid_id"))},
        "references": {"citations": [str(c) for c in block.get("citations") or []],
                       "derived_from": _u(block.get("derived_from")), "continues_from": _u(block.get("continues_from"))},
    }


def export_blocks(conn, cortex: Cortex | None, block_ids) -> list[dict]:
    """Packets for blocks wherever they live: the Hippocampus while not migrated, else the Cortex."""
    ids = [str(i) for i in block_ids]
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        pg = {str(r["block_id"]): r for r in cur.execute(
            "SELECT * FROM memory.blocks_for_transfer(%s::uuid[], false)", (ids,)).fetchall()}
    cx = {r["block_id"]: r for r in (cortex.get_blocks(ids) if cortex is not None else [])}
    out = []
    for i in ids:
        b = pg.get(i)
        if b is not None and b["migrated_at"] is None and b["universal_embedding"] is not None:
            out.append(make_packet(b, "full"))
        elif i in cx:
            r = dict(cx[i])
            r["prose"] = prose_of(r)
            out.append(make_packet(r, "summary"))
        else:
            raise BadPacket(None, "block_id", f"no block {i} in the Hippocampus or the Cortex")
    return out


# -- import ------------------------------------------------------------------------------
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _path(err) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "required":
        missing = err.message.split("'")[1]
        return f"{path}.{missing}" if path else missing
    if err.validator == "additionalProperties":
        return path or "(packet)"
    return path or "(packet)"


@dataclass
class Decoded:
    packet: dict
    block_id: str
    universal: np.ndarray
    native: np.ndarray
    prose: dict
    at: datetime


def check(packets: list, udim: int, ndim: int, known_block_ids=lambda ids: set()) -> list[Decoded]:
    """Every packet checked, or BadPacket for the first bad one (naming packet index and field)."""
    if not isinstance(packets, list):
        raise BadPacket(None, "(batch)", "must be a JSON array of packets or one packet object")
    v = _validator()
    out = []
    for n, p in enumerate(packets):
        errs = sorted(v.iter_errors(p), key=lambda e: (len(e.absolute_path), _path(e)))
        if errs:
            raise BadPacket(n, _path(errs[0]), errs[0].message)
        try:
            at = datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00"))
        except ValueError:
            raise BadPacket(n, "timestamp", f"not an ISO-8601 date-time: {p['timestamp']!r}") from None
        if at.tzinfo is None:
            raise BadPacket(n, "timestamp", "must carry a time zone offset")
        vecs = {}
        for space, dim in (("universal", udim), ("native", ndim)):
            f = f"vectors.{space}"
            stated = p["vectors"][space]["dimensions"]
            if stated != dim:
                raise BadPacket(n, f"{f}.dimensions", f"is {stated}; this psimem stores {space} embeddings of {dim}")
            vecs[space] = decode_vector(p["vectors"][space]["data"], stated, f, n)
        content = p["prose"]["content"]
        last = 0
        for i, z in enumerate(sorted(p["prose"]["live_zones"], key=lambda z: z["start"])):
            if not (last <= z["start"] < z["end"] <= len(content)):
                raise BadPacket(n, f"prose.live_zones[{i}]",
                                f"[{z['start']}, {z['end']}) must be non-empty, in order, without overlap, "
                                f"inside content ({len(content)} code points)")
            last = z["end"]
        out.append(Decoded(p, p["metadata"]["source_block_id"], vecs["universal"], vecs["native"],
                           parse(content, p["prose"]["live_zones"]), at))
    ids = [d.block_id for d in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise BadPacket(ids.index(dup, ids.index(dup) + 1), "metadata.source_block_id", f"block {dup} twice in the batch")
    refs = {}
    for n, d in enumerate(out):
        r = d.packet["references"]
        for f, vals in (("citations", r["citations"]), ("derived_from", [r["derived_from"]]),
                        ("continues_from", [r["continues_from"]])):
            for k, x in enumerate(vals):
                if x is not None:
                    refs.setdefault(x, (n, f"references.{f}" + (f"[{k}]" if f == "citations" else "")))
    unknown = set(refs) - set(ids)
    if unknown:
        unknown -= known_block_ids(sorted(unknown))
    if unknown:
        first = min(unknown, key=lambda x: refs[x])
        n, f = refs[first]
        raise BadPacket(n, f, f"unknown block {first} (not in this batch, the Hippocampus or the Cortex)")
    return out


def _in_dependency_order(items: list[Decoded]) -> list[Decoded]:
    ids = {d.block_id for d in items}
    done, out = set(), []
    pending = list(items)
    while pending:
        ready = [d for d in pending if all(x in done or x not in ids for x in _refs(d))]
        if not ready:  # a cycle: the database will name it
            ready = pending[:1]
        for d in ready:
            out.append(d)
            done.add(d.block_id)
            pending.remove(d)
    return out


def _refs(d: Decoded) -> list[str]:
    r = d.packet["references"]
    return [x for x in [*r["citations"], r["derived_from"], r["continues_from"]] if x]


def _pg_known(conn, ids, user_id=None) -> set[str]:
    return {str(r[0]) for r in conn.execute(
        "SELECT block_id FROM memory.holographic_blocks WHERE block_id = ANY(%s::uuid[]) "
        "AND (%s::uuid IS NULL OR user_id = %s::uuid)", (list(ids), user_id, user_id))}


def _import_one(conn, d: Decoded, session_id) -> int:
    m, r = d.packet["metadata"], d.packet["references"]
    return conn.execute(
        "SELECT memory.import_block(p_block_id => %s, p_session_id => %s, p_prose => %s, "
        "p_universal_embedding => %s::real[], p_native_embedding => %s::real[], p_at => %s, "
        "p_coherence_gain => %s, p_salience_composite => %s, p_preoccupation_centroid_id => %s, "
        "p_citations => %s::uuid[], p_derived_from => %s, p_continues_from => %s)",
        (d.block_id, session_id, psycopg.types.json.Jsonb(d.prose), d.universal.tolist(), d.native.tolist(), d.at,
         m["coherence_gain"], m["salience_composite"], m["preoccupation_centroid_id"], r["citations"],
         r["derived_from"], r["continues_from"])).fetchone()[0]


_PG_FIELDS = {"p_universal_embedding": "vectors.universal", "p_native_embedding": "vectors.native",
              "p_prose": "prose", "p_at": "timestamp", "p_block_id": "metadata.source_block_id",
              "references": "references", "p_session_id": "session"}


def import_packets(conn, cortex: Cortex, packets, into: str, user_id=None, session_id=None) -> dict:
    """Imports a batch all or nothing. into: 'cortex' (needs user_id; one LanceDB commit) or 'hippocampus'
    (needs session_id; one transaction, or a savepoint inside the caller's open transaction)."""
    if isinstance(packets, dict):
        packets = [packets]
    if into not in ("cortex", "hippocampus"):
        raise BadPacket(None, "into", f"must be cortex or hippocampus, got {into!r}")
    if into == "hippocampus":
        decoded = check(packets, cortex.udim, cortex.ndim, lambda ids: _pg_known(conn, ids))
        if session_id is None:
            raise BadPacket(None, "session", "importing into the Hippocampus needs a session of the receiving user")
        imported, d = 0, None
        try:
            with conn.transaction():  # all or nothing
                for d in _in_dependency_order(decoded):
                    imported += _import_one(conn, d, session_id)
        except psycopg.Error as e:
            msg = (e.diag.message_primary or str(e)).strip()
            field, _, rule = msg.partition(": ")
            raise BadPacket(decoded.index(d), _PG_FIELDS.get(field, field), rule or msg) from None
        return {"into": "hippocampus", "packets": len(decoded), "imported": imported,
                "already_present": len(decoded) - imported}
    if user_id is None:
        raise BadPacket(None, "user", "importing into the Cortex needs the receiving user")

    def known(ids):  # only the receiving user's blocks count: references never reach another user's
        return _pg_known(conn, ids, user_id) | {r["block_id"] for r in cortex.get_blocks(ids, ["block_id", "user_id"])
                                                if r["user_id"] == str(user_id)}

    decoded = check(packets, cortex.udim, cortex.ndim, known)
    ids = [d.block_id for d in decoded]
    present = {r["block_id"]: r for r in cortex.get_blocks(ids, ["block_id", "user_id", "block_kind"])}
    for i, d in enumerate(decoded):
        p = present.get(d.block_id)
        if p is not None and (p["user_id"] != str(user_id) or p["block_kind"] != "imported"):
            # An import may stand in only for a block an import made for the same user.
            raise BadPacket(i, "block_id", f"block {d.block_id} exists already and was not imported for this "
                                           "user; nothing imported")
    now = datetime.now(timezone.utc)
    rows = []
    for d in decoded:
        if d.block_id in present:
            continue  # imported before for this user: importing twice changes nothing
        m, r = d.packet["metadata"], d.packet["references"]
        rows.append({
            "block_id": d.block_id, "user_id": str(user_id), "session_id": None, "block_kind": "imported",
            "universal_embedding": d.universal, "native_embedding": d.native,
            "flux_metrics": flux_struct(None), "salience_scores": salience_struct({"composite": m["salience_composite"]}),
            "coherence_gain": m["coherence_gain"], "arc_start_time": d.at, "arc_end_time": d.at, "created_at": now,
            "citations": r["citations"], "derived_from": r["derived_from"], "continues_from": r["continues_from"],
            "preoccupation_centroid_id": m["preoccupation_centroid_id"],
            "anterior_margin": d.prose["anterior_margin"], "live_zones": d.prose["live_zones"],
            "dead_zone_summaries": d.prose["dead_zone_summaries"], "posterior_margin": d.prose["posterior_margin"],
            "migrated_at": now})
    version = cortex.upsert_blocks(rows)["version"] if rows else None
    return {"into": "cortex", "packets": len(decoded), "imported": len(rows),
            "already_present": len(decoded) - len(rows), "cortex_version": version}
