#!/usr/bin/env bash
# Installs what psimem needs from Debian on a fresh Debian 12 machine, idempotently:
# PostgreSQL 15 extension packages, audio tools, and pgvector 0.8.0 built from the
# Debian source package of the next release (bookworm does not package pgvector).
# Every step checks first and says "ok" when there is nothing to do.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGVECTOR_VERSION=0.8.0
# python3-zstandard and python3-crc32c: the ψ codec in PL/Python; espeak-ng and sox: the realtime voice;
# ffmpeg (with ffprobe, libvpx-vp9, libopus, libx264): ψ clip export.
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-plpython3-15
              python3-numpy python3-zstandard python3-crc32c espeak-ng sox ffmpeg dpkg-dev build-essential)
SRC_LIST=/etc/apt/sources.list.d/psimem-trixie-src.sources
BUILD_DIR=${PSIMEM_BUILD_DIR:-/var/cache/psimem-build}
# Built on the machine that runs it, so upstream's default -march=native stands (Debian's
# no-native patch is for portable binary packages): vector distances use the CPU's SIMD,
# 2-4x faster HNSW builds, inserts and searches. The stamp says which build is installed.
PGVECTOR_OPTFLAGS="-march=native"
STAMP="$BUILD_DIR/pgvector-$PGVECTOR_VERSION.built"
STAMP_TEXT="pgvector $PGVECTOR_VERSION OPTFLAGS=$PGVECTOR_OPTFLAGS $(uname -m) $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"

say() { printf '[setup] %s\n' "$*"; }
need_root() { [ "$(id -u)" = 0 ] || { echo "setup-system: run as root (apt-get, make install)" >&2; exit 1; }; }

APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then say "apt-get update"; apt-get update -qq; APT_UPDATED=1; fi
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "apt packages: ok"
else
  need_root
  apt_update_once
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

ext_dir=$("$PG_CONFIG" --sharedir)/extension
if [ -f "$ext_dir/vector--$PGVECTOR_VERSION.sql" ] && [ -f "$("$PG_CONFIG" --pkglibdir)/vector.so" ] \
   && [ "$(cat "$STAMP" 2>/dev/null)" = "$STAMP_TEXT" ]; then
  say "pgvector $PGVECTOR_VERSION: ok"
  exit 0
fi
need_root

# A deb-src entry for trixie on the same archive and keyring as this machine's own
# Debian entry, read from its sources (deb822 or one-line format): no host hard-coded.
if [ ! -f "$SRC_LIST" ]; then
  uri="" keyring=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    u=$(awk '/^URIs:/{print $2; exit}' "$f"); k=$(awk '/^Signed-By:/{print $2; exit}' "$f")
    if grep -q '^Suites:.*bookworm' "$f" && [ -n "$u" ]; then uri=$u; keyring=$k; break; fi
  done
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && / bookworm /{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { echo "setup-system: no Debian bookworm entry found in /etc/apt/sources.list*" >&2; exit 1; }
  [ -n "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  say "adding deb-src trixie main from $uri ($SRC_LIST)"
  printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$uri" "$keyring" > "$SRC_LIST"
  APT_UPDATED=0
fi

mkdir -p "$BUILD_DIR"
cd "$BUILD_DIR"
src=$(ls -d pgvector-"$PGVECTOR_VERSION"*/ 2>/dev/null | head -1 || true)
if [ -z "$src" ]; then
  apt_update_once
  say "apt-get source pgvector"
  apt-get source -qq pgvector >/dev/null
  src=$(ls -d pgvector-"$PGVECTOR_VERSION"*/ 2>/dev/null | head -1 || true)
  [ -n "$src" ] || { echo "setup-system: Debian's pgvector source is not version $PGVECTOR_VERSION: $(ls -d pgvector-*/)" >&2; exit 1; }
fi
say "building pgvector in $BUILD_DIR/$src (OPTFLAGS=$PGVECTOR_OPTFLAGS)"
make -s -C "$src" PG_CONFIG="$PG_CONFIG" clean >/dev/null
make -s -C "$src" PG_CONFIG="$PG_CONFIG" OPTFLAGS="$PGVECTOR_OPTFLAGS" >/dev/null
make -s -C "$src" PG_CONFIG="$PG_CONFIG" OPTFLAGS="$PGVECTOR_OPTFLAGS" install >/dev/null
echo "$STAMP_TEXT" > "$STAMP"
say "pgvector $PGVECTOR_VERSION: installed"
