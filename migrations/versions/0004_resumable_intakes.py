"""intakes: what a dropped connection needs to resume (token hash, upstream handle, owner, deadlines)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("intakes") as batch:
        batch.add_column(sa.Column("resume_token_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("resume_handle", sa.Text(), nullable=True))
        batch.add_column(sa.Column("resumable_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("live_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("intakes") as batch:
        for column in ("generation", "live_until", "owner", "resumable_until", "resume_handle"):
            batch.drop_column(column)
        batch.drop_column("resume_token_hash")
