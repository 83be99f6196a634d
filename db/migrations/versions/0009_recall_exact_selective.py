"""recall_recent ranks a selective filter's rows exactly, with the universal vector in the row.

At 1M rows a filter keeping 1% (10k rows) made the planner walk the HNSW graph with an
iterative scan: 48-53 ms and recall@10 0.82. Ranking those 10k rows exactly took 30 ms,
most of it fetching the vectors from TOAST (pgvector's vector is stored EXTERNAL, so a
768-d vector, 3 KB, leaves the row as soon as the row passes 2 KB). With the vector kept in
the row (storage MAIN: in line unless the row cannot fit a page) the same exact ranking
takes 13.5 ms, at recall 1.

- universal_embedding gets storage MAIN. Rows already written keep their TOASTed vector until
  rewritten (VACUUM FULL, which also rebuilds the HNSW indexes; not done here because of
  its cost).
- An index on sessions (user_id, last_turn_at) lets recall bound a filter's rows by the turn
  counts of the user's recent sessions without reading turns.
- Setting recall.exact_rows (20000): below it the universal path ranks exactly.

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE memory.day_table ALTER COLUMN universal_embedding SET STORAGE MAIN")
    op.execute("CREATE INDEX idx_sessions_user_last_turn ON memory.sessions (user_id, last_turn_at)")
    op.execute("""
    INSERT INTO ops.settings (key, value, description) VALUES
      ('recall.exact_rows', '20000',
       'universal recall ranks every row of a filter that keeps fewer than this many rows exactly (no index)')
    """)


def downgrade() -> None:
    op.execute("DELETE FROM ops.settings WHERE key = 'recall.exact_rows'")
    op.execute("DROP INDEX memory.idx_sessions_user_last_turn")
    op.execute("ALTER TABLE memory.day_table ALTER COLUMN universal_embedding SET STORAGE EXTERNAL")
