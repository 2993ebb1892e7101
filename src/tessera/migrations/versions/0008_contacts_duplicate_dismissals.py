"""contacts: dismissed duplicate suggestions (the console's duplicates queue)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tessera.core.db.base
from tessera.migrations import rls

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLE = "contact_duplicate_dismissals"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("contact_a_id", sa.Uuid(), nullable=False),
        sa.Column("contact_b_id", sa.Uuid(), nullable=False),
        sa.Column("dismissed_by", sa.Uuid(), nullable=True),
        sa.Column("dismissed_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_a_id"],
            ["contacts.id"],
            name=op.f("fk_contact_duplicate_dismissals_contact_a_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_b_id"],
            ["contacts.id"],
            name=op.f("fk_contact_duplicate_dismissals_contact_b_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_contact_duplicate_dismissals_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_duplicate_dismissals")),
        sa.UniqueConstraint(
            "tenant_id",
            "contact_a_id",
            "contact_b_id",
            name=op.f("uq_contact_duplicate_dismissals_tenant_id_contact_a_id_contact_b_id"),
        ),
    )
    op.create_index(op.f("ix_contact_duplicate_dismissals_contact_b_id"), TABLE, ["contact_b_id"])
    op.create_index(op.f("ix_contact_duplicate_dismissals_tenant_id"), TABLE, ["tenant_id"])
    rls.enable(TABLE)


def downgrade() -> None:
    rls.disable(TABLE)
    op.drop_index(op.f("ix_contact_duplicate_dismissals_tenant_id"), table_name=TABLE)
    op.drop_index(op.f("ix_contact_duplicate_dismissals_contact_b_id"), table_name=TABLE)
    op.drop_table(TABLE)
