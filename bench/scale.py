"""psimem beyond one machine: the Cortex on S3 against a local directory, several workers,
incremental RAPTOR, and a capacity model built from the figures measured here.

Sections (all by default; --only picks some):
  migration  N queued blocks (768-d universal + 4096-d native, typical prose, 10 users) moved
             into a fresh Cortex by 1, 2 and 4 `psimem worker --once` processes at once, in a
             local directory and on an S3-compatible server (moto's server mode on 127.0.0.1,
             tests/s3_server.py): blocks/s over the span from the first attempt's start to the
             last one's finish, every block checked present exactly once, Cortex bytes per block
             (live, and stored with the old versions compaction leaves until its cleanup).
  search     --search-blocks blocks (768-d) in a Cortex on each store (bulk-appended in 5k-block
             files), vector index built as the worker builds it (cortex.index_min_rows,
             cortex.index_type): object-store requests and bytes per query, p50/p95 of
             Cortex.search_blocks over all blocks and one user's (prefiltered, as recall asks),
             recall@10 against numpy's exact answer, and a cold open + first query (what one
             `psimem recall` invocation pays).
  raptor     --users users with --blocks-per-user blocks each, clustered once; then 1% of the
             users get new blocks and the night's RAPTOR runs incrementally (only their trees),
             then as a full re-cluster of every user on the same Cortex: seconds, ratio, ids kept.
  capacity   --turns turns loaded into memory.day_table with every index in place
             (loaders.turns, binary COPY): bytes per turn in the table (heap + TOAST) and in its
             HNSW indexes; the Night Cycle on tests/night_script.py's scripted conversation for
             blocks per turn and cycle seconds per user; with the Cortex figures above, per user
             and day: turns, day-table bytes, HNSW bytes, cycle seconds, Cortex bytes; and users
             per server for a given disk, memory and night window.

Vectors are synthetic with the statistics of real sentence embeddings (bench/common.py).
Runs on its own throwaway cluster (/var/tmp/psimem-bench-scale, port 55439) and its own
moto server; workers are real processes. Figures go to bench/out/scale.json.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
from common import Timer, bench_database, embedding_like, percentile_ms, report, say

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the S3 server helper and the scripted conversation

from s3_server import S3Server  # noqa: E402

from loaders.cortex import Cortex  # noqa: E402
from loaders.raptor import RaptorParams, cluster_cortex  # noqa: E402
from psimem.connect import connect  # noqa: E402

UDIM, NDIM = 768, 4096
BLOCK_HNSW = ("idx_blocks_universal", "idx_blocks_native")
STORES = ("local", "s3")


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class Stores:
    """A fresh Cortex URI on either store, and its size."""

    def __init__(self, server: S3Server):
        self.server, self.tmp = server, tempfile.mkdtemp(prefix="psimem-scale-", dir="/var/tmp")

    def uri(self, store: str, name: str) -> str:
        return self.server.new_uri(name) if store == "s3" else os.path.join(self.tmp, f"{name}-{uuid.uuid4().hex[:8]}")

    def env(self, store: str) -> dict:
        return self.server.env() if store == "s3" else {}

    def bytes(self, uri: str) -> int:
        return self.server.bytes_under(uri) if uri.startswith("s3://") else dir_bytes(uri)

    def cortex(self, store: str, uri: str, **kw) -> Cortex:
        env = dict(os.environ, **self.env(store))
        from loaders.storage import storage_options
        return Cortex(uri, UDIM, NDIM, storage_options(uri, env), **kw)

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- migration ---------------------------------------------------------------------------
def _worker_stats(stderr: str) -> dict:
    for line in reversed(stderr.splitlines()):
        if "worker stopped: " in line:
            return ast.literal_eval(line.split("worker stopped: ", 1)[1])
    raise RuntimeError(f"a worker did not report its stats:\n{stderr[-2000:]}")


def migration(url: str, stores: Stores, n: int, counts: list[int], seed: int) -> dict:
    from cortex_migrate import load_blocks

    runs = []
    with connect(url) as conn:
        defs = [conn.execute("SELECT pg_get_indexdef(%s::regclass)", (f"memory.{i}",)).fetchone()[0] for i in BLOCK_HNSW]
        for i in BLOCK_HNSW:  # as bench/cortex_migrate.py: the worker's figures, not index upkeep of the load
            conn.execute(f"DROP INDEX memory.{i}")
        conn.commit()
    try:
        for store in STORES:
            for w in counts:
                with connect(url) as conn:
                    load_blocks(conn, n, seed, users=10, cluster=False)
                uri = stores.uri(store, "migrate")
                env = dict(os.environ, PSIMEM_DATABASE_URL=url, PSIMEM_WORKER_FAULT="", **stores.env(store))
                say(f"migration: {n} blocks, {w} worker(s), {store}")
                with Timer() as t:
                    procs = [subprocess.Popen([sys.executable, "-m", "psimem", "worker", "--once", "--cortex", uri],
                                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                              text=True) for _ in range(w)]
                    errs = [p.communicate(timeout=3600)[1] for p in procs]
                if any(p.returncode for p in procs):
                    raise RuntimeError(f"a worker failed:\n{errs[0][-3000:]}")
                stats = [_worker_stats(e) for e in errs]
                with connect(url) as conn:
                    span, jobs = conn.execute(
                        "SELECT extract(epoch FROM max(a.finished_at) - min(a.started_at)), count(DISTINCT a.job_id) "
                        "FROM ops.job_attempts a JOIN ops.jobs j USING (job_id) WHERE j.kind = 'cortex_migrate' "
                        "AND a.outcome = 'done'").fetchone()
                    left = conn.execute("SELECT count(*) FROM memory.holographic_blocks WHERE migrated_at IS NULL").fetchone()[0]
                cx = stores.cortex(store, uri)
                ids, live = cx.block_ids(), cx.blocks().stats()["total_bytes"]
                if left or jobs != n or len(ids) != n or len(set(ids)) != n:
                    raise RuntimeError(f"lost or duplicated: {left} unmarked, {jobs} jobs done, {len(ids)} rows, "
                                       f"{len(set(ids))} distinct of {n}")
                size = stores.bytes(uri)
                r = {"store": store, "workers": w, "blocks": n, "span_seconds": round(float(span), 2),
                     "blocks_per_second": round(n / float(span), 1), "wall_seconds": round(t.seconds, 1),
                     "migrated_by_worker": [s["migrated"] for s in stats],
                     "conflicts_retried": sum(s["conflicts_retried"] for s in stats),
                     "cortex_write_seconds": round(sum(s.get("cortex_write_s", 0) for s in stats), 2),
                     "cortex_live_bytes_per_block": round(live / n),
                     "cortex_stored_bytes": size, "cortex_stored_bytes_per_block": round(size / n)}
                say(f"  {r['blocks_per_second']:.0f} blocks/s ({r['span_seconds']}s), by worker "
                    f"{r['migrated_by_worker']}, {r['conflicts_retried']} conflicts retried, "
                    f"{r['cortex_live_bytes_per_block']} live Cortex bytes/block "
                    f"({r['cortex_stored_bytes_per_block']} stored with the versions compaction leaves)")
                runs.append(r)
    finally:
        with connect(url) as conn:
            conn.execute("TRUNCATE memory.users CASCADE")
            conn.execute("DELETE FROM ops.jobs")
            for d in defs:
                conn.execute(d)
            conn.commit()
    by = {(r["store"], r["workers"]): r["blocks_per_second"] for r in runs}
    return {"runs": runs,
            "s3_vs_local": {w: round(by[("s3", w)] / by[("local", w)], 3) for w in counts},
            "speedup_vs_one_worker": {s: {w: round(by[(s, w)] / by[(s, counts[0])], 2) for w in counts} for s in STORES}}


# -- search ------------------------------------------------------------------------------
def _block_rows(ids, users, vectors) -> list[dict]:
    return [{"block_id": b, "user_id": u, "block_kind": "arc", "universal_embedding": v,
             "live_zones": [{"start": 0, "end": 0, "content": f"user: live zone of {b[:8]}"}],
             "dead_zone_summaries": [], "citations": []} for b, u, v in zip(ids, users, vectors)]


def _write(cx: Cortex, ids, users, vectors, chunk: int = 10_000) -> None:
    for i in range(0, len(ids), chunk):
        cx.upsert_blocks(_block_rows(ids[i:i + chunk], users[i:i + chunk], vectors[i:i + chunk]))


def _requests(cx: Cortex, q, user_id=None) -> dict:
    """Object-store requests and bytes one query makes (LanceDB's own I/O counters), summed over
    the plan: what a query costs on a store where every request is a round trip."""
    import re

    qb = cx.blocks().search(np.asarray(q, np.float32), vector_column_name="universal_embedding") \
        .distance_type("cosine").limit(10).select(["block_id"])
    if user_id is not None:
        qb = qb.where(f"user_id = '{user_id}'", prefilter=True)
    plan = qb.analyze_plan()
    units = {"B": 1, "K": 1e3, "M": 1e6, "G": 1e9}
    read = sum(float(v) * units[u] for v, u in re.findall(r"bytes_read=([\d.]+) ?([BKMG])", plan))
    return {"requests": sum(int(x) for x in re.findall(r"\brequests=(\d+)", plan)),
            "iops": sum(int(x) for x in re.findall(r"\biops=(\d+)", plan)), "bytes_read": round(read)}


def search(url: str, stores: Stores, n: int, users: int, queries: int, seed: int) -> dict:
    with connect(url) as conn:
        s = dict(conn.execute("SELECT key, value #>> '{}' FROM ops.settings WHERE key IN "
                              "('cortex.index_min_rows', 'cortex.index_type')").fetchall())
    allv = embedding_like(n + queries, UDIM, seed)
    base, qs = allv[:n], allv[n:]
    ids = [str(uuid.uuid4()) for _ in range(n)]
    owner = [f"user-{i % users}" for i in range(n)]
    truth = [set(np.argsort(-(base @ q))[:10].tolist()) for q in qs]
    pos = {b: i for i, b in enumerate(ids)}
    out = {"blocks": n, "users": users, "queries": queries, "index_type": s["cortex.index_type"], "runs": {}}
    for store in STORES:
        uri = stores.uri(store, "search")
        cx = stores.cortex(store, uri)
        say(f"search: writing {n} blocks to the {store} Cortex")
        # A bulk append in fragments of 5k blocks, not compacted: moto reads a whole object for
        # every ranged GET (0.62 s for 70 KB of a 280 MB file, 0.05 s of a 31 MB one, measured),
        # which real S3 does not; small files keep that artefact out of the latencies.
        with Timer() as tw:
            tbl = cx.blocks(create=True)
            for i in range(0, n, 5000):
                tbl.add(pa.Table.from_pylist(_block_rows(ids[i:i + 5000], owner[i:i + 5000], base[i:i + 5000]),
                                             schema=tbl.schema))
            cx._ensure_indexes(tbl)
        with Timer() as ti:
            info = cx.ensure_vector_index(int(s["cortex.index_min_rows"]), s["cortex.index_type"])
        r = {"bulk_add_seconds": round(tw.seconds, 1), "index_seconds": round(ti.seconds, 1),
             "vector_index": info["vector_index"], "cortex_bytes": stores.bytes(uri),
             "io_per_query": {"all": _requests(cx, qs[0]), "one_user": _requests(cx, qs[0], "user-0")}}

        def timed(fn):
            for q in qs[:5]:
                fn(q, 0)
            lat, got = [], []
            for j, q in enumerate(qs):
                t0 = time.perf_counter()
                got.append(fn(q, j))
                lat.append(time.perf_counter() - t0)
            return lat, got

        for name, reader in (("strong", cx), ("no_recheck", stores.cortex(store, uri, read_consistency=None))):
            lat, got = timed(lambda q, j, c=reader: c.search_blocks(q, 10, columns=["block_id"]))
            rec = float(np.mean([len({pos[g["block_id"]] for g in res} & t) / 10 for res, t in zip(got, truth)]))
            r[f"all_{name}"] = {"p50_ms": round(percentile_ms(lat, 50), 2), "p95_ms": round(percentile_ms(lat, 95), 2),
                                "recall_at_10": round(rec, 3)}
            lat, _ = timed(lambda q, j, c=reader: c.search_blocks(q, 10, user_id=f"user-{j % users}", columns=["block_id"]))
            r[f"one_user_{name}"] = {"p50_ms": round(percentile_ms(lat, 50), 2), "p95_ms": round(percentile_ms(lat, 95), 2)}
        cold = []
        for j in range(10):
            t0 = time.perf_counter()
            stores.cortex(store, uri).search_blocks(qs[j], 10, user_id=f"user-{j % users}", columns=["block_id"])
            cold.append(time.perf_counter() - t0)
        r["cold_open_and_query_ms"] = {"p50": round(percentile_ms(cold, 50), 1), "max": round(max(cold) * 1000, 1)}
        say(f"  {store}: all p50 {r['all_strong']['p50_ms']} ms p95 {r['all_strong']['p95_ms']} ms "
            f"(recall@10 {r['all_strong']['recall_at_10']}), one user p50 {r['one_user_strong']['p50_ms']} ms, "
            f"cold {r['cold_open_and_query_ms']['p50']} ms")
        out["runs"][store] = r
    loc, s3 = out["runs"]["local"], out["runs"]["s3"]
    out["s3_vs_local"] = {f"{k}_{p}": round(s3[k][p] / loc[k][p], 2) for k in ("all_strong", "one_user_strong",
                                                                               "all_no_recheck", "one_user_no_recheck")
                          for p in ("p50_ms", "p95_ms")}
    return out


# -- raptor ------------------------------------------------------------------------------
def raptor(stores: Stores, users: int, per_user: int, share: float, seed: int) -> dict:
    p = RaptorParams()
    changed = max(1, round(users * share))
    out = {"users": users, "blocks_per_user": per_user, "users_changed": changed, "runs": {}}
    for store in STORES:
        uri = stores.uri(store, "raptor")
        cx = stores.cortex(store, uri)
        # consecutive rows share a theme (sequential), so each user's history has a few themes of 8 blocks
        vecs = embedding_like(users * per_user, UDIM, seed, per_cluster=8, sequential=True)
        ids = [str(uuid.uuid4()) for _ in range(users * per_user)]
        owner = [f"user-{i // per_user}" for i in range(users * per_user)]
        say(f"raptor: {users} users x {per_user} blocks on the {store} Cortex")
        _write(cx, ids, owner, vecs)
        first = cluster_cortex(cx, p)
        # a night's new blocks for 1% of the users: ten each, on two new themes
        new_vecs = embedding_like(changed * 10, UDIM, seed + 1, per_cluster=5, sequential=True)
        _write(cx, [str(uuid.uuid4()) for _ in range(changed * 10)], [f"user-{i // 10}" for i in range(changed * 10)],
               new_vecs)
        inc = cluster_cortex(cx, p)
        full = cluster_cortex(cx, p, full=True)
        keys = ("seconds", "scan_seconds", "read_seconds", "cluster_seconds", "write_seconds", "users_reclustered",
                "blocks_reclustered", "clusters_kept", "clusters_new", "clusters_dropped")
        r = {"first_build": {k: first[k] for k in keys}, "incremental": {k: inc[k] for k in keys},
             "full": {k: full[k] for k in keys}, "levels": full["levels"],
             "full_vs_incremental": round(full["seconds"] / inc["seconds"], 1),
             "incremental_seconds_per_changed_user": round(inc["seconds"] / changed, 3)}
        say(f"  {store}: incremental {inc['seconds']}s ({inc['users_reclustered']} users), full {full['seconds']}s "
            f"({full['users_reclustered']} users): x{r['full_vs_incremental']}; tree {full['levels']}")
        out["runs"][store] = r
    return out


# -- capacity ----------------------------------------------------------------------------
def day_table(url: str, turns: int, seed: int) -> dict:
    from ingest import make_records

    from loaders.turns import ingest_rows

    with connect(url) as conn:
        conn.execute("TRUNCATE memory.day_table, memory.sessions, memory.users CASCADE")
        conn.commit()
        recs = make_records(turns, seed, users=10, per_session=100)
        say(f"capacity: {turns} turns into memory.day_table with its indexes")
        with Timer() as t:
            ingest_rows(conn, recs)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE memory.day_table")
        conn.autocommit = False
        table = conn.execute("SELECT pg_table_size('memory.day_table')").fetchone()[0]
        idx = {name: (size, "USING hnsw" in d) for name, size, d in conn.execute(
            "SELECT indexrelname, pg_relation_size(indexrelid), pg_get_indexdef(indexrelid) FROM pg_stat_user_indexes "
            "WHERE schemaname = 'memory' AND relname = 'day_table'").fetchall()}
        content = conn.execute("SELECT avg(octet_length(content)) FROM memory.day_table").fetchone()[0]
        conn.execute("TRUNCATE memory.day_table, memory.sessions, memory.users CASCADE")
        conn.commit()
    hnsw = sum(s for s, h in idx.values() if h)
    other = sum(s for s, h in idx.values() if not h)
    return {"turns": turns, "load_seconds": round(t.seconds, 1), "avg_content_bytes": round(float(content)),
            "table_bytes_per_turn": round(table / turns), "hnsw_bytes_per_turn": round(hnsw / turns),
            "other_index_bytes_per_turn": round(other / turns),
            "indexes": {k: v[0] for k, v in idx.items()}}


def scripted_nights(url: str, users: int) -> dict:
    """The Night Cycle on tests/night_script.py's conversation: blocks per turn and seconds per user."""
    import night_script

    blocks = turns = 0
    secs = []
    with connect(url) as conn:
        for u in range(users):
            user, _ = night_script.build(conn, tier="normal", ref=f"scale-night-{u}-{uuid.uuid4()}")
            conn.commit()
            turns += conn.execute("SELECT count(*) FROM memory.day_table WHERE user_id = %s", (user,)).fetchone()[0]
            with Timer() as t:
                conn.execute("SELECT memory.run_night_cycle(p_user_id => %s)", (user,))
                conn.commit()
            secs.append(t.seconds)
            blocks += conn.execute("SELECT count(*) FROM memory.holographic_blocks WHERE user_id = %s", (user,)).fetchone()[0]
        conn.execute("DELETE FROM ops.jobs")
        conn.execute("TRUNCATE memory.users CASCADE")
        conn.commit()
    return {"users": users, "turns": turns, "blocks": blocks, "blocks_per_turn": round(blocks / turns, 3),
            "night_seconds_per_user": round(float(np.median(secs)), 3),
            "night_seconds_per_turn": round(float(np.median(secs)) * users / turns, 4)}


def model(day: dict, nights: dict, mig: dict | None, rap: dict | None, a) -> dict:
    """Per user and day, and users per server, from the measured figures and the stated assumptions."""
    t = a.turns_per_user_day
    # live bytes: LanceDB keeps replaced versions until optimize()'s cleanup (7 days by default)
    cortex_per_block = {s: np.median([r["cortex_live_bytes_per_block"] for r in mig["runs"] if r["store"] == s])
                        for s in STORES} if mig else {}
    migrate_s = {s: 1 / max(r["blocks_per_second"] for r in mig["runs"] if r["store"] == s) for s in STORES} if mig else {}
    blocks = t * nights["blocks_per_turn"]
    per_day = {
        "turns": t,
        "day_table_bytes": t * day["table_bytes_per_turn"],
        "day_table_hnsw_bytes": t * day["hnsw_bytes_per_turn"],
        "day_table_other_index_bytes": t * day["other_index_bytes_per_turn"],
        "blocks": round(blocks, 2),
        "night_cycle_seconds": round(t * nights["night_seconds_per_turn"], 3),
        "cortex_migration_seconds": {s: round(blocks * v, 4) for s, v in migrate_s.items()},
        "raptor_seconds_if_changed": ({s: rap["runs"][s]["incremental_seconds_per_changed_user"] for s in rap["runs"]}
                                      if rap else {}),
        "cortex_bytes": {s: round(blocks * v) for s, v in cortex_per_block.items()},
    }
    resident = a.resident_days * (per_day["day_table_bytes"] + per_day["day_table_hnsw_bytes"]
                                  + per_day["day_table_other_index_bytes"])
    hnsw_resident = a.resident_days * per_day["day_table_hnsw_bytes"]
    raptor_s = max(per_day["raptor_seconds_if_changed"].values(), default=0.0)
    cycle = per_day["night_cycle_seconds"] + max(per_day["cortex_migration_seconds"].values(), default=0.0) + raptor_s
    limits = {
        "postgres_disk": a.disk_gb * 1e9 / resident,
        "hnsw_in_memory": a.ram_gb * 1e9 * a.hnsw_ram_share / hnsw_resident,
        "night_window": a.night_hours * 3600 * a.cores / cycle,
    }
    cortex_year = {s: 365 * v for s, v in per_day["cortex_bytes"].items()}
    return {"assumptions": {"turns_per_user_day": t, "resident_days": a.resident_days, "disk_gb": a.disk_gb,
                            "ram_gb": a.ram_gb, "hnsw_ram_share": a.hnsw_ram_share, "night_hours": a.night_hours,
                            "cores": a.cores,
                            "blocks_per_turn_from": "tests/night_script.py (scripted); bench/night_cycle.py has the "
                                                    "Night Cycle's own figures"},
            "per_user_day": per_day, "resident_bytes_per_user": round(resident),
            "hnsw_resident_bytes_per_user": round(hnsw_resident), "cycle_seconds_per_user_day": round(cycle, 3),
            "cortex_bytes_per_user_year": {s: round(v) for s, v in cortex_year.items()},
            "users_per_server": {k: int(v) for k, v in limits.items()},
            "binding_limit": min(limits, key=limits.get), "users_per_server_bound": int(min(limits.values()))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="migration,search,raptor,capacity", help="comma-separated sections")
    ap.add_argument("--migrate-blocks", type=int, default=4000, help="blocks per migration run (default 4000)")
    ap.add_argument("--workers", default="1,2,4", help="worker processes per migration run (default 1,2,4)")
    ap.add_argument("--search-blocks", type=int, default=100_000, help="Cortex size for the search section")
    ap.add_argument("--search-users", type=int, default=100, help="users the search blocks belong to")
    ap.add_argument("--queries", type=int, default=100, help="queries per search measurement (default 100)")
    ap.add_argument("--users", type=int, default=500, help="users in the RAPTOR section")
    ap.add_argument("--blocks-per-user", type=int, default=40, help="Cortex blocks per user in the RAPTOR section")
    ap.add_argument("--changed-share", type=float, default=0.01, help="share of users with new blocks (default 0.01)")
    ap.add_argument("--turns", type=int, default=20_000, help="turns loaded for the day-table figures")
    ap.add_argument("--turns-per-user-day", type=float, default=100, help="model: turns a user makes a day")
    ap.add_argument("--resident-days", type=float, default=None,
                    help="model: days a turn stays in the day table (default: the recall.window setting)")
    ap.add_argument("--disk-gb", type=float, default=1000, help="model: PostgreSQL disk for the day table")
    ap.add_argument("--ram-gb", type=float, default=24, help="model: server memory (this machine: 24)")
    ap.add_argument("--hnsw-ram-share", type=float, default=0.5, help="model: share of memory for HNSW indexes")
    ap.add_argument("--night-hours", type=float, default=4, help="model: hours the nightly work may take")
    ap.add_argument("--cores", type=int, default=2, help="model: cores for the nightly work (this machine: 2)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    only = set(a.only.split(","))
    if bad := only - {"migration", "search", "raptor", "capacity"}:
        ap.error(f"--only: unknown section(s) {', '.join(sorted(bad))}")
    try:
        counts = [int(x) for x in a.workers.split(",")]
    except ValueError:
        ap.error(f"--workers: must be comma-separated integers, got {a.workers!r}")
    url = bench_database("/var/tmp/psimem-bench-scale", 55439)
    server = S3Server(bucket="psimem-bench-scale").start()
    stores = Stores(server)
    out: dict = {"machine": f"{os.cpu_count()} cores, shared with moto's S3 server and PostgreSQL",
                 "vectors": "synthetic, clustered like sentence embeddings (bench/common.py)"}
    try:
        if "migration" in only:
            out["migration"] = migration(url, stores, a.migrate_blocks, counts, a.seed)
        if "search" in only:
            out["search"] = search(url, stores, a.search_blocks, a.search_users, a.queries, a.seed)
        if "raptor" in only:
            out["raptor"] = raptor(stores, a.users, a.blocks_per_user, a.changed_share, a.seed)
        if "capacity" in only:
            with connect(url) as conn:
                window = conn.execute("SELECT extract(epoch FROM (value #>> '{}')::interval) / 86400 FROM ops.settings "
                                      "WHERE key = 'recall.window'").fetchone()[0]
            a.resident_days = a.resident_days or float(window)
            out["day_table"] = day_table(url, a.turns, a.seed)
            out["scripted_nights"] = scripted_nights(url, 5)
            out["capacity"] = model(out["day_table"], out["scripted_nights"], out.get("migration"), out.get("raptor"), a)
    finally:
        server.stop()
        stores.close()
    print(json.dumps(out, indent=2, default=str))
    if "migration" in out:
        m = out["migration"]
        print("\nCortex migration, blocks/s (psimem worker processes at once):")
        for w in counts:
            row = {r["store"]: r["blocks_per_second"] for r in m["runs"] if r["workers"] == w}
            print(f"  {w} worker(s): local {row['local']:7.0f}   s3 {row['s3']:7.0f}   s3/local x{m['s3_vs_local'][w]}")
        print(f"  speed-up over one worker: {m['speedup_vs_one_worker']}")
    if "search" in out:
        s = out["search"]
        print(f"\nCortex search at {s['blocks']} blocks ({s['index_type']}), k=10:")
        for store, r in s["runs"].items():
            print(f"  {store:<5} all: p50 {r['all_strong']['p50_ms']:6.2f} ms p95 {r['all_strong']['p95_ms']:6.2f} ms "
                  f"(recall@10 {r['all_strong']['recall_at_10']});  one user: p50 {r['one_user_strong']['p50_ms']:6.2f} "
                  f"ms p95 {r['one_user_strong']['p95_ms']:6.2f} ms;  cold open+query p50 "
                  f"{r['cold_open_and_query_ms']['p50']} ms")
        print(f"  s3/local: {s['s3_vs_local']}")
    if "raptor" in out:
        r = out["raptor"]
        print(f"\nRAPTOR nightly, {r['users']} users x {r['blocks_per_user']} blocks, {r['users_changed']} changed:")
        for store, x in r["runs"].items():
            print(f"  {store:<5} incremental {x['incremental']['seconds']:7.2f}s  full {x['full']['seconds']:7.2f}s  "
                  f"full/incremental x{x['full_vs_incremental']}  (ids kept on the full rebuild: "
                  f"{x['full']['clusters_kept']}, new {x['full']['clusters_new']})")
    if "capacity" in out:
        c = out["capacity"]
        print(f"\nCapacity model ({c['assumptions']['turns_per_user_day']} turns/user/day, "
              f"{c['assumptions']['resident_days']:.0f} days in the day table):")
        print(f"  per user-day: {json.dumps(c['per_user_day'])}")
        print(f"  users per server: {c['users_per_server']} -> {c['users_per_server_bound']} ({c['binding_limit']})")
    report("scale", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
