"""Bifocal Packets: the spec's exact shape, bit-exact round trips through both stores, and
malformed packets refused by field with nothing of their batch imported."""
from __future__ import annotations

import base64
import copy
import json
import uuid

import numpy as np
import pytest

import night_script
from loaders.cortex import Cortex
from helpers import new_session, new_user
from loaders.packets import SCHEMA_PATH, BadPacket, export_blocks, import_packets, make_packet, parse, render

UDIM, NDIM = 768, 4096


@pytest.fixture
def blocks(conn, cortex_uri):
    """Night Cycle blocks in the Hippocampus (rolled back after the test), with native embeddings."""
    user, sessions = night_script.build(conn, tier="elder", ref=f"packets-{uuid.uuid4()}")
    conn.execute("SELECT memory.run_night_cycle(p_user_id => %s)", (user,))
    ids = [r[0] for r in conn.execute("SELECT block_id FROM memory.holographic_blocks WHERE user_id = %s "
                                      "ORDER BY arc_start_time, block_id", (user,))]
    rng = np.random.default_rng(5)
    for bid in ids:  # the scripted turns carry no native embedding; give the blocks one
        conn.execute("UPDATE memory.holographic_blocks SET native_embedding = %s::real[]::vector WHERE block_id = %s",
                     (rng.standard_normal(NDIM).astype(np.float32).tolist(), bid))
    return conn, user, sessions, ids, Cortex(cortex_uri, UDIM, NDIM)


def vec(packet, space):
    return base64.b64decode(packet["vectors"][space]["data"])


def live_texts(packet):
    c = packet["prose"]["content"]
    return [c[z["start"]:z["end"]].encode() for z in packet["prose"]["live_zones"]]


def test_export_has_exactly_the_specs_shape(blocks):
    conn, user, _, ids, cortex = blocks
    p = export_blocks(conn, cortex, ids[:1])[0]
    assert list(p) == ["packet_id", "packet_type", "timestamp", "prose", "vectors", "metadata", "references"]
    assert set(p["prose"]) == {"content", "content_type", "live_zones"} and p["prose"]["content_type"] == "full"
    assert set(p["vectors"]) == {"native", "universal"}
    assert p["vectors"]["universal"]["dimensions"] == UDIM and p["vectors"]["universal"]["encoding"] == "base64"
    assert set(p["metadata"]) == {"source_block_id", "coherence_gain", "salience_composite", "preoccupation_centroid_id"}
    assert set(p["references"]) == {"citations", "derived_from", "continues_from"}
    assert all(z["preserved"] is True for z in p["prose"]["live_zones"])
    # the decoded vector is the stored one, bit for bit (little-endian float32)
    stored = conn.execute("SELECT universal_embedding FROM memory.holographic_blocks WHERE block_id = %s",
                          (ids[0],)).fetchone()[0].to_numpy()
    assert np.frombuffer(vec(p, "universal"), "<f4").tobytes() == stored.astype("<f4").tobytes()
    # the live zones are the block's, byte for byte
    prose = conn.execute("SELECT prose FROM memory.holographic_blocks WHERE block_id = %s", (ids[0],)).fetchone()[0]
    assert live_texts(p) == [z["content"].encode() for z in prose["live_zones"]] and live_texts(p)
    import jsonschema
    jsonschema.validate(p, json.loads(SCHEMA_PATH.read_text()))


def test_round_trip_through_the_cortex_and_back_into_the_hippocampus_is_exact(blocks):
    conn, user, sessions, ids, cortex = blocks
    out = export_blocks(conn, cortex, ids)
    assert import_packets(conn, cortex, out, "cortex", user_id=user)["imported"] == len(ids)
    # from the Cortex: the same vectors and live zones (pretend the blocks moved: read them there)
    conn.execute("UPDATE memory.holographic_blocks SET migrated_at = now() WHERE block_id = ANY(%s)", (ids,))
    back = export_blocks(conn, cortex, ids)
    assert [p["prose"]["content_type"] for p in back] == ["summary"] * len(ids)
    for a, b in zip(out, back, strict=True):
        assert vec(a, "universal") == vec(b, "universal") and vec(a, "native") == vec(b, "native")
        assert live_texts(a) == live_texts(b)
        assert a["metadata"] == b["metadata"] and a["references"] == b["references"]

    # into the Hippocampus of another session, as new blocks, then out again
    fresh = copy.deepcopy(back)
    mapping = {p["metadata"]["source_block_id"]: str(uuid.uuid4()) for p in fresh}
    for p in fresh:
        p["metadata"]["source_block_id"] = mapping[p["metadata"]["source_block_id"]]
        r = p["references"]
        r["citations"] = [mapping.get(c, c) for c in r["citations"]]
        r["derived_from"] = mapping.get(r["derived_from"], r["derived_from"])
        r["continues_from"] = mapping.get(r["continues_from"], r["continues_from"])
    res = import_packets(conn, cortex, fresh, "hippocampus", session_id=sessions[2])
    assert res["imported"] == len(ids)
    again = export_blocks(conn, cortex, list(mapping.values()))
    for a, b in zip(back, again, strict=True):
        assert vec(a, "universal") == vec(b, "universal") and vec(a, "native") == vec(b, "native")
        assert live_texts(a) == live_texts(b)
    kinds = conn.execute("SELECT DISTINCT block_kind, session_id FROM memory.holographic_blocks WHERE block_id = ANY(%s::uuid[])",
                         (list(mapping.values()),)).fetchall()
    assert kinds == [("imported", sessions[2])]
    # importing the same packets again changes nothing
    assert import_packets(conn, cortex, fresh, "hippocampus", session_id=sessions[2])["imported"] == 0


def test_a_cortex_import_never_replaces_a_block_it_did_not_create_for_that_user(blocks):
    conn, user, _, ids, cortex = blocks
    out = export_blocks(conn, cortex, ids)
    assert import_packets(conn, cortex, out, "cortex", user_id=user)["imported"] == len(ids)
    version = cortex.blocks().version
    # the same packets again, for the same user: left as they are
    again = import_packets(conn, cortex, out, "cortex", user_id=user)
    assert (again["imported"], again["already_present"]) == (0, len(ids)) and cortex.blocks().version == version
    # for another user: refused, naming the packet and the block, and nothing of the batch written
    other = new_user(conn, f"packets-other-{uuid.uuid4()}")
    fresh, taken = copy.deepcopy(out[0]), copy.deepcopy(out[1])
    fresh["metadata"]["source_block_id"] = str(uuid.uuid4())
    for p in (fresh, taken):  # references would name the first user's blocks
        p["references"] = {"citations": [], "derived_from": None, "continues_from": None}
    with pytest.raises(BadPacket) as e:
        import_packets(conn, cortex, [fresh, taken], "cortex", user_id=other)
    assert (e.value.index, e.value.field) == (1, "block_id")
    assert f"block {ids[1]} exists already and was not imported for this user; nothing imported" in str(e.value)
    assert cortex.count() == len(ids) and cortex.blocks().version == version
    assert {r["user_id"] for r in cortex.get_blocks(ids, ["user_id"])} == {str(user)}
    # a block the worker moved there (not an import) is refused even for its own user
    moved = dict(cortex.get_blocks(ids[:1])[0], block_id=str(uuid.uuid4()), block_kind="arc")
    cortex.upsert_blocks([moved])
    clash = copy.deepcopy(out[0])
    clash["metadata"]["source_block_id"] = moved["block_id"]
    with pytest.raises(BadPacket, match=f"packet 0: block_id: block {moved['block_id']} exists already"):
        import_packets(conn, cortex, [clash], "cortex", user_id=user)
    assert cortex.get_blocks([moved["block_id"]], ["block_kind"])[0]["block_kind"] == "arc"


def test_render_and_parse_keep_live_zones_exact():
    prose = {"anterior_margin": "user: before", "posterior_margin": "assistant: after",
             "live_zones": [{"start": 1, "end": 2, "content": "user: ünïcode \U0001F600 and\n\nblank lines"},
                            {"start": 5, "end": 5, "content": "assistant: second"}],
             "dead_zone_summaries": [{"start": 3, "end": 4, "summary": "a gap"}]}
    content, offsets = render(prose)
    back = parse(content, offsets)
    assert [z["content"] for z in back["live_zones"]] == [z["content"] for z in prose["live_zones"]]
    assert back["anterior_margin"] == "user: before" and back["posterior_margin"] == "assistant: after"
    assert [z["summary"] for z in back["dead_zone_summaries"]] == ["a gap"]


def _mutations():
    def setp(path, value):
        def f(p):
            *head, last = path
            for k in head:
                p = p[k]
            p[last] = value
        return f

    def delp(path):
        def f(p):
            *head, last = path
            for k in head:
                p = p[k]
            del p[last]
        return f

    return [
        ("bad base64", setp(["vectors", "universal", "data"], "not base64!!"), "vectors.universal.data"),
        ("wrong dimensions", setp(["vectors", "universal", "dimensions"], UDIM - 1), "vectors.universal.dimensions"),
        ("data shorter than stated", setp(["vectors", "native", "data"], base64.b64encode(b"\0" * 400).decode()),
         "vectors.native.data"),
        ("missing field", delp(["metadata", "coherence_gain"]), "metadata.coherence_gain"),
        ("unknown packet_type", setp(["packet_type"], "gossip"), "packet_type"),
        ("unknown reference", setp(["references", "continues_from"], str(uuid.uuid4())), "references.continues_from"),
        ("live zone outside content", setp(["prose", "live_zones"], [{"start": 0, "end": 10 ** 6, "preserved": True}]),
         "prose.live_zones[0]"),
        ("not a uuid", setp(["packet_id"], "nope"), "packet_id"),
        ("NaN in a vector", setp(["vectors", "universal", "data"],
                                 base64.b64encode(np.full(UDIM, np.nan, "<f4").tobytes()).decode()), "vectors.universal.data"),
    ]


@pytest.mark.parametrize("what,mutate,field", _mutations(), ids=[m[0] for m in _mutations()])
@pytest.mark.parametrize("into", ["cortex", "hippocampus"])
def test_a_bad_packet_is_named_and_its_batch_imports_nothing(conn, tmp_path, what, mutate, field, into):
    user = new_user(conn, f"packets-{uuid.uuid4()}")
    session = new_session(conn, user)
    cortex = Cortex(str(tmp_path / "cortex"), UDIM, NDIM)
    rng = np.random.default_rng(1)
    good, bad = [make_packet({
        "block_id": uuid.uuid4(), "universal_embedding": rng.standard_normal(UDIM), "native_embedding": rng.standard_normal(NDIM),
        "prose": {"anterior_margin": "a", "live_zones": [{"start": 1, "end": 1, "content": "live"}],
                  "dead_zone_summaries": [], "posterior_margin": "p"}, "coherence_gain": 0.5}, "full") for _ in range(2)]
    mutate(bad)
    with pytest.raises(BadPacket) as e:
        import_packets(conn, cortex, [good, bad], into, user_id=user, session_id=session)
    assert e.value.index == 1 and e.value.field == field, str(e.value)
    assert str(e.value).startswith(f"packet 1: {field}: ")
    assert cortex.count() == 0
    assert conn.execute("SELECT count(*) FROM memory.holographic_blocks WHERE block_id = %s",
                        (good["metadata"]["source_block_id"],)).fetchone()[0] == 0
