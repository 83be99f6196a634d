"""Night Cycle bulk mode: settings for rebuilding the blocks' HNSW indexes after a large cycle.

Inserting a block into an HNSW index costs milliseconds and grows with the graph; a cycle
that adds as many blocks as the table holds (a backfill, the first night over a large
history) spent 392 of 475 s on those inserts at 1M turns. Such a cycle drops the indexes
and builds them once at its end (memory.run_night_cycle). The price: readers of
holographic_blocks wait for the cycle to commit, so small nightly cycles keep inserting.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    INSERT INTO ops.settings (key, value, description) VALUES
      ('night.index_rebuild_min_blocks', '2000',
       'Night Cycle bulk mode: a cycle that forms at least this many blocks ...'),
      ('night.index_rebuild_ratio', '0.5',
       '... and more than this fraction of the blocks already stored rebuilds the blocks'' HNSW indexes once at its end instead of inserting into them')
    ON CONFLICT (key) DO NOTHING""")


def downgrade() -> None:
    op.execute("DELETE FROM ops.settings WHERE key IN ('night.index_rebuild_min_blocks', 'night.index_rebuild_ratio')")
