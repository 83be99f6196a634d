"""recall_recent ranks a selective filter by stored binary codes, then exactly.

Revision 0009 ranked a filter keeping fewer than 20,000 rows exactly. At 1M rows a 1%
filter (10k rows) took 31-36 ms that way, most of it fetching 3 KB vectors from TOAST.
Every embedding space of day_table now keeps its binary code in the row (768-d: 96
bytes), as binary-quantized spaces already did. Recall ranks the filter's rows by Hamming
distance on the codes, without detoasting, and re-ranks the best
recall.binary_overfetch_selective per wanted row (400 for k 10) exactly. On the same
10k rows: p50 6.2 ms, p95 7.5 ms, recall@10 0.978 (bench/recall.py), where ranking them
exactly took 37 ms in the same run.

One threshold now decides "selective" for both paths: recall.selective_rows, 20,000
(was 5,000 for binary-quantized spaces), and recall.exact_rows goes.

Adding the columns rewrites day_table and rebuilds its indexes.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

from psimem.migration_sql import binary_code_column, index_kind

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SPACES = ("universal", "native")


def _uncoded_spaces() -> list[tuple[str, int]]:
    """Spaces whose index is not binary-quantized: before this revision, without a code."""
    conn = op.get_bind()
    dims = dict(conn.exec_driver_sql("SELECT key, value #>> '{}' FROM ops.settings WHERE key LIKE 'embedding.%%_dim'").fetchall())
    return [(s, int(dims[f"embedding.{s}_dim"])) for s in SPACES if index_kind(int(dims[f"embedding.{s}_dim"])) != "binary"]


def upgrade() -> None:
    for space, dim in _uncoded_spaces():
        op.execute(binary_code_column("memory.day_table", f"{space}_embedding", dim, "binary"))
    op.execute("""
    DELETE FROM ops.settings WHERE key = 'recall.exact_rows';
    UPDATE ops.settings SET value = CASE WHEN value = '5000' THEN '20000' ELSE value END,  -- an operator's own stays
        description = 'below this many rows a recall filter is selective: all its rows are ranked by stored binary code, '
                      'then recall.binary_overfetch_selective per wanted row exactly'
    WHERE key = 'recall.selective_rows';
    UPDATE ops.settings SET description = 'candidates per wanted row re-ranked exactly when the filter is selective '
                                          '(fewer than recall.selective_rows rows)'
    WHERE key = 'recall.binary_overfetch_selective';
    """)


def downgrade() -> None:
    op.execute("""
    UPDATE ops.settings SET description = 'the same when the filter keeps fewer than recall.selective_rows rows'
    WHERE key = 'recall.binary_overfetch_selective';
    UPDATE ops.settings SET value = CASE WHEN value = '20000' THEN '5000' ELSE value END, description = 'below this many rows a recall filter counts as selective'
    WHERE key = 'recall.selective_rows';
    INSERT INTO ops.settings (key, value, description) VALUES
      ('recall.exact_rows', '20000',
       'universal recall ranks every row of a filter that keeps fewer than this many rows exactly (no index)');
    """)
    for space, _ in _uncoded_spaces():
        op.execute(f"ALTER TABLE memory.day_table DROP COLUMN {space}_embedding_bq")
