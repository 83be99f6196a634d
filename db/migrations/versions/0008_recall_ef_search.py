"""recall_recent's default hnsw.ef_search 100 -> 80.

Measured with bench/recall.py on 100k 768-d vectors with real-embedding statistics, a
filter keeping half the rows, m 32 / ef_construction 128: ef_search 100 gave recall@10
0.972 at p50 11.0 / p95 13.3 ms; 80 gave 0.961 at 8.8 / 9.9 ms; 64 gave 0.946 at
7.7 / 9.2 ms. 80 is the smallest value that keeps recall@10 above 0.95.

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _ef_search(old: int, new: int) -> None:
    # Only a value still at the old default: an operator's own choice stays.
    op.execute(f"UPDATE ops.settings SET value = '{new}' WHERE key = 'recall.ef_search' AND value = '{old}'")


def upgrade() -> None:
    _ef_search(100, 80)


def downgrade() -> None:
    _ef_search(80, 100)
