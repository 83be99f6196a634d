"""The live half of flux detection keeps what the Night Cycle needs per turn.

The day_table trigger already computes each turn's baseline (mean and sample stddev of
the previous flux.baseline_window perplexities) and knows which flux window the turn is
in. Kept on the row, they spare the Night Cycle three passes of window functions over
every turn it takes: stage 1 becomes one GROUP BY over the arcs' turns.

The backfill covers only turns no Night Cycle has consolidated yet (the ones it will
read); it mirrors the trigger: the previous window counts turns with a perplexity.

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    window = int(op.get_bind().exec_driver_sql(
        "SELECT value #>> '{}' FROM ops.settings WHERE key = 'flux.baseline_window'").scalar())
    op.execute(f"""
    ALTER TABLE memory.day_table
        ADD COLUMN flux_baseline_mean double precision,
        ADD COLUMN flux_baseline_sd double precision,
        ADD COLUMN flux_arc_start int;
    COMMENT ON COLUMN memory.day_table.flux_baseline_mean IS
      'set by the trigger: mean perplexity of the previous flux.baseline_window turns that have one (the live baseline)';
    COMMENT ON COLUMN memory.day_table.flux_baseline_sd IS
      'set by the trigger: sample standard deviation of those turns (0 with fewer than two)';
    COMMENT ON COLUMN memory.day_table.flux_arc_start IS
      'set by the trigger: turn number of the spike that opened the flux window this turn is in, from that spike to the stable turn closing it; NULL outside a window';
    ALTER TABLE memory.sessions ADD COLUMN flux_arc_start int;
    COMMENT ON COLUMN memory.sessions.flux_arc_start IS 'turn number of the spike that opened the current flux window (trigger state)';

    WITH src AS (
        SELECT d.entry_id, d.session_id, d.turn_number, d.flux_state, d.perplexity_score,
               d.turn_number > s.consolidated_turn AS pending
        FROM memory.day_table d JOIN memory.sessions s USING (session_id)
        WHERE d.perplexity_score IS NOT NULL AND s.turn_count > s.consolidated_turn),
    stats AS (
        SELECT src.*,
               avg(perplexity_score) OVER prev AS m, coalesce(stddev_samp(perplexity_score) OVER prev, 0) AS sd,
               lag(flux_state) OVER w AS prev_state
        FROM src
        WINDOW w AS (PARTITION BY session_id ORDER BY turn_number),
               prev AS (w ROWS BETWEEN {window} PRECEDING AND 1 PRECEDING)),
    numbered AS (
        SELECT stats.*, sum((flux_state = 'spike' AND coalesce(prev_state, 'baseline') IN ('baseline', 'stable'))::int)
                        OVER (PARTITION BY session_id ORDER BY turn_number) AS arc_no
        FROM stats),
    marked AS (
        SELECT numbered.*,
               CASE WHEN arc_no > 0 AND NOT coalesce(bool_or(flux_state = 'stable') OVER (PARTITION BY session_id, arc_no
                        ORDER BY turn_number ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false)
                    THEN min(turn_number) OVER (PARTITION BY session_id, arc_no) END AS arc_start
        FROM numbered)
    UPDATE memory.day_table d SET flux_baseline_mean = m.m, flux_baseline_sd = m.sd, flux_arc_start = m.arc_start
    FROM marked m WHERE d.entry_id = m.entry_id AND m.pending;

    UPDATE memory.sessions s SET flux_arc_start = (
        SELECT max(d.flux_arc_start) FROM memory.day_table d WHERE d.session_id = s.session_id)
    WHERE s.flux_window_open;
    """)


def downgrade() -> None:
    op.execute("""
    ALTER TABLE memory.sessions DROP COLUMN flux_arc_start;
    ALTER TABLE memory.day_table DROP COLUMN flux_baseline_mean, DROP COLUMN flux_baseline_sd, DROP COLUMN flux_arc_start;
    """)
