"""`psimem psiarc …`: export, import, info, verify, migrate, encrypt, decrypt.

Exit codes say what failed: 0 done; 2 the command line or the selection (an argument is
named); 3 the archive is damaged, truncated or not an archive (the record, chunk,
utterance and time are named); 4 authentication failed: wrong passphrase, or a sealed
record altered or moved; 5 the database refused or could not be reached (nothing was
written); 130 interrupted. Errors are one line on stderr. Passphrases come from a prompt,
--passphrase-file or --passphrase-env, never from the command line.
"""
from __future__ import annotations

import getpass
import json
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_USAGE, EXIT_DAMAGED, EXIT_AUTH, EXIT_DB, EXIT_INTERRUPTED = 0, 2, 3, 4, 5, 130

EPILOG = ("exit codes: 0 done; 2 bad arguments or selection; 3 archive damaged, truncated or not an archive; "
          "4 wrong passphrase or tampered sealed record; 5 the database refused (nothing written) or is unreachable; "
          "130 interrupted. Passphrases: a prompt, --passphrase-file or --passphrase-env, never the command line.")


class CommandError(Exception):
    def __init__(self, msg: str, code: int = EXIT_USAGE):
        super().__init__(msg)
        self.code = code


def say(msg: str) -> None:
    print(f"psimem: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ passphrases

def passphrase(args, confirm: bool = False, required: bool = True) -> bytes | None:
    """From --passphrase-file (its first line), --passphrase-env (the variable's value) or
    a prompt on the terminal; None when none is given and not required."""
    if getattr(args, "passphrase_file", None):
        p = Path(args.passphrase_file)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise CommandError(f"--passphrase-file: cannot read {p} ({e.strerror})")
        value = text.splitlines()[0] if text else ""
        if not value:
            raise CommandError(f"--passphrase-file: {p} is empty (the passphrase is its first line)")
        return value.encode("utf-8")
    if getattr(args, "passphrase_env", None):
        value = os.environ.get(args.passphrase_env)
        if not value:
            raise CommandError(f"--passphrase-env: environment variable {args.passphrase_env} is unset or empty")
        return value.encode("utf-8")
    if not required:
        return None
    if not sys.stdin.isatty():
        raise CommandError("passphrase: no terminal to prompt on; give --passphrase-file or --passphrase-env")
    value = getpass.getpass("passphrase: ")
    if not value:
        raise CommandError("passphrase: must not be empty")
    if confirm and getpass.getpass("passphrase again: ") != value:
        raise CommandError("passphrase: the two entries differ")
    return value.encode("utf-8")


def _add_passphrase_args(p, what: str) -> None:
    g = p.add_argument_group("passphrase (never on the command line)")
    g.add_argument("--passphrase-file", metavar="FILE", help=f"read the passphrase {what} from the first line of FILE")
    g.add_argument("--passphrase-env", metavar="VAR", help=f"read the passphrase {what} from environment variable VAR")


# ------------------------------------------------------------------ progress

class Progress:
    """Bytes done of a total on stderr (a terminal, or --progress), via tqdm."""

    def __init__(self, args, total: int, desc: str):
        self.bar = None
        if getattr(args, "progress", False) or (sys.stderr.isatty() and not getattr(args, "quiet", False)):
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr,
                            mininterval=0.5, leave=False)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _open_reader(path: str, args, need_key: bool = True):
    from .psiarc import ArchiveReader

    p = Path(path)
    if not p.is_file():
        raise CommandError(f"FILE: {p} does not exist or is not a file")
    f = open(p, "rb")
    r = ArchiveReader(f)
    if r.encrypted:
        key = passphrase(args, required=need_key)
        if key is not None:
            f.seek(0)
            r = ArchiveReader(f, key)
    return r


def _atomic_output(path: str):
    """OUT.part beside OUT, renamed over it only when complete: a failed run leaves nothing."""
    out = Path(path)
    if out.is_dir():
        raise CommandError(f"OUT: {out} is a directory")
    if not out.parent.exists():
        raise CommandError(f"OUT: directory {out.parent} does not exist")
    return out, out.with_name(out.name + ".part")


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


# ------------------------------------------------------------------ commands

def cmd_export(args) -> int:
    from psimem.connect import connect, database_url

    from .psiarc_db import SelectionError, export, select_utterances

    if args.chunk_kib is not None and not 1 <= args.chunk_kib <= 32768:
        raise CommandError("--chunk-kib: must be between 1 and 32768")
    key = passphrase(args, confirm=True) if args.encrypt else None
    if not args.encrypt and (args.passphrase_file or args.passphrase_env):
        raise CommandError("--passphrase-file/--passphrase-env: only with --encrypt")
    out, part = _atomic_output(args.output)
    try:
        conn = connect(database_url())
    except Exception as e:
        raise CommandError(f"database: cannot connect ({str(e).strip().splitlines()[0]})", EXIT_DB)
    t0 = time.perf_counter()
    with conn:
        if args.user:
            from .psiarc_db import _user_id
            try:
                conn.execute("SELECT memory.act_for(%s)", (_user_id(conn, args.user),))
            except SelectionError as e:
                raise CommandError(str(e))
        try:
            hashes = select_utterances(conn, args.utterance or (), args.session, args.user, args.since, args.until)
        except SelectionError as e:
            raise CommandError(str(e))
        total = conn.execute("SELECT coalesce(sum(octet_length(psi_blob)), 0) FROM psi.psi_frames "
                             "WHERE uttr_hash = ANY(%s)", (hashes,)).fetchone()[0]
        prog = Progress(args, int(total), "export")
        selection = {k: v for k, v in (("utterance", args.utterance), ("session", args.session), ("user", args.user),
                                       ("since", args.since), ("until", args.until)) if v}
        try:
            with open(part, "wb") as f:
                r = export(conn, hashes, f, key, args.chunk_kib * 1024 if args.chunk_kib else None, selection, prog)
                f.flush()
                os.fsync(f.fileno())
            os.replace(part, out)
        finally:
            prog.close()
            if part.exists():
                part.unlink()
        conn.rollback()
    secs = time.perf_counter() - t0
    ft, m = r["footer"], r["manifest"]
    size = out.stat().st_size
    print(f"wrote {out}: {len(m['utterances'])} utterance(s), {ft['micro_frames']} micro frames "
          f"({ft['micro_frames'] * 0.02:.1f} s), {sum(ft['frame_rows'].values())} frame rows, "
          f"{ft['surprise_events']} surprise events, {ft['centroids']} centroids in {ft['chunks']} chunks; "
          f"{_mb(size)}{', encrypted (ChaCha20-Poly1305)' if key else ''} in {secs:.2f} s ({size / 2**20 / max(secs, 1e-9):.1f} MB/s)")
    return EXIT_OK


def cmd_import(args) -> int:
    from psimem.connect import connect, database_url

    from .psiarc_db import ImportRefused, import_archive

    r = _open_reader(args.file, args)
    try:
        conn = connect(database_url())
    except Exception as e:
        raise CommandError(f"database: cannot connect ({str(e).strip().splitlines()[0]})", EXIT_DB)
    t0 = time.perf_counter()
    prog = Progress(args, Path(args.file).stat().st_size, "import")
    try:
        with conn:
            rep = import_archive(conn, r, prog)
    except ImportRefused as e:
        raise CommandError(f"refused, nothing imported: {e}", EXIT_DB)
    finally:
        prog.close()
    secs = time.perf_counter() - t0
    if rep.nothing_new:
        print(f"nothing new: all {rep.utterances_present} utterance(s) and "
              f"{sum(rep.rows_present.values())} rows are already in the database")
    else:
        print(f"imported {args.file} in {secs:.2f} s: {rep.utterances_new} new utterance(s) "
              f"({rep.utterances_present} already present); rows new " +
              ", ".join(f"{t} {n}" for t, n in rep.rows_new.items()) +
              f"; {sum(rep.rows_present.values())} already present")
    if rep.turn_absent:
        print(f"{len(rep.turn_absent)} utterance(s) kept with entry_id NULL (their turn is not in this database): "
              + ", ".join(rep.turn_absent[:5]) + (" …" if len(rep.turn_absent) > 5 else ""))
    return EXIT_OK


def cmd_info(args) -> int:
    from .psiarc import iso_ms

    r = _open_reader(args.file, args, need_key=False)
    size = Path(args.file).stat().st_size
    pub = r.public
    out = {"file": args.file, "bytes": size, "public": pub}
    if r.can_read:
        m = r.manifest()
        index = r.index()
        footer = r.footer_record()
        per = {}
        for e in index:
            d = per.setdefault(e.utterance, {"chunks": 0, "entries": 0, "micro_frames": 0})
            d["chunks"] += 1
            d["entries"] += e.entries
            d["micro_frames"] += e.micro_frames
        out.update(manifest=m, footer=footer, per_utterance=per)
    if args.json:
        print(json.dumps(out, indent=2))
        return EXIT_OK
    enc = pub.get("encryption")
    s = pub["summary"]
    print(f"{args.file}: .psiarc format v{pub['version']}, {_mb(size)}, created {pub['created_at']}")
    print(f"  {s['utterances']} utterance(s); oscillators {', '.join(map(str, s['oscillator_counts']))}; codec "
          f"v{', v'.join(map(str, s['codec_versions']))}; sample rates {', '.join(map(str, s['sample_rates']))} Hz")
    if enc:
        k = enc["kdf"]
        params = ", ".join(f"{a}={b}" for a, b in k.items() if a not in ("name", "salt"))
        print(f"  encrypted: {enc['aead']} per record, key by {k['name']} ({params}) with a random salt")
        if not r.can_read:
            print("  (utterances, turns, users and totals are sealed: give --passphrase-file or --passphrase-env)")
            return EXIT_OK
    ft = out["footer"]
    print(f"  {ft['micro_frames']} micro frames ({ft['micro_frames'] * 0.02:.1f} s), frame rows micro/meso/macro "
          f"{ft['frame_rows']['0']}/{ft['frame_rows']['1']}/{ft['frame_rows']['2']}, {ft['surprise_events']} surprise "
          f"events, {ft['centroids']} centroids, {ft['chunks']} chunks, {_mb(ft['blob_bytes'])} of codec blobs")
    for i, u in enumerate(out["manifest"]["utterances"]):
        text = (u.get("turn") or {}).get("content")
        pu = out["per_utterance"].get(i, {"chunks": 0})
        print(f"  [{i}] {u['uttr_hash']}  user {u['user_id']}  turn {u.get('entry_id') or '-'}  N={u['oscillator_count']} "
              f"v{u['codec_version']} {u['sample_rate']} Hz  {iso_ms(u['started_at_ms'])}  {u['duration_ms'] / 1000:.2f} s "
              f"in {pu['chunks']} chunk(s)" + (f"  {text[:50]!r}" if text else ""))
    return EXIT_OK


def cmd_verify(args) -> int:
    from .psiarc import verify

    r = _open_reader(args.file, args)
    t0 = time.perf_counter()
    size = Path(args.file).stat().st_size
    prog = Progress(args, size, "verify")
    try:
        rep = verify(r, prog)
    finally:
        prog.close()
    secs = time.perf_counter() - t0
    if rep.problems:
        for p in rep.problems:
            print(f"psimem: verify: {p}", file=sys.stderr)
        tampered = any(p.auth for p in rep.problems)
        say(f"verify: {args.file} is {'tampered with' if tampered else 'damaged'}: {len(rep.problems)} problem(s)")
        return EXIT_AUTH if tampered else EXIT_DAMAGED
    print(f"{args.file}: ok: {rep.chunks} chunks, every CRC-32C{' and tag' if r.encrypted else ''} checked, "
          f"{rep.entries} entries, {rep.frames_decoded} frames decoded ({rep.micro_frames} micro), index, footer and "
          f"trailer consistent; {size / 2**20 / max(secs, 1e-9):.1f} MB/s")
    return EXIT_OK


def cmd_migrate(args) -> int:
    from .oscillator_count import migrate_archive

    if Path(args.input).resolve() == Path(args.output).resolve():
        raise CommandError("OUT: must differ from IN")
    r = _open_reader(args.input, args)
    out, part = _atomic_output(args.output)
    key = None
    if r.encrypted:
        key = passphrase(args)          # the output is sealed with the same passphrase, under a new salt
    t0 = time.perf_counter()
    prog = Progress(args, Path(args.input).stat().st_size, f"migrate to N={args.oscillator_count}")
    try:
        with open(part, "wb") as f:
            stats = migrate_archive(r, f, args.oscillator_count, key, prog)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, out)
    finally:
        prog.close()
        if part.exists():
            part.unlink()
    secs = time.perf_counter() - t0
    print(f"wrote {out}: {stats['utterances']} utterance(s) at N = {args.oscillator_count} "
          f"({stats['migrated']} migrated from {', '.join(map(str, stats['from'])) or '-'}, {stats['kept']} already "
          f"at N); {stats['micro_frames']} micro frames re-encoded, meso frames and band 0/1 centroids recomputed; "
          f"{secs:.2f} s")
    return EXIT_OK


def _convert(args, encrypt: bool) -> int:
    from .psiarc import ArchiveWriter

    if Path(args.input).resolve() == Path(args.output).resolve():
        raise CommandError("OUT: must differ from IN")
    r = _open_reader(args.input, args)
    if encrypt and r.encrypted:
        raise CommandError(f"IN: {args.input} is already encrypted")
    if not encrypt and not r.encrypted:
        raise CommandError(f"IN: {args.input} is not encrypted")
    key = passphrase(args, confirm=True) if encrypt else None
    out, part = _atomic_output(args.output)
    m = r.manifest()
    try:
        with open(part, "wb") as f:
            w = ArchiveWriter(f, m, key, created_at=r.public.get("created_at"))
            current = None
            for ch in r.chunks():
                if ch.utterance != current:
                    w.begin_utterance(ch.utterance)
                    current = ch.utterance
                for e in ch.entries:
                    w.add(e)
            w.close()
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, out)
    finally:
        if part.exists():
            part.unlink()
    print(f"wrote {out}: {'encrypted' if encrypt else 'decrypted'} copy of {args.input} "
          f"({len(m['utterances'])} utterance(s), {_mb(out.stat().st_size)})")
    return EXIT_OK


def cmd_encrypt(args) -> int:
    return _convert(args, True)


def cmd_decrypt(args) -> int:
    return _convert(args, False)


def run(args) -> int:
    """Run a psiarc subcommand, turning every refusal into one line on stderr and its exit code."""
    from .psiarc import ArchiveError

    try:
        return args.psiarc_func(args)
    except CommandError as e:
        say(f"psiarc {args.psiarc_cmd}: {e}")
        return e.code
    except ArchiveError as e:
        say(f"psiarc {args.psiarc_cmd}: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        say(f"psiarc {args.psiarc_cmd}: interrupted")
        return EXIT_INTERRUPTED
    except OSError as e:
        say(f"psiarc {args.psiarc_cmd}: {e.filename or 'file'}: {e.strerror}")
        return EXIT_USAGE
    except Exception as e:          # the database or anything unforeseen: one line, never a traceback
        import psycopg

        from .psiarc_db import ImportRefused
        if isinstance(e, (psycopg.Error, ImportRefused)):
            say(f"psiarc {args.psiarc_cmd}: database: {(str(e).strip().splitlines() or [type(e).__name__])[0]}")
            return EXIT_DB
        say(f"psiarc {args.psiarc_cmd}: internal error: {type(e).__name__}: {e}")
        return 1


def add_parser(sub) -> None:
    pa = sub.add_parser("psiarc", help="ψ archives: export, import, info, verify, migrate, encrypt, decrypt",
                        description="Portable .psiarc archives of recorded utterances (docs/psiarc.md): frames in "
                                    "chunks with CRC-32C and an index, optionally sealed with ChaCha20-Poly1305.",
                        epilog=EPILOG)
    ps = pa.add_subparsers(dest="psiarc_cmd", required=True, metavar="ACTION")

    def common(p):
        p.add_argument("--progress", action="store_true", help="show progress even when stderr is not a terminal")
        p.add_argument("--quiet", action="store_true", help="no progress output")

    ex = ps.add_parser("export", help="write recorded utterances (by utterance, session or user) to an archive",
                       description="Write the selected utterances' rows (micro/meso/macro frames as stored, "
                                   "surprise events, band centroids, the turn and its timing) to FILE; the stored "
                                   "codec blobs are copied, not re-encoded. FILE appears only when complete.",
                       epilog=EPILOG)
    ex.add_argument("--utterance", action="append", metavar="REF",
                    help="uttr_hash (hex or unique prefix) or the entry_id of the turn it voices (repeatable)")
    ex.add_argument("--session", help="every utterance voicing a turn of this session (id or external reference)")
    ex.add_argument("--user", help="every utterance of this user (id or external reference)")
    ex.add_argument("--since", help="only utterances started at or after this ISO 8601 time (UTC if no zone)")
    ex.add_argument("--until", help="only utterances started before this ISO 8601 time")
    ex.add_argument("-o", "--output", required=True, metavar="FILE", help="archive to write (.psiarc)")
    ex.add_argument("--encrypt", action="store_true", help="seal every record with ChaCha20-Poly1305 (key by Argon2id)")
    ex.add_argument("--chunk-kib", type=int, help="chunk size in KiB (default 1024)")
    _add_passphrase_args(ex, "to encrypt with")
    common(ex)
    ex.set_defaults(psiarc_func=cmd_export)

    im = ps.add_parser("import", help="bring an archive into PostgreSQL: all or nothing, idempotent",
                       description="Check the whole archive while staging it, then insert it in one transaction "
                                   "with ON CONFLICT DO NOTHING on the natural keys: importing twice adds nothing, "
                                   "any damage or refusal imports nothing. Each utterance's user must exist; its "
                                   "rows go to that user. An utterance whose turn is absent here is kept with "
                                   "entry_id NULL and listed.", epilog=EPILOG)
    im.add_argument("file", metavar="FILE")
    _add_passphrase_args(im, "of an encrypted archive")
    common(im)
    im.set_defaults(psiarc_func=cmd_import)

    inf = ps.add_parser("info", help="what an archive holds, without decoding frames",
                        description="Print the public header and, when readable (plain, or encrypted with a "
                                    "passphrase given by file or environment), the utterances, turns and totals "
                                    "from the manifest, index and footer; frames are not decoded.", epilog=EPILOG)
    inf.add_argument("file", metavar="FILE")
    inf.add_argument("--json", action="store_true", help="print JSON")
    _add_passphrase_args(inf, "of an encrypted archive (without it only the public header is shown)")
    inf.set_defaults(psiarc_func=cmd_info)

    vf = ps.add_parser("verify", help="check every chunk's CRC-32C and decode every frame",
                       description="Read the whole archive: framing, sequence, CRC-32C (and authentication tags), "
                                   "entry order, every blob's CRC-32C and decode, per-utterance totals, index, "
                                   "footer and trailer. Each problem is printed with its chunk, utterance and time; "
                                   "exit 3 when damaged.", epilog=EPILOG)
    vf.add_argument("file", metavar="FILE")
    _add_passphrase_args(vf, "of an encrypted archive")
    common(vf)
    vf.set_defaults(psiarc_func=cmd_verify)

    mg = ps.add_parser("migrate", help="change the oscillator count (128, 256, 512) of an archive's utterances",
                       description="Resample every micro frame along the frequency axis to N oscillators (the "
                                   "method and its measured cost are in docs/psiarc.md), re-encode it with the "
                                   "utterance's codec, and recompute the meso frames and band 0/1 centroids from "
                                   "the migrated frames; macro frames, surprise events and band 2 centroids are "
                                   "kept. An encrypted archive stays encrypted under the same passphrase.",
                       epilog=EPILOG)
    mg.add_argument("--oscillator-count", type=int, required=True, choices=(128, 256, 512), metavar="N",
                    help="target oscillator count: 128, 256 or 512")
    mg.add_argument("input", metavar="IN")
    mg.add_argument("output", metavar="OUT")
    _add_passphrase_args(mg, "of an encrypted archive")
    common(mg)
    mg.set_defaults(psiarc_func=cmd_migrate)

    for name, fn, what in (("encrypt", cmd_encrypt, "seal a plain archive with a passphrase"),
                           ("decrypt", cmd_decrypt, "write a plain copy of an encrypted archive")):
        p = ps.add_parser(name, help=what, description=what[0].upper() + what[1:] + " (a new random salt each "
                          "time; the chunks' contents are unchanged).", epilog=EPILOG)
        p.add_argument("input", metavar="IN")
        p.add_argument("output", metavar="OUT")
        _add_passphrase_args(p, "to encrypt with" if name == "encrypt" else "of IN")
        p.set_defaults(psiarc_func=fn)
    pa.set_defaults(func=run)
