"""ψ-trajectory memory: schema psi (utterances, psi_frames, surprise events, band centroids).

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE SCHEMA psi;
    COMMENT ON SCHEMA psi IS 'psimem ψ-trajectory memory: how each reply was voiced, as oscillator state';
    """)


def downgrade() -> None:
    op.execute("DROP SCHEMA psi CASCADE")
