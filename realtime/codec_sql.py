"""Renders db/functions/psi_codec.sql from realtime/codec_core.py: one decoder source.

PL/Python runs Debian's python3, which cannot import this repository, so the database
gets the codec module's text: psi._codec_source() returns it, psi._codec_version() its
digest, and PL/Python functions exec it once per session (cached in GD, reloaded when the
digest changes). The SQL file is generated, committed (so it runs from psql as-is) and
checked by a test: `python -m realtime.codec_sql --write` after changing codec_core.py.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from . import codec_core

SQL_FILE = Path(__file__).resolve().parent.parent / "db" / "functions" / "psi_codec.sql"
TAG = "$psi_codec$"

# What psi._codec_install() puts in GD (shared by every PL/Python function of the session):
# a loader that execs the codec source once and again only when its digest changes.
INSTALL = """\
def load():
    digest = plpy.execute(GD['psi_codec_plan'])[0]['v']
    codec = GD.get('psi_codec')
    if codec is None or codec['_digest'] != digest:
        codec = {'__name__': 'psi_codec'}
        exec(compile(plpy.execute("SELECT psi._codec_source() AS s")[0]['s'], 'psi_codec', 'exec'), codec)
        codec['_digest'] = digest
        GD['psi_codec'] = codec
    return codec

GD['psi_codec_plan'] = plpy.prepare("SELECT psi._codec_version() AS v")
GD['psi_codec_load'] = load
"""

# The lines each PL/Python function starts with to get the codec module.
LOADER = """\
if 'psi_codec_load' not in GD:
    plpy.execute("SELECT psi._codec_install()")
codec = GD['psi_codec_load']()
"""


def source() -> str:
    return Path(codec_core.__file__).read_text()


def render() -> str:
    src = source()
    if TAG in src:
        raise ValueError(f"codec_core.py must not contain {TAG}")
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    return f"""-- GENERATED from realtime/codec_core.py by `python -m realtime.codec_sql --write`: do not edit.
-- The ψ-frame codec as text, for PL/Python functions to exec (see realtime/codec_sql.py).

CREATE OR REPLACE FUNCTION psi._codec_version()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, public, pg_temp
RETURN '{digest}';
COMMENT ON FUNCTION psi._codec_version() IS
'Digest of the codec source psi._codec_source() returns; PL/Python functions reload their cached codec when it changes.';
REVOKE ALL ON FUNCTION psi._codec_version() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION psi._codec_version() TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION psi._codec_source()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, public, pg_temp
RETURN {TAG}{src}{TAG};
COMMENT ON FUNCTION psi._codec_source() IS
'The ψ-frame codec module (realtime/codec_core.py, versions 0 and 1, SipHash-2-4-128, CRC-32C) that PL/Python functions exec: the same decoder the realtime process and replay run.';
REVOKE ALL ON FUNCTION psi._codec_source() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION psi._codec_source() TO psimem_writer, psimem_reader, psimem_admin;

CREATE OR REPLACE FUNCTION psi._codec_install()
RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, public, pg_temp
AS $$
{INSTALL}$$;
COMMENT ON FUNCTION psi._codec_install() IS
'Puts the codec loader in PL/Python''s session-wide GD: GD[''psi_codec_load'']() returns the codec module, exec''d from psi._codec_source() once per session and again when psi._codec_version() changes.';
REVOKE ALL ON FUNCTION psi._codec_install() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION psi._codec_install() TO psimem_writer, psimem_reader, psimem_admin;
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--write", action="store_true", help=f"write {SQL_FILE} instead of printing")
    args = p.parse_args(argv)
    text = render()
    if args.write:
        SQL_FILE.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
