"""contacts: rule tags (a tag whose membership follows a dynamic segment)

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contact_tags") as batch:
        batch.add_column(sa.Column("segment_id", sa.Uuid(), nullable=True))
        batch.create_index("ix_contact_tags_segment_id", ["segment_id"])
        batch.create_foreign_key(
            "fk_contact_tags_segment_id_contact_segments",
            "contact_segments",
            ["segment_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("contact_tags") as batch:
        batch.drop_constraint("fk_contact_tags_segment_id_contact_segments", type_="foreignkey")
        batch.drop_index("ix_contact_tags_segment_id")
        batch.drop_column("segment_id")
