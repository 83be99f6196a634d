"""recall_recent ranks a selective filter's rows exactly.

At 1M rows a filter keeping 1% (10k rows) made the planner walk the HNSW graph with an
iterative scan: 48-53 ms and recall@10 0.82. Ranking those rows exactly gives recall 1 in
about 30 ms there, most of it fetching the vectors from TOAST (a row over 2 KB has its
biggest values moved out, and a 768-d vector is 3 KB).

- An index on sessions (user_id, last_turn_at) INCLUDE (turn_count) lets recall bound a
  filter's rows by the turn counts of the user's recent sessions without reading turns.
- Setting recall.exact_rows (20000): below it the universal path ranks exactly.

Keeping the vectors in the row (toast_tuple_target 8160) was measured and not adopted: the
exact ranking of 10k rows at 1M fell to 13.5 ms, but the heap grew 13x (391 MB at 100k)
and the filtered HNSW walk, which reads a heap row per candidate, slowed from about 9 to
10-12 ms at 100k rows.

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX idx_sessions_user_last_turn ON memory.sessions (user_id, last_turn_at) INCLUDE (turn_count)")
    op.execute("""
    INSERT INTO ops.settings (key, value, description) VALUES
      ('recall.exact_rows', '20000',
       'universal recall ranks every row of a filter that keeps fewer than this many rows exactly (no index)')
    """)


def downgrade() -> None:
    op.execute("DELETE FROM ops.settings WHERE key = 'recall.exact_rows'")
    op.execute("DROP INDEX memory.idx_sessions_user_last_turn")
