"""The psimem command line: one entry point for the database, ingest and the demo."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .cluster import Cluster
from .settings import Settings


def say(msg: str) -> None:
    print(f"psimem: {msg}", file=sys.stderr, flush=True)


# Argument types: a bad argument is one line from argparse naming it, never a traceback.

def uuid_arg(text: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a UUID such as 8c6f2a4e-0b1d-4c4e-9a53-2f0d6c1e7b90, got {text!r}")


def input_file(text: str) -> str:
    """A readable regular file, or - for standard input."""
    if text == "-":
        return text
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"must be a file, not a directory: {text}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"not readable: {text}")
    return text


def timestamp(text: str):
    """An ISO 8601 time; UTC when it names no zone."""
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an ISO 8601 time such as 2024-05-01 or 2024-05-01T14:30+02:00, got {text!r}")
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _cluster(args) -> Cluster:
    s = Settings.from_env()
    if s.database_url:
        raise SystemExit(f"psimem: PSIMEM_DATABASE_URL is set; `db {args.db_cmd}` manages only the embedded cluster")
    return Cluster.from_settings(s)


def cmd_db(args) -> int:
    from .connect import database_url

    if args.db_cmd == "up":
        _cluster(args).start(say)
        print(database_url())
    elif args.db_cmd == "down":
        _cluster(args).stop(say)
    elif args.db_cmd == "status":
        s = Settings.from_env()
        if s.database_url:
            print(f"external server: {s.database_url}")
        else:
            c = Cluster.from_settings(s)
            state = "running" if c.running() else ("stopped" if c.initialized() else "not created")
            print(f"embedded cluster: {state}\n  data: {c.data}\n  url:  {c.url()}")
            if state != "running":
                return 3
        from . import migrate
        from .sqlfiles import code_version

        print(f"  schema revision: {migrate.current(database_url()) or 'none (run psimem db migrate)'}")
        print(f"  SQL code version here: {code_version()}")
    elif args.db_cmd == "url":
        print(database_url())
    elif args.db_cmd == "psql":
        from .settings import PG_BINDIR

        extra = args.psql_args[1:] if args.psql_args[:1] == ["--"] else args.psql_args
        os.execv(str(PG_BINDIR / "psql"), ["psql", *extra, database_url()])
    elif args.db_cmd == "migrate":
        from . import migrate

        migrate.upgrade(database_url(), args.revision, args.universal_dim, args.native_dim)
        say(f"database at revision {migrate.current(database_url())}")
    elif args.db_cmd == "dump-schema":
        from .schema_dump import SCHEMA_FILE, dump_schema

        text = dump_schema(database_url())
        if args.check:
            same = SCHEMA_FILE.exists() and SCHEMA_FILE.read_text() == text
            say("schema matches db/schema.sql" if same else "schema differs from db/schema.sql")
            return 0 if same else 1
        sys.stdout.write(text)
    return 0


def cmd_ingest(args) -> int:
    from loaders.turns import BadInput, ingest_jsonl

    from .connect import connect

    with connect() as conn:
        try:
            n = ingest_jsonl(conn, args.file, progress=not args.quiet)
        except BadInput as e:
            say(f"nothing loaded: {e}")
            return 2
    say(f"loaded {n} turns from {args.file}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(turns=args.turns, keep_running=not args.stop)


def cmd_realtime(args) -> int:
    from realtime.commands import cmd_realtime as run

    return run(args)


def cmd_replay(args) -> int:
    from realtime.commands import cmd_replay as run

    return run(args)


def cmd_export(args) -> int:
    from realtime.commands import cmd_export as run

    return run(args)


def cmd_worker(args) -> int:
    from loaders.worker import Worker, WorkerRefused

    try:
        stats = Worker(cortex_uri=args.cortex).run(once=args.once, install_signals=True)
    except WorkerRefused as e:
        say(f"worker refused to start: {e}")
        return 3
    say(f"worker stopped: {stats}")
    return 0


def _resolve_session(conn, ref: str, user=None):
    """A session id, or an external reference of the acting user's sessions."""
    row = conn.execute("SELECT session_id FROM memory.sessions WHERE (session_id::text = lower(%s) OR external_ref = %s) "
                       "AND (%s::uuid IS NULL OR user_id = %s) ORDER BY session_id::text = lower(%s) DESC LIMIT 1",
                       (ref, ref, user, user, ref)).fetchone()
    if row is None:
        raise SystemExit(f"psimem: --session: no session {ref!r} (give a session id or external reference)")
    return row[0]


def _query_vector(path: str, dim: int | None):
    """A vector file: a JSON list of finite numbers, not all zero; `dim` of them if given."""
    import json
    import math

    import numpy as np

    raw = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SystemExit(f"psimem: --vector: {path} is not JSON ({e.msg})") from None
    if (not isinstance(values, list) or not values or (dim is not None and len(values) != dim)
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in values)):
        got = f"{len(values)} items" if isinstance(values, list) else type(values).__name__
        want = f"{dim} finite numbers (the installed universal size)" if dim is not None else "finite numbers"
        raise SystemExit(f"psimem: --vector: must be a JSON list of {want}, got {got}")
    if not any(values):
        raise SystemExit("psimem: --vector: must not be all zeros")
    return np.asarray(values, dtype=np.float32)


def cmd_recall(args) -> int:
    import json

    from loaders.cortex import Cortex
    from loaders.recall import recall

    from .connect import act_for_ref, connect, read_database_url

    with connect(read_database_url()) as conn:  # recall only reads: a hot standby serves it
        user = act_for_ref(conn, args.user)
        session = _resolve_session(conn, args.session, user) if args.session else None
        cortex = Cortex.for_database(conn, args.cortex)
        if args.vector:
            vec = _query_vector(args.vector, cortex.udim)
        elif not args.query.strip():
            raise SystemExit("psimem: recall: give a query text or --vector")
        else:
            from loaders.models import Cache, UniversalEmbedder

            emb = UniversalEmbedder(Cache(Settings.from_env().home / "cache" / "model-outputs.npz"))
            if emb.dim != cortex.udim:
                raise SystemExit(f"psimem: the offline embedder gives {emb.dim}-d vectors; this database stores "
                                 f"{cortex.udim}-d universal embeddings: pass --vector")
            vec = emb.embed([args.query], progress=False)[0]
        results = recall(conn, cortex, args.query or None, vec, user, session, budget=args.budget,
                         since=args.since, until=args.until)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2, default=str))
        return 0
    for n, r in enumerate(results, 1):
        where = f"turn {r.first_turn}" if r.turns == 1 else f"turns {r.first_turn}-{r.last_turn}"
        at = f"{r.created_at:%Y-%m-%d %H:%M} " if r.created_at else ""
        ref = f" ({r.external_ref})" if r.external_ref else ""
        print(f"{n:>2}. [{r.tier}] {r.kind} {at}{where}{ref} score={r.score:.4f} -- {r.reason}")
        print("      " + r.text[:300].replace("\n", "\n      "))
    return 0


def timestamp_arg(text: str):
    """An ISO 8601 time; without a zone it is UTC."""
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an ISO 8601 time such as 2024-05-01T12:00:00+00:00, got {text!r}")
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def cmd_kernel(args) -> int:
    """Each action is one call of a kernel SQL function; the database checks every input."""
    import json

    import psycopg

    from .connect import act_for_ref, connect

    vector = _query_vector(args.vector, None) if getattr(args, "vector", None) else None
    with connect() as conn:
        user = act_for_ref(conn, args.user)
        try:
            if args.kernel_cmd == "card":
                row = conn.execute(
                    "SELECT card_id, action, contradicts, summary_card_id FROM kernel.upsert_card(p_user_id => %s, "
                    "p_summary => %s, p_tags => %s, p_source => %s, p_subject => %s, p_embedding => %s::real[], "
                    "p_provider => %s, p_model => %s, p_card_id => %s)",
                    (user, args.summary, args.tag, args.source, args.subject, None if vector is None else vector.tolist(),
                     args.provider, args.model, args.id)).fetchone()
                conn.commit()
                out = dict(zip(("card_id", "action", "contradicts", "summary_card_id"), row))
                if args.json:
                    print(json.dumps(out, default=str))
                else:
                    print(f"{row[0]} {row[1]}" + (f"; contradicts {', '.join(map(str, row[2]))} (see kernel.contradictions)"
                                                  if row[2] else "") + (f"; older notes rolled into {row[3]}" if row[3] else ""))
            elif args.kernel_cmd == "recall":
                cur = conn.execute("SELECT * FROM kernel.recall(p_user_id => %s, p_query_text => %s, "
                                   "p_query_vector => %s::real[], p_k => %s, p_model => %s)",
                                   (user, args.query, None if vector is None else vector.tolist(), args.k, args.model))
                rows = [dict(zip([d.name for d in cur.description], r)) for r in cur.fetchall()]
                conn.commit()  # the usage bump
                if args.json:
                    print(json.dumps(rows, indent=2, default=str))
                for r in rows if not args.json else ():
                    if r["card_id"] is None:
                        print(r["why"])
                        continue
                    print(f"{r['rank']:>2}. {r['card_id']}  score {r['score']:.4f}  {r['summary']}")
                    print(f"      {r['why']}")
            else:
                text = conn.execute("SELECT kernel.export_patch(%s, %s)", (user, args.since)).fetchone()[0]
                if args.output == "-":
                    sys.stdout.write(text)
                else:
                    part = Path(args.output + ".part")
                    part.write_text(text)
                    part.replace(args.output)  # the file appears only when complete
                    say(f"wrote {args.output}: {text.rstrip().splitlines()[-1].lstrip('- ')}")
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.InsufficientPrivilege) as e:
            # The database refused an input, naming the field and the rule; nothing was written.
            say(f"refused: {e.diag.message_primary}")
            return 2
    return 0


def cmd_packet(args) -> int:
    import json

    from loaders.cortex import Cortex
    from loaders.packets import BadPacket, export_blocks, import_packets

    from .connect import act_for_ref, connect

    with connect() as conn:
        cortex = Cortex.for_database(conn, args.cortex)
        try:
            if args.packet_cmd == "export":
                packets = export_blocks(conn, cortex, args.block_ids)
                text = json.dumps(packets if len(packets) > 1 or args.array else packets[0], indent=2)
                if args.output and args.output != "-":
                    open(args.output, "w").write(text + "\n")
                else:
                    print(text)
            else:
                raw = sys.stdin.read() if args.file == "-" else open(args.file).read()
                try:
                    packets = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise BadPacket(None, "(file)", f"not JSON: {e}") from None
                user = act_for_ref(conn, args.user) if args.user else None
                session = _resolve_session(conn, args.session, user) if args.session else None
                if args.into == "hippocampus" and session is None:
                    raise BadPacket(None, "--session", "importing into the Hippocampus needs a session")
                if args.into == "cortex" and user is None:
                    raise BadPacket(None, "--user", "importing into the Cortex needs the receiving user")
                result = import_packets(conn, cortex, packets, args.into, user_id=user, session_id=session)
                say(f"imported: {result}")
        except BadPacket as e:
            say(f"refused, nothing imported: {e}" if args.packet_cmd == "import" else f"refused: {e}")
            return 2
    return 0


def cmd_cortex(args) -> int:
    from loaders.cortex import Cortex
    from loaders.demo_part import show_tree

    from .connect import connect

    with connect() as conn:
        cortex = Cortex.for_database(conn, args.cortex)
        if args.cortex_cmd == "cluster":
            from loaders.raptor import RaptorParams, cluster_cortex

            s = dict(conn.execute("SELECT key, value FROM ops.settings WHERE key LIKE 'raptor.%'").fetchall())
            conn.commit()
            say(f"re-clustering {'every user' if args.full else 'the users whose Cortex changed'} at {cortex.uri}")
            r = cluster_cortex(cortex, RaptorParams.from_settings(s), full=args.full)
            say(f"{r['users_reclustered']} of {r['users']} users re-clustered ({r.get('blocks_reclustered', 0)} blocks), "
                f"{r.get('clusters_kept', 0)} clusters kept their ids, {r.get('clusters_new', 0)} new, "
                f"{r.get('clusters_dropped', 0)} dropped, in {r['seconds']}s; tree now {r['levels']}")
        else:
            show_tree(cortex, summaries=args.summaries)
    return 0


class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr (naming the argument) and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="psimem", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="the database: embedded cluster, migrations, schema dump",
                        description="Manage the embedded cluster (PSIMEM_HOME, default ./.psimem) or, with "
                                    "PSIMEM_DATABASE_URL set, an existing server.")
    dbs = db.add_subparsers(dest="db_cmd", required=True, metavar="ACTION")
    dbs.add_parser("up", help="create and start the embedded cluster; idempotent, waits until it accepts connections",
                   description="Create (first time) and start the embedded PostgreSQL 15 cluster with pg_cron "
                               "preloaded, listening on a Unix socket only; prints its URL.")
    dbs.add_parser("down", help="stop the embedded cluster cleanly", description="Stop the embedded cluster (fast shutdown).")
    dbs.add_parser("status", help="show whether the cluster runs, its URL and schema revision",
                   description="Show the cluster state, URL, migration revision and SQL code version. Exit 3 when stopped.")
    dbs.add_parser("url", help="print the database URL", description="Print the URL every psimem command uses.")
    ps = dbs.add_parser("psql", help="open psql on the database", description="Run psql on the database; extra arguments go to psql.")
    ps.add_argument("psql_args", nargs=argparse.REMAINDER, help="arguments passed to psql")
    mg = dbs.add_parser("migrate", help="alembic upgrade head, then re-apply changed SQL code files",
                        description="Bring the database to the current schema (alembic upgrade) and re-apply "
                                    "db/functions and db/triggers files whose checksum changed. Running it twice changes nothing.")
    mg.add_argument("--revision", default="head", help="target revision (default: head)")
    mg.add_argument("--universal-dim", type=int, help="universal embedding size, fixed at install (default 768)")
    mg.add_argument("--native-dim", type=int, help="native embedding size, fixed at install (default 4096)")
    ds = dbs.add_parser("dump-schema", help="print the normalised schema dump, or --check it against db/schema.sql",
                        description="pg_dump --schema-only, normalised as in the committed db/schema.sql (which "
                                    "`make schema` regenerates from a database migrated with the default sizes).")
    ds.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when different")
    db.set_defaults(func=cmd_db)

    ing = sub.add_parser("ingest", help="bulk-load data", description="Bulk-load data into psimem.")
    ings = ing.add_subparsers(dest="ingest_cmd", required=True, metavar="WHAT")
    t = ings.add_parser("turns", help="load turns from a JSONL file with binary COPY, all or nothing",
                        description="Load turns from JSONL (one object per line: user, session, role, content, "
                                    "created_at, universal_embedding, native_embedding, perplexity_score, token_count, "
                                    "turn_number; optional user_tier) in one transaction with binary COPY. Users and "
                                    "sessions named by reference are created. A bad row loads nothing and is named.")
    t.add_argument("file", type=input_file, help="JSONL file, or - for standard input")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    ing.set_defaults(func=cmd_ingest)

    cortex_help = ("LanceDB URI of the Cortex: a directory or s3://bucket/prefix (default: PSIMEM_CORTEX_URI, else "
                   "$PSIMEM_HOME/cortex; S3 endpoint, region and credentials from AWS_ENDPOINT_URL, AWS_REGION, "
                   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    wk = sub.add_parser("worker", help="move queued blocks to the LanceDB Cortex and re-cluster it (RAPTOR)",
                        description="Take jobs the Night Cycle queued in ops.jobs (FOR UPDATE SKIP LOCKED): "
                                    "cortex_migrate moves blocks into LanceDB and marks them migrated; cluster_update "
                                    "rebuilds the RAPTOR tree. Wakes on NOTIFY psimem_jobs, polls as a fallback, "
                                    "heartbeats in ops.workers, retries with backoff. Refuses to run when the "
                                    "database's SQL code version differs from this checkout's (exit 3). SIGTERM "
                                    "releases the job in hand and stops.")
    wk.add_argument("--once", action="store_true", help="drain the ready jobs, then exit (for pg_cron-driven setups and tests)")
    wk.add_argument("--cortex", help=cortex_help)
    wk.set_defaults(func=cmd_worker)

    rc = sub.add_parser("recall", help="recall across the Hippocampus and the Cortex for one user",
                        description="The retrieval chain: memory.recall (full text and vectors over the user's "
                                    "whole history, raw turns and what blocks keep of them, fused by reciprocal "
                                    "rank) fused with the Cortex's hybrid search, as one ranked list of turns "
                                    "within a budget; each result says which legs found it and why.")
    rc.add_argument("query", nargs="?", default="", help="query text (also embedded with the offline universal "
                                                        "embedder unless --vector is given)")
    rc.add_argument("--vector", type=input_file,
                    help="JSON file (or - for stdin) with the query's universal embedding")
    rc.add_argument("--user", required=True, help="user id or external reference")
    rc.add_argument("--session", help="the current session (id or external reference)")
    rc.add_argument("--budget", type=positive_int, default=10, help="turns returned at most; a block costs the turns "
                                                                   "it covers (default 10)")
    rc.add_argument("--since", type=timestamp, help="only memories from this time on (ISO 8601)")
    rc.add_argument("--until", type=timestamp, help="only memories before this time (ISO 8601)")
    rc.add_argument("--json", action="store_true", help="print JSON")
    rc.add_argument("--cortex", help=cortex_help)
    rc.set_defaults(func=cmd_recall)

    kn = sub.add_parser("kernel", help="the Core Memory Kernel: write a card, recall cards, export an audit patch",
                        description="Front the Core Memory Kernel's SQL (schema kernel) for a shell user: each "
                                    "action is one SQL call, and the database checks every input (a refusal "
                                    "names the field and the rule, exit 2). --user is a user id or external "
                                    "reference among the users this login may act for.")
    kns = kn.add_subparsers(dest="kernel_cmd", required=True, metavar="ACTION")
    kc = kns.add_parser("card", help="write a card (kernel.upsert_card): the same fact twice is one card",
                        description="Write one memory card. The same fact written again (same normalised summary) "
                                    "updates that card instead of adding one; --id overwrites a card by id. Prints the "
                                    "card id, inserted or updated, and the cards it contradicts.")
    kc.add_argument("summary", help="the fact, preference or decision")
    kc.add_argument("--user", required=True, help="user id or external reference")
    kc.add_argument("--tag", action="append", help="a tag (repeatable); key:<name> marks the fact's slot")
    kc.add_argument("--subject", help="what the card is about (default: its first tag that is not key:)")
    kc.add_argument("--source", choices=("msc", "bio", "export", "journal"), help="where the fact came from (default msc)")
    kc.add_argument("--id", type=uuid_arg, help="overwrite this card instead")
    kc.add_argument("--vector", type=input_file, help="JSON file (or - for stdin) with the card's embedding")
    kc.add_argument("--provider", help="the embedding's provider (with --vector)")
    kc.add_argument("--model", help="the embedding's model (with --vector)")
    kc.add_argument("--json", action="store_true", help="print JSON")
    kr = kns.add_parser("recall", help="recall cards (kernel.recall) with every score part and why",
                        description="Full text (and, with --vector, vector similarity) fused by reciprocal rank "
                                    "fusion with usage-aware recency, then MMR; prints each card with its score and "
                                    "why. Bumps the cards' usage (committed).")
    kr.add_argument("query", help="query text (websearch syntax: quotes, or, -word)")
    kr.add_argument("--user", required=True, help="user id or external reference")
    kr.add_argument("-k", type=positive_int, help="cards to return (default: the user's recall_top_k, 5)")
    kr.add_argument("--vector", type=input_file, help="JSON file (or - for stdin) with the query's embedding")
    kr.add_argument("--model", help="compare only with card embeddings of this model")
    kr.add_argument("--json", action="store_true", help="print JSON rows (score parts, why, legs)")
    ke = kns.add_parser("export-patch", help="write the idempotent SQL patch of a user's kernel changes",
                        description="Write kernel.export_patch: every kernel change of the user since --since "
                                    "(default: all) as one SQL transaction of upserts and deletes. Applying it "
                                    "(psql -f, as the owner or psimem_admin) to an empty psimem database, or twice, "
                                    "gives the same kernel rows.")
    ke.add_argument("--user", required=True, help="user id or external reference")
    ke.add_argument("--since", type=timestamp_arg, help="ISO 8601 time (UTC without a zone); default: everything")
    ke.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write, or - for stdout")
    kn.set_defaults(func=cmd_kernel)

    pk = sub.add_parser("packet", help="Bifocal Packets: export blocks, import packets",
                        description="Bifocal Packets (spec 004 section 6, schema in loaders/bifocal_packet.schema.json).")
    pks = pk.add_subparsers(dest="packet_cmd", required=True, metavar="ACTION")
    ex = pks.add_parser("export", help="export blocks (from whichever store holds them) as packets",
                        description="Write the blocks as Bifocal Packets: one object, or an array for several.")
    ex.add_argument("block_ids", nargs="+", type=uuid_arg, help="block ids")
    ex.add_argument("-o", "--output", help="file to write (default stdout)")
    ex.add_argument("--array", action="store_true", help="always write an array")
    ex.add_argument("--cortex", help=cortex_help)
    im = pks.add_parser("import", help="import packets into the Cortex or the Hippocampus, all or nothing",
                        description="Check every packet (schema, base64, dimensions, offsets, references), then "
                                    "import them all; one bad packet imports none and is named with its field (exit 2).")
    im.add_argument("file", type=input_file, help="JSON file with a packet or an array of packets, or - for stdin")
    im.add_argument("--into", choices=("cortex", "hippocampus"), default="cortex", help="target store (default cortex)")
    im.add_argument("--user", help="receiving user (id or external reference); needed for the Cortex")
    im.add_argument("--session", help="receiving session (id or external reference); needed for the Hippocampus")
    im.add_argument("--cortex", help=cortex_help)
    pk.set_defaults(func=cmd_packet)

    cx = sub.add_parser("cortex", help="show the Cortex (blocks, indexes, RAPTOR tree) or re-cluster it",
                        description="Without an action (or with show): counts per RAPTOR level (leaf, branch, trunk, "
                                    "canopy), indexes and cluster summaries. cluster: re-cluster now, as the worker's "
                                    "cluster_update does.")
    cx.add_argument("--summaries", type=int, default=5, help="cluster summaries to show (default 5)")
    cx.add_argument("--cortex", help=cortex_help)
    cxs = cx.add_subparsers(dest="cortex_cmd", metavar="ACTION")
    cxs.add_parser("show", help="the Cortex's size, indexes and RAPTOR tree (the default)",
                   description="Counts per RAPTOR level, indexes and the summaries of the biggest clusters.")
    cc = cxs.add_parser("cluster", help="re-cluster the users whose Cortex changed (RAPTOR), or every user",
                        description="Rebuild the RAPTOR trees of the users whose Cortex blocks changed since their "
                                    "tree was built (or whose raptor.* settings changed); clusters whose members did "
                                    "not change keep their ids. --full rebuilds every user's tree.")
    cc.add_argument("--full", action="store_true", help="rebuild every user's tree, changed or not")
    cx.set_defaults(func=cmd_cortex, cortex_cmd="show")

    dm = sub.add_parser("demo", help="the main job: load real conversations with offline models and recall",
                        description="Start the embedded database, migrate, load conversations from chitchat-dataset "
                                    "with MiniLM embeddings and SmolLM2 perplexity (cached under PSIMEM_HOME), "
                                    "and show recall with its reasons.")
    dm.add_argument("--turns", type=int, default=400,
                    help="about how many turns to take from the most talkative pairs (default 400); "
                         "one user's long history comes on top")
    dm.add_argument("--stop", action="store_true", help="stop the embedded cluster afterwards")
    dm.set_defaults(func=cmd_demo)

    rt = sub.add_parser("realtime", help="voice turns through the ψ oscillator core and record them in schema psi",
                        description="The realtime process: speak assistant turns with espeak-ng (or read --wav), "
                                    "analyse them into ψ frames (micro 20 ms, meso 250 ms, macro 2 s) or step the "
                                    "oscillator network from the text (--synth), detect surprise events, and write "
                                    "frames with binary COPY per utterance or 2 s idle. While the database is "
                                    "unreachable frames spool to PSIMEM_HOME/spool and are written on reconnect "
                                    "without duplicates; SIGTERM flushes before exit. Reports peak memory. Exits 5 when frames are left only in "
                                    "the spool (the database was still unreachable at the end).")
    rt.add_argument("--entry", action="append", type=uuid_arg, metavar="ENTRY_ID",
                    help="a day_table turn to voice (repeatable)")
    rt.add_argument("--user", help="act for this user (id or external reference): a psimem_writer login sees "
                                   "only the turns of the user it acts for")
    rt.add_argument("--latest", type=positive_int, default=1, metavar="N",
                    help="without --entry: the N newest assistant turns not yet voiced (default 1)")
    rt.add_argument("--wav", type=Path, help="voice from this 16-bit WAV instead of espeak-ng (one turn)")
    rt.add_argument("--synth", action="store_true", help="synthesis mode: step the oscillator network from the text")
    rt.add_argument("--oscillators", type=int, choices=(128, 256, 512), default=256, help="micro band size (default 256)")
    rt.add_argument("--codec", type=int, choices=(0, 1), help="codec version (default: setting psi.codec_version)")
    rt.add_argument("--pace", action="store_true", help="run at the wall clock (50 frames/s) instead of as fast as possible")
    rt.add_argument("--no-live", action="store_true", help="do not keep the live recording that replay --verify compares with")
    rt.add_argument("--spool", type=Path, help="spool file (default PSIMEM_HOME/spool/psi-spool.jsonl)")
    rt.add_argument("--flush-spool", action="store_true",
                    help="only write what an earlier run left in the spool; exit 5 if the database is still unreachable")
    rt.add_argument("--json", action="store_true", help="print the report (utterances, timings, peak memory) as JSON")
    rt.set_defaults(func=cmd_realtime)

    rp = sub.add_parser("replay", help="regenerate an utterance's audio from its stored ψ frames, or verify them",
                        description="Decode an utterance's stored micro frames and regenerate its audio at fixed "
                                    "dt (deterministic) into --wav; --verify prints the mean/max phase error against "
                                    "the live recording, re-checks every row with psi.verify (CRC-32C, decode) and "
                                    "writes the per-frame error plot as a PNG.")
    rp.add_argument("utterance", nargs="?", metavar="UTTERANCE",
                    help="uttr_hash (hex, or a unique prefix) or the entry_id of the turn it voices; default: the newest")
    rp.add_argument("--wav", type=Path, help="write the regenerated audio here")
    rp.add_argument("--verify", action="store_true", help="compare with the live recording and plot the per-frame error")
    rp.add_argument("--png", type=Path, help="where --verify writes its plot (default psi-error-<hash>.png)")
    rp.set_defaults(func=cmd_replay)

    from realtime.psiarc_cli import add_parser as add_psiarc

    add_psiarc(sub)

    ce = sub.add_parser("export", help="export a recorded utterance as a video clip (WebM or MP4) with its face",
                        description="Replay an utterance's stored ψ frames at fixed dt: audio from the micro "
                                    "frames, video frames drawn off-screen from the ψ state (mouth and jaw from "
                                    "the micro band energies and the meso state, brows and eyes from the macro "
                                    "emotion vector and surprise events), both piped to ffmpeg (VP9 + Opus in "
                                    "WebM, H.264 + AAC in MP4). Nothing but the output file is written.")
    ce.add_argument("utterance", metavar="UTTERANCE",
                    help="uttr_hash (hex, or a unique prefix) or the entry_id of the turn it voices")
    ce.add_argument("-o", "--output", required=True, metavar="FILE", help="clip to write: .webm or .mp4")
    ce.add_argument("--size", default="640x360", metavar="WxH", help="frame size (default 640x360)")
    ce.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    ce.set_defaults(func=cmd_export)
    return p


def _write_peak_rss(path: str) -> None:
    """This process's own resident-set high-water mark (VmHWM restarts at exec; a child's
    ru_maxrss would include the RSS of the process that forked it)."""
    try:
        with open("/proc/self/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        Path(path).write_text(f"{kb}\n")
    except (OSError, StopIteration):
        pass


def main(argv: list[str] | None = None) -> int:
    import logging

    import psycopg

    from loaders.storage import CortexConfigError

    # psycopg logs the lost connection again while unwinding a COPY; the one line below says it.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    args = build_parser().parse_args(argv)
    if os.environ.get("PSIMEM_PEAK_RSS_FILE"):       # for benchmarks: the peak memory of exactly this command
        import atexit
        atexit.register(_write_peak_rss, os.environ["PSIMEM_PEAK_RSS_FILE"])
    try:
        return args.func(args)
    except CortexConfigError as e:  # a bad Cortex location or endpoint, named by its variable or setting
        say(str(e))
        return 2
    except psycopg.OperationalError as e:
        # A refused connection or a server that died mid-command: its transaction was not
        # committed, so nothing of this command's work is in the database.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        say(f"database: {first} (nothing from this command was committed)")
        return 4
    except OSError as e:
        say(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
