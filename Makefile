# The two entry points (README): `make demo` and `make test`. Both install what is
# missing first (Debian packages, pgvector 0.8.0, the Python environment) and skip
# what is already there.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: demo test setup setup-system setup-python schema bench clean

demo: setup
	$(VENV)/bin/psimem demo

test: setup
	$(PY) -m pytest

setup: setup-system setup-python

setup-system:
	@bash scripts/setup-system.sh

setup-python:
	@bash scripts/setup-python.sh

# Regenerate the committed schema dump from a database migrated with default sizes.
schema: setup
	PSIMEM_UPDATE_SCHEMA=1 $(PY) -m pytest -q tests/test_migrations.py -k committed_dump

bench: setup
	$(PY) bench/ingest.py
	$(PY) bench/recall.py
	$(PY) bench/night_cycle.py
	$(PY) bench/night_retention.py
	$(PY) bench/write_cost.py
	$(PY) bench/kernel.py
	$(PY) bench/recall_latency.py
	$(PY) bench/memory_quality.py
	$(PY) bench/memory_quality.py --heldout
	$(PY) bench/codec.py
	$(PY) bench/psi_ingest.py
	$(PY) bench/psiarc.py
	$(PY) bench/cortex_migrate.py
	$(PY) bench/cortex_search.py
	$(PY) bench/scale.py

clean:
	-$(VENV)/bin/psimem db down
	rm -rf .psimem
