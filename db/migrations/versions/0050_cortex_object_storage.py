"""The Cortex on object storage: where an S3 Cortex's endpoint and region come from.

With PSIMEM_CORTEX_URI=s3://bucket/prefix every process that opens the Cortex (workers,
recall, packets, RAPTOR, psimem cortex) passes LanceDB the endpoint and region of an
S3-compatible store. The AWS SDKs' environment variables (AWS_ENDPOINT_URL, AWS_REGION)
win where a process sets them; these settings give one place for every process of a
deployment. Credentials never live here: they come from the environment or LanceDB's
own AWS credential chain.

Revision ID: 0050
Revises: 0013
"""
from alembic import op

revision = "0050"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    INSERT INTO ops.settings (key, value, description, value_type) VALUES
      ('cortex.s3_endpoint', '""', 'endpoint URL (http:// or https://) of the S3-compatible store holding an s3:// Cortex, '
       'used where the environment sets no AWS_ENDPOINT_URL; empty for AWS itself', 'text'),
      ('cortex.s3_region', '""', 'region of the bucket holding an s3:// Cortex, used where the environment sets no '
       'AWS_REGION / AWS_DEFAULT_REGION; empty to let LanceDB find it', 'text')
    ON CONFLICT (key) DO NOTHING;
    """)


def downgrade() -> None:
    op.execute("DELETE FROM ops.settings WHERE key IN ('cortex.s3_endpoint', 'cortex.s3_region')")
