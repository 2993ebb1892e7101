"""console: saved views of list pages

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tessera.core.db.base
from tessera.migrations import rls

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_saved_views",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("page", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("query", sa.String(length=2000), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_console_saved_views_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_saved_views")),
    )
    op.create_index("ix_console_saved_views_tenant_page", "console_saved_views", ["tenant_id", "page"])
    op.create_index(op.f("ix_console_saved_views_tenant_id"), "console_saved_views", ["tenant_id"])
    rls.enable("console_saved_views")


def downgrade() -> None:
    rls.disable("console_saved_views")
    op.drop_index(op.f("ix_console_saved_views_tenant_id"), table_name="console_saved_views")
    op.drop_index("ix_console_saved_views_tenant_page", table_name="console_saved_views")
    op.drop_table("console_saved_views")
