"""contacts: indexes for segment counts (events by name and time, tag links by tag)

Revision ID: 0009
Revises: 0008

``contact_events (tenant_id, name, occurred_at, contact_id)`` lets "did event X in the last N
days" read only the matching slice of the index (index-only, contact ids included) for the
semi-join; ``contact_tag_links (tenant_id, tag_id, contact_id)`` does the same for "has tag".
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_contact_events_tenant_name_time",
        "contact_events",
        ["tenant_id", "name", "occurred_at", "contact_id"],
    )
    op.create_index(
        "ix_contact_tag_links_tenant_tag_contact",
        "contact_tag_links",
        ["tenant_id", "tag_id", "contact_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_contact_tag_links_tenant_tag_contact", table_name="contact_tag_links")
    op.drop_index("ix_contact_events_tenant_name_time", table_name="contact_events")
