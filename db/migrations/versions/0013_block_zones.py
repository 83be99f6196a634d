"""Block zones: each zone of a Holographic Block as a row, with the turns it came from.

A block's prose keeps the spec's shape (margins, live zones, dead-zone summaries), but
recall needs to return the best part of a block, not only the whole of it, and to say
which turns that part stands for. memory.block_zones holds one row per zone: its kind,
the session turn range it was made from, and its text (the verbatim "role: content" lines
of a live zone or margin, the summary of a dead zone). The Night Cycle writes it with the
block. Blocks also get a kind for the stretches of a session between flux arcs ('gap'),
so that every turn of a consolidated session can lie in some block.

Revision ID: 0013
Revises: 0012
"""
from alembic import op

from psimem.migration_sql import user_policies

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE memory.block_zones (
        block_id   uuid NOT NULL REFERENCES memory.holographic_blocks ON DELETE CASCADE,
        user_id    uuid NOT NULL REFERENCES memory.users ON DELETE CASCADE,
        zone_no    smallint NOT NULL,
        zone_kind  text NOT NULL,
        session_id uuid NOT NULL,
        first_turn int NOT NULL,
        last_turn  int NOT NULL,
        content    text NOT NULL,
        PRIMARY KEY (block_id, zone_no),
        CONSTRAINT block_zones_kind_known CHECK (zone_kind IN ('anterior_margin', 'live', 'dead', 'posterior_margin')),
        CONSTRAINT block_zones_turns_ordered CHECK (first_turn <= last_turn),
        CONSTRAINT block_zones_zone_no_nonnegative CHECK (zone_no >= 0)
    );
    CREATE INDEX idx_block_zones_user ON memory.block_zones (user_id);
    CREATE INDEX idx_block_zones_session_turns ON memory.block_zones (session_id, first_turn);
    COMMENT ON TABLE memory.block_zones IS
      'One row per zone of a Holographic Block, in order (zone_no): anterior_margin, live and dead zones, posterior_margin; first_turn..last_turn are the session turns it was made from; content is verbatim ("role: content" lines) except for a dead zone, whose content is its summary.';
    GRANT SELECT ON memory.block_zones TO psimem_reader, psimem_writer;
    GRANT SELECT, INSERT, UPDATE, DELETE ON memory.block_zones TO psimem_admin;

    ALTER TABLE memory.holographic_blocks DROP CONSTRAINT holographic_blocks_kind_known,
        ADD CONSTRAINT holographic_blocks_kind_known CHECK (block_kind IN ('arc', 'gap', 'compound', 'imported'));
    COMMENT ON COLUMN memory.holographic_blocks.block_kind IS
      'arc: a flux arc with its margins; gap: a stretch of a session between arcs (dead-zone heavy); compound: a metablock; imported: from a Bifocal Packet';
    """)
    op.execute(user_policies("memory.block_zones"))


def downgrade() -> None:
    op.execute("""
    DROP TABLE memory.block_zones;
    DELETE FROM memory.holographic_blocks WHERE block_kind = 'gap';
    ALTER TABLE memory.holographic_blocks DROP CONSTRAINT holographic_blocks_kind_known,
        ADD CONSTRAINT holographic_blocks_kind_known CHECK (block_kind IN ('arc', 'compound', 'imported'));
    """)
