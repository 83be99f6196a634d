"""Denser HNSW graphs on day_table, for recall_recent's recall@10 target.

With pgvector's defaults (m 16, ef_construction 64), recall_recent reached recall@10
0.86 at ef_search 100 on 100k 768-d vectors with real-embedding statistics and a filter
keeping half the rows; m 32 / ef_construction 128 reached 0.985 on the same data
(bench/recall.py). The price is a slower build and costlier inserts, which the ingest
benchmark's floor table pays too. Blocks keep the defaults: the Night Cycle inserts them
in bulk and recall_blocks over-fetches anyway. The native path's re-rank pool doubles
(recall.binary_overfetch 10 -> 20: recall@10 0.89 -> 0.95 on the same data).

Revision ID: 0005
Revises: 0004
"""
from alembic import op

from psimem.migration_sql import hnsw_index

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = (("idx_day_table_universal_embedding", "universal"), ("idx_day_table_native_embedding", "native"))


def _rebuild(**params) -> None:
    conn = op.get_bind()
    s = dict(conn.exec_driver_sql("SELECT key, value #>> '{}' FROM ops.settings WHERE key LIKE 'embedding.%%'").fetchall())
    for name, space in INDEXES:
        op.execute(f"DROP INDEX memory.{name}")
        op.execute(hnsw_index(name, "memory.day_table", f"{space}_embedding", int(s[f"embedding.{space}_dim"]),
                              s[f"embedding.{space}_index"], **params))


def _overfetch(old: int, new: int) -> None:
    # Only a value still at the old default: an operator's own choice stays.
    op.execute(f"UPDATE ops.settings SET value = '{new}' WHERE key = 'recall.binary_overfetch' AND value = '{old}'")


def upgrade() -> None:
    _rebuild(m=32, ef_construction=128)
    _overfetch(10, 20)


def downgrade() -> None:
    _rebuild()
    _overfetch(20, 10)
