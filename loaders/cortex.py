"""The Cortex: LanceDB tables cortex_blocks and cortex_clusters (spec 004 section 5).

cortex_blocks holds each migrated Holographic Block with both embeddings at full float32
precision, its flux metrics and salience as typed structs, its structural references and
its compressed prose (live zones verbatim). Writes are merge-inserts keyed on block_id,
so writing the same block twice leaves one row: that is what makes a crash between the
LanceDB write and the PostgreSQL mark harmless.

Indexes follow LanceDB's guidance (no index where ~100 ms brute force is acceptable) and
this machine's measurements (brute force 486 ms at 100k rows): a vector index on each
embedding appears once cortex.index_min_rows blocks have it (20k; type cortex.index_type,
chosen by bench/cortex_search.py); block_id and user_id get BTree scalar indexes at once
(reads by block id and per-user prefiltered search).

The location is a LanceDB URI: PSIMEM_CORTEX_URI, else $PSIMEM_HOME/cortex. An
s3://bucket/prefix URI puts the Cortex on S3 or an S3-compatible store (loaders.storage):
endpoint, region and credentials from the AWS SDKs' environment variables (AWS_ENDPOINT_URL,
AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) passed to LanceDB
as storage options, else LanceDB's own AWS credential chain. An http:// endpoint allows
plain HTTP.

Several workers may write one Cortex at once. LanceDB commits optimistically (a
conditional PUT of the next manifest on S3, an atomic rename locally); what two writers
cannot both commit is retried: block_id is cortex_blocks' (unenforced) primary key and
every block write is a merge-insert on it, so two writers inserting the same new block
conflict and the loser's retry updates instead of duplicating, and a compaction or index
build that lost to another writer is planned again on the new version (_retrying). Reads
check for the latest version every time (read_consistency_interval 0), so a worker never
decides on what another process's commit has made stale.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

# LanceDB's Rust core logs a deprecation notice to stderr on every hybrid query that selects
# columns; psimem's commands print one line per problem, so only its errors are shown.
os.environ.setdefault("LANCEDB_LOG", "error")

import lancedb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from .storage import cortex_uri, storage_options  # noqa: E402

BLOCKS = "cortex_blocks"
CLUSTERS = "cortex_clusters"
TREES = "cortex_trees"
LEVELS = {0: "leaf", 1: "branch", 2: "trunk", 3: "canopy"}
SPACES = ("universal", "native")

_LEVEL = pa.struct([("P", pa.float64()), ("C", pa.float64()), ("ID", pa.float64())])
SALIENCE = pa.struct([("utterance_level", _LEVEL), ("exchange_level", _LEVEL), ("theme_level", _LEVEL),
                      ("composite", pa.float64())])
FLUX = pa.struct([("peak_perplexity", pa.float64()), ("baseline_perplexity", pa.float64()),
                  ("final_perplexity", pa.float64()), ("flux_reversal_quality", pa.float64()),
                  ("arc_duration_turns", pa.int32())])
LIVE = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("content", pa.string())])
DEAD = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("summary", pa.string())])
TS = pa.timestamp("us", tz="UTC")


# HNSW search breadth once the IVF_HNSW_SQ index exists: at 100k blocks LanceDB's default
# gave recall@10 0.973, ef 100 gave 0.998 at p95 5.3 ms (bench/cortex_search.py).
SEARCH_EF = 100
# IVF_HNSW_SQ: one partition (an HNSW graph) per PARTITION_ROWS blocks. At 1M blocks recall@10
# was 0.45 (0.78 with ef 100; probing all 10 partitions changed nothing): see the closing
# figures of bench/cortex_search.py before relying on the Cortex index at that size.
PARTITION_ROWS = 100_000


# A commit lost to another writer is retried up to COMMIT_ATTEMPTS times in all, after a
# jittered exponential backoff from COMMIT_BACKOFF seconds (about 6 s of waiting in all),
# on top of the retries LanceDB makes inside a merge-insert.
COMMIT_ATTEMPTS = 8
COMMIT_BACKOFF = 0.05
# Field metadata that makes a column the table's unenforced primary key (what
# Table.set_unenforced_primary_key writes); merge-inserts on it detect concurrent inserts.
PRIMARY_KEY = {"lance-schema:unenforced-primary-key:position": "1"}


def is_commit_conflict(e: BaseException) -> bool:
    """A LanceDB commit that another writer's commit pre-empted (it says to retry)."""
    return "commit conflict" in str(e).lower()


def blocks_schema(udim: int, ndim: int) -> pa.Schema:
    return pa.schema([
        pa.field("block_id", pa.string(), nullable=False, metadata=PRIMARY_KEY),
        pa.field("user_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("block_kind", pa.string()),
        pa.field("user_tier", pa.string()),
        pa.field("universal_embedding", pa.list_(pa.float32(), udim)),
        pa.field("native_embedding", pa.list_(pa.float32(), ndim)),
        pa.field("flux_metrics", FLUX),
        pa.field("salience_scores", SALIENCE),
        pa.field("coherence_gain", pa.float64()),
        pa.field("ties_merge_weight", pa.float64()),
        pa.field("arc_start_time", TS),
        pa.field("arc_end_time", TS),
        pa.field("created_at", TS),
        pa.field("cycle_date", pa.date32()),
        pa.field("first_turn", pa.int32()),
        pa.field("last_turn", pa.int32()),
        pa.field("parent_metablock_id", pa.string()),
        pa.field("session_continuity_flag", pa.bool_()),
        pa.field("continues_from", pa.string()),
        pa.field("continued_by", pa.string()),
        pa.field("citations", pa.list_(pa.string())),
        pa.field("preoccupation_centroid_id", pa.string()),
        pa.field("derived_from", pa.string()),
        pa.field("anterior_margin", pa.string()),
        pa.field("live_zones", pa.list_(LIVE)),
        pa.field("dead_zone_summaries", pa.list_(DEAD)),
        pa.field("posterior_margin", pa.string()),
        pa.field("search_text", pa.string()),
        pa.field("prose_bytes_before", pa.int64()),
        pa.field("prose_bytes_after", pa.int64()),
        pa.field("migrated_at", TS),
    ])


def clusters_schema(udim: int) -> pa.Schema:
    return pa.schema([
        pa.field("cluster_id", pa.string(), nullable=False, metadata=PRIMARY_KEY),
        pa.field("tree_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("level", pa.int32(), nullable=False),
        pa.field("level_name", pa.string()),
        pa.field("parent_cluster_id", pa.string()),
        pa.field("centroid_embedding", pa.list_(pa.float32(), udim)),
        pa.field("summary_embedding", pa.list_(pa.float32(), udim)),
        pa.field("summary_text", pa.string()),
        pa.field("member_count", pa.int64()),
        pa.field("member_ids", pa.list_(pa.string())),
        pa.field("leaf_count", pa.int64()),
        pa.field("created_at", TS),
    ])


def trees_schema() -> pa.Schema:
    """One row per user with a RAPTOR tree: what the tree was built from, so a night can tell
    whose Cortex changed since (fingerprint over the user's block ids and write times)."""
    return pa.schema([
        pa.field("user_id", pa.string(), nullable=False, metadata=PRIMARY_KEY),
        pa.field("tree_id", pa.string(), nullable=False),
        pa.field("fingerprint", pa.string(), nullable=False),
        pa.field("blocks", pa.int64()),
        pa.field("clusters", pa.int64()),
        pa.field("built_at", TS),
    ])


def _s(v) -> str | None:
    return None if v is None else str(v)


def as_f32(v) -> np.ndarray | None:
    """A pgvector Vector, a list or an array as a float32 array."""
    if v is None:
        return None
    return np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, dtype=np.float32)


def _f32(v, dim: int) -> np.ndarray | None:
    if v is None:
        return None
    a = as_f32(v)
    if a.shape != (dim,):
        raise ValueError(f"embedding: must have {dim} dimensions, got {a.shape}")
    return a


def _level(d) -> dict | None:
    return None if not isinstance(d, dict) else {k: d.get(k) for k in ("P", "C", "ID")}


def salience_struct(s: dict | None) -> dict:
    s = s or {}
    return {"utterance_level": _level(s.get("utterance_level")), "exchange_level": _level(s.get("exchange_level")),
            "theme_level": _level(s.get("theme_level")), "composite": s.get("composite")}


def flux_struct(f: dict | None) -> dict:
    f = f or {}
    return {k: f.get(k) for k in ("peak_perplexity", "baseline_perplexity", "final_perplexity",
                                  "flux_reversal_quality", "arc_duration_turns")}


def row_from_pg(b: dict, udim: int, ndim: int, now: datetime | None = None) -> dict:
    """A row of memory.blocks_for_transfer as a cortex_blocks row."""
    prose = b["prose"]
    return {
        "block_id": str(b["block_id"]), "user_id": _s(b["user_id"]), "session_id": _s(b["session_id"]),
        "block_kind": b["block_kind"], "user_tier": b["user_tier"],
        "universal_embedding": _f32(b["universal_embedding"], udim),
        "native_embedding": _f32(b["native_embedding"], ndim),
        "flux_metrics": flux_struct(b["flux_metrics"]), "salience_scores": salience_struct(b["salience_scores"]),
        "coherence_gain": b["coherence_gain"], "ties_merge_weight": b["ties_merge_weight"],
        "arc_start_time": b["arc_start_time"], "arc_end_time": b["arc_end_time"], "created_at": b["created_at"],
        "cycle_date": b["cycle_date"], "first_turn": b["first_turn"], "last_turn": b["last_turn"],
        "parent_metablock_id": _s(b["parent_metablock_id"]), "session_continuity_flag": b["session_continuity_flag"],
        "continues_from": _s(b["continues_from"]), "continued_by": _s(b["continued_by"]),
        "citations": [str(c) for c in (b["citations"] or [])],
        "preoccupation_centroid_id": _s(b["preoccupation_centroid_id"]), "derived_from": _s(b["derived_from"]),
        "anterior_margin": prose.get("anterior_margin"),
        "live_zones": [{"start": z.get("start"), "end": z.get("end"), "content": z["content"]}
                       for z in prose.get("live_zones") or []],
        "dead_zone_summaries": [{"start": z.get("start"), "end": z.get("end"), "summary": z.get("summary")}
                                for z in prose.get("dead_zone_summaries") or []],
        "posterior_margin": prose.get("posterior_margin"),
        "prose_bytes_before": b.get("prose_bytes_before"), "prose_bytes_after": b.get("prose_bytes_after"),
        "migrated_at": now or datetime.now(timezone.utc),
    }


def prose_of(row: dict) -> dict:
    """The prose JSON of a cortex_blocks row, in the Hippocampus shape."""
    return {"anterior_margin": row.get("anterior_margin") or "",
            "live_zones": [dict(z) for z in row.get("live_zones") or []],
            "dead_zone_summaries": [dict(z) for z in row.get("dead_zone_summaries") or []],
            "posterior_margin": row.get("posterior_margin") or ""}


def prose_text(prose: dict) -> str:
    """A block's prose as text: margins around its zones in turn order (live zones verbatim,
    dead zones as their summaries in brackets). What the Cortex's full-text index holds."""
    zones = [(z.get("start") or 0, 0, z["content"]) for z in prose.get("live_zones") or []] + \
            [(z.get("start") or 0, 1, f"[{z.get('summary') or ''}]") for z in prose.get("dead_zone_summaries") or []]
    parts = [prose.get("anterior_margin") or ""] + [t for _, _, t in sorted(zones, key=lambda z: (z[0], z[1]))] + \
            [prose.get("posterior_margin") or ""]
    return "\n".join(p for p in parts if p)


def _quote(ids) -> str:
    out = []
    for i in ids:
        s = str(i)
        if "'" in s:
            raise ValueError(f"id: not a valid id {s!r}")
        out.append(f"'{s}'")
    return ", ".join(out)


@dataclass
class Cortex:
    """One LanceDB database holding the Cortex tables.

    storage_options: None builds them from the URI and the environment (storage_options()).
    conflicts counts the commits this object had to retry because another writer committed first."""

    uri: str
    udim: int
    ndim: int
    storage_options: dict | None = field(default=None, repr=False)
    # How stale a read may be: 0 checks for a newer version on every read (what a worker
    # deciding on another's commits needs); None never checks (one version for this object).
    read_consistency: timedelta | None = timedelta(0)
    conflicts: int = 0

    def __post_init__(self):
        if self.storage_options is None:
            self.storage_options = storage_options(self.uri)
        self.db = lancedb.connect(self.uri, storage_options=self.storage_options or None,
                                  read_consistency_interval=self.read_consistency)
        self._blocks = None

    @classmethod
    def for_database(cls, conn, uri: str | None = None) -> "Cortex":
        """The Cortex at uri (default cortex_uri()) with the embedding sizes this database was installed with."""
        dims = dict(conn.execute("SELECT key, (value #>> '{}')::int FROM ops.settings WHERE key IN "
                                 "('embedding.universal_dim', 'embedding.native_dim')").fetchall())
        return cls(cortex_uri(uri), dims["embedding.universal_dim"], dims["embedding.native_dim"])

    def _retrying(self, fn):
        """fn(), again after a commit another writer pre-empted (jittered exponential backoff)."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return fn()
            except Exception as e:
                if attempt == COMMIT_ATTEMPTS or not is_commit_conflict(e):
                    raise
                self.conflicts += 1
                time.sleep(COMMIT_BACKOFF * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))

    def _table(self, name: str, schema: pa.Schema, key: str):
        """The table, created when missing (by whichever writer gets there first), with key as its primary key."""
        if name not in self._tables():
            tbl = self._retrying(lambda: self.db.create_table(name, schema=schema, exist_ok=True))
        else:
            tbl = self.db.open_table(name)
        if not any(k.startswith(b"lance-schema:unenforced-primary-key") for k in tbl.schema.field(key).metadata or {}):
            try:  # a table written before the key existed: declare it once
                self._retrying(lambda: tbl.set_unenforced_primary_key([key]))
            except ValueError as e:
                if "already set" not in str(e):  # another writer declared it first
                    raise
        return tbl

    # -- cortex_blocks ------------------------------------------------------------------
    def _tables(self) -> set[str]:
        return set(self.db.list_tables().tables)

    def blocks(self, create: bool = False):
        if self._blocks is None:
            if create:
                self._blocks = self._table(BLOCKS, blocks_schema(self.udim, self.ndim), "block_id")
                self._add_search_text(self._blocks)
            elif BLOCKS in self._tables():
                try:
                    self._blocks = self.db.open_table(BLOCKS)
                except ValueError as e:
                    # A writer creating the table: on object storage its directory is listed
                    # before its first version is written. For a reader it is not there yet.
                    if "not found" not in str(e):
                        raise
                    return None
            else:
                return None
        return self._blocks

    def _add_search_text(self, tbl) -> None:
        """A Cortex written before blocks had search_text gets the column, filled from each
        block's prose, the first time a writer opens it."""
        if "search_text" in tbl.schema.names:
            return
        try:
            self._retrying(lambda: tbl.add_columns({"search_text": "CAST(NULL AS STRING)"}))
        except Exception as e:
            if "search_text" not in tbl.schema.names and "already exists" not in str(e).lower():
                raise
        cols = ["block_id", "anterior_margin", "live_zones", "dead_zone_summaries", "posterior_margin"]
        rows = tbl.search().where("search_text IS NULL").select(cols).limit(None).to_list()
        if rows:
            data = pa.Table.from_pylist([{"block_id": r["block_id"], "search_text": prose_text(prose_of(r))} for r in rows],
                                        schema=pa.schema([tbl.schema.field("block_id"), pa.field("search_text", pa.string())]))
            self._retrying(lambda: tbl.merge_insert("block_id").when_matched_update_all().use_index(False).execute(data))

    def upsert_blocks(self, rows: list[dict]) -> dict:
        """Writes rows keyed on block_id in one commit (insert new, replace existing).

        A merge-insert on the primary key even when, as usual, none of the rows is there yet:
        a batch redone after a crash before the PostgreSQL mark, or written twice by two
        workers at once, replaces rather than duplicates. Without the block_id index: LanceDB
        13's indexed merge-insert does not record the keys it inserts, so two writers inserting
        the same new block both commit (measured: 4 processes, 76 keys, 301 rows); the scan
        of the key column does. Returns the table version, rows inserted and updated, and how
        many commit attempts it took."""
        tbl = self.blocks(create=True)
        rows = [r if r.get("search_text") else {**r, "search_text": prose_text(prose_of(r))} for r in rows]
        data = pa.Table.from_pylist(rows, schema=blocks_schema(self.udim, self.ndim))
        # Sizes are checked in row_from_pg; a missing native embedding (the agent supplied none) stays null.
        r = self._retrying(lambda: tbl.merge_insert("block_id").when_matched_update_all().when_not_matched_insert_all()
                           .use_index(False).execute(data, on_bad_vectors="null"))
        self._ensure_indexes(tbl)
        return {"version": r.version, "inserted": r.num_inserted_rows, "updated": r.num_updated_rows,
                "attempts": r.num_attempts}

    def _ensure_indexes(self, tbl) -> None:
        """BTree indexes on block_id and user_id and LanceDB's own full-text index on search_text
        (rows written after it was built are searched too, unindexed, until optimize())."""
        from lancedb.index import FTS, BTree

        have = {tuple(i.columns) for i in tbl.list_indices()}
        build = {col: (lambda c=col: tbl.create_index(c, config=BTree(), replace=False)) for col in ("block_id", "user_id")}
        build["search_text"] = lambda: tbl.create_index("search_text", config=FTS(), replace=False)
        for col, make in build.items():
            if (col,) not in have:
                try:
                    self._retrying(make)
                except Exception as e:
                    if "already exists" not in str(e):  # another writer built it first
                        raise

    def count(self, where: str | None = None) -> int:
        tbl = self.blocks()
        return 0 if tbl is None else tbl.count_rows(where)

    def get_blocks(self, block_ids, columns: list[str] | None = None) -> list[dict]:
        tbl = self.blocks()
        ids = [str(i) for i in block_ids]
        if tbl is None or not ids:
            return []
        q = tbl.search().where(f"block_id IN ({_quote(ids)})").limit(None)
        if columns:
            q = q.select(columns)
        return q.to_list()

    def block_ids(self) -> list[str]:
        tbl = self.blocks()
        return [] if tbl is None else tbl.search().select(["block_id"]).limit(None).to_arrow() \
            .column("block_id").to_pylist()

    def search_blocks(self, vector, limit: int = 10, user_id=None, space: str = "universal",
                      columns: list[str] | None = None, exact: bool = False) -> list[dict]:
        """Nearest blocks by cosine distance (column _distance), prefiltered to one user when given."""
        tbl = self.blocks()
        if tbl is None:
            return []
        q = tbl.search(np.asarray(vector, dtype=np.float32), vector_column_name=f"{space}_embedding") \
               .distance_type("cosine").limit(limit).ef(SEARCH_EF)
        if user_id is not None:
            q = q.where(f"user_id = {_quote([user_id])}", prefilter=True)
        if columns:
            q = q.select([*columns, "_distance"])
        if exact:
            q = q.bypass_vector_index()
        return q.to_list()

    def search_hybrid(self, vector, text: str | None, limit: int = 10, user_id=None, rrf_k: int = 60,
                      since: datetime | None = None, until: datetime | None = None) -> list[dict]:
        """LanceDB's hybrid search: blocks by cosine distance of universal embeddings and by its
        full-text index (BM25 on search_text), fused by its RRF reranker with rrf_k, prefiltered
        to one user and to blocks overlapping [since, until). Each row keeps _distance (null when
        the vector leg did not find it), _score (null when the text leg did not) and
        _relevance_score. Without text, or with none of its words indexed, the vector leg alone."""
        from lancedb.rerankers import RRFReranker

        tbl = self.blocks()
        if tbl is None:
            return []
        where = [f"user_id = {_quote([user_id])}"] if user_id is not None else []
        if since is not None:
            where.append(f"arc_end_time >= TIMESTAMP '{since.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S.%f}'")
        if until is not None:
            where.append(f"arc_start_time < TIMESTAMP '{until.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S.%f}'")
        cols = ["block_id", "user_id", "session_id", "block_kind", "first_turn", "last_turn", "arc_start_time",
                "anterior_margin", "live_zones", "dead_zone_summaries", "posterior_margin", "search_text"]
        v = np.asarray(vector, dtype=np.float32)
        if text and text.strip() and "search_text" in tbl.schema.names:
            q = tbl.search(query_type="hybrid", vector_column_name="universal_embedding").vector(v).text(text) \
                   .distance_type("cosine").rerank(RRFReranker(K=rrf_k, return_score="all"))
        else:
            q = tbl.search(v, vector_column_name="universal_embedding").distance_type("cosine")
            cols += ["_distance"]
        q = q.limit(limit).select(cols)
        if where:
            q = q.where(" AND ".join(where), prefilter=True)
        return q.to_list()

    def vector_index(self, space: str = "universal"):
        tbl = self.blocks()
        if tbl is None:
            return None
        for i in tbl.list_indices():
            if list(i.columns) == [f"{space}_embedding"]:
                return i
        return None

    def ensure_vector_index(self, min_rows: int, index_type: str) -> dict:
        """Creates each space's vector index once min_rows blocks have that embedding (native ones
        may be missing); afterwards optimize() keeps them current. Says what exists, what is new.
        Two workers may both build it; the one whose commit loses finds it there and stops."""
        n, made = self.count(), []
        for space in SPACES:
            if self.vector_index(space) is not None:
                continue
            have = n if space == "universal" else self.count(f"{space}_embedding IS NOT NULL")
            if have >= min_rows:
                try:
                    self.blocks().create_index(f"{space}_embedding", config=index_config(index_type, have), replace=False)
                    made.append(space)
                except Exception as e:
                    if not (is_commit_conflict(e) or "already exists" in str(e)) or self.vector_index(space) is None:
                        raise
        return {"rows": n, "created": made,
                "vector_index": {s: i.index_type for s in SPACES if (i := self.vector_index(s)) is not None}}

    def optimize(self) -> None:
        """Compacts the fragments many small merge-inserts leave and brings indexes up to date."""
        tbl = self.blocks()
        if tbl is not None:
            self._retrying(tbl.optimize)

    # -- cortex_clusters and cortex_trees -----------------------------------------------
    def clusters(self):
        return self.db.open_table(CLUSTERS) if CLUSTERS in self._tables() else None

    def trees(self) -> dict[str, dict]:
        """The cortex_trees rows by user: each user's tree id, fingerprint and sizes as last built."""
        if TREES not in self._tables():
            return {}
        return {r["user_id"]: r for r in self.db.open_table(TREES).search().limit(None).to_list()}

    def user_clusters(self, users) -> list[dict]:
        """The cluster nodes of these users' trees."""
        tbl = self.clusters()
        users = list(users)
        if tbl is None or not users:
            return []
        return tbl.search().where(f"user_id IN ({_quote(users)})").limit(None).to_list()

    def replace_trees(self, users, rows: list[dict], trees: list[dict]) -> int:
        """Replaces the trees of these users (and only theirs) by rows in one LanceDB commit:
        a merge-insert on cluster_id that also deletes those users' nodes the new trees lack,
        so a reader sees a user's old tree or new one, never a mix, and other users' trees
        are not rewritten. Then records the trees built (cortex_trees: one row per user, none
        for a user left without blocks). A crash between the two commits only makes the next
        run rebuild these users again, to the same clusters and ids. Returns the clusters
        table's new version."""
        users = sorted({str(u) for u in users})
        if not users:
            tbl = self.clusters()
            return None if tbl is None else tbl.version
        tbl = self._table(CLUSTERS, clusters_schema(self.udim), "cluster_id")
        data = pa.Table.from_pylist(rows, schema=clusters_schema(self.udim))
        r = self._retrying(lambda: tbl.merge_insert("cluster_id").when_matched_update_all().when_not_matched_insert_all()
                           .when_not_matched_by_source_delete(f"user_id IN ({_quote(users)})").use_index(False)
                           .execute(data))
        tt = self._table(TREES, trees_schema(), "user_id")
        self._retrying(lambda: tt.merge_insert("user_id").when_matched_update_all().when_not_matched_insert_all()
                       .when_not_matched_by_source_delete(f"user_id IN ({_quote(users)})").use_index(False)
                       .execute(pa.Table.from_pylist(trees, schema=trees_schema())))
        return r.version


def fingerprint(pairs, params: str) -> str:
    """What a user's tree is built from: their block ids with each block's write time, and the
    clustering parameters. Equal fingerprints mean the user's tree would come out the same."""
    h = hashlib.sha256(params.encode())
    for block_id, written in sorted(pairs):
        h.update(f"{block_id}|{written}\n".encode())
    return h.hexdigest()


def index_config(index_type: str, rows: int):
    from lancedb.index import HnswPq, HnswSq, IvfFlat, IvfPq, IvfRq

    parts = max(1, int(np.sqrt(rows)))
    return {"IVF_HNSW_SQ": lambda: HnswSq(distance_type="cosine", num_partitions=max(1, rows // PARTITION_ROWS)),
            "IVF_HNSW_PQ": lambda: HnswPq(distance_type="cosine", num_partitions=max(1, rows // PARTITION_ROWS)),
            "IVF_PQ": lambda: IvfPq(distance_type="cosine", num_partitions=parts),
            "IVF_RQ": lambda: IvfRq(distance_type="cosine", num_partitions=parts),
            "IVF_FLAT": lambda: IvfFlat(distance_type="cosine", num_partitions=parts)}[index_type]()


def json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, datetime):
        return o.isoformat()
    return str(o)


def dumps(o) -> str:
    return json.dumps(o, default=json_default)
