"""connect messaging

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tessera.core.crypto.types
import tessera.core.db.base
from tessera.migrations import rls

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TENANT_TABLES = (
    "connect_channels",
    "connect_ported_numbers",
    "connect_rate_cards",
    "connect_signatures",
    "connect_templates",
    "connect_links",
    "connect_messages",
    "connect_message_events",
    "connect_routes",
)


def upgrade() -> None:
    op.create_table(
        "connect_gateways",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("heartbeat_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_gateways")),
    )
    op.create_table(
        "connect_carrier_ids",
        sa.Column("link_id", sa.Uuid(), nullable=False),
        sa.Column("carrier_id", sa.String(length=72), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("part", sa.SmallInteger(), nullable=False),
        sa.Column("parts", sa.SmallInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_connect_carrier_ids_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("link_id", "carrier_id", name=op.f("pk_connect_carrier_ids")),
    )
    op.create_table(
        "connect_channels",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("default_source", sa.String(length=32), nullable=False),
        sa.Column(
            "settings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("secret", tessera.core.crypto.types.EncryptedString(), nullable=True),
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
            name=op.f("fk_connect_channels_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_channels")),
    )
    with op.batch_alter_table("connect_channels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connect_channels_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "connect_dispatch",
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("lane", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("available_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claims", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_connect_dispatch_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_connect_dispatch")),
    )
    with op.batch_alter_table("connect_dispatch", schema=None) as batch_op:
        batch_op.create_index("ix_connect_dispatch_ready", ["state", "lane", "available_at"], unique=False)
    op.create_table(
        "connect_ported_numbers",
        sa.Column("number_index", sa.String(length=64), nullable=False),
        sa.Column("carrier", sa.String(length=64), nullable=False),
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
            name=op.f("fk_connect_ported_numbers_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_ported_numbers")),
        sa.UniqueConstraint(
            "tenant_id", "number_index", name=op.f("uq_connect_ported_numbers_tenant_id_number_index")
        ),
    )
    with op.batch_alter_table("connect_ported_numbers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connect_ported_numbers_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "connect_rate_cards",
        sa.Column("channel_kind", sa.String(length=16), nullable=False),
        sa.Column("carrier", sa.String(length=64), nullable=False),
        sa.Column("price_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
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
            name=op.f("fk_connect_rate_cards_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_rate_cards")),
        sa.UniqueConstraint(
            "tenant_id",
            "channel_kind",
            "carrier",
            name=op.f("uq_connect_rate_cards_tenant_id_channel_kind_carrier"),
        ),
    )
    with op.batch_alter_table("connect_rate_cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connect_rate_cards_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "connect_signatures",
        sa.Column("text", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
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
            name=op.f("fk_connect_signatures_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_signatures")),
        sa.UniqueConstraint("tenant_id", "text", name=op.f("uq_connect_signatures_tenant_id_text")),
    )
    with op.batch_alter_table("connect_signatures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connect_signatures_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "connect_templates",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("message_class", sa.String(length=16), nullable=False),
        sa.Column(
            "bodies",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "variables",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("external_id", sa.String(length=128), nullable=True),
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
            name=op.f("fk_connect_templates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_templates")),
    )
    with op.batch_alter_table("connect_templates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connect_templates_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "connect_links",
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.String(length=16), nullable=False),
        sa.Column("password", tessera.core.crypto.types.EncryptedString(), nullable=False),
        sa.Column("system_type", sa.String(length=13), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("tps", sa.Double(), nullable=True),
        sa.Column(
            "source_rules",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
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
            ["channel_id"],
            ["connect_channels.id"],
            name=op.f("fk_connect_links_channel_id_connect_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_connect_links_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_links")),
    )
    with op.batch_alter_table("connect_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connect_links_channel_id"), ["channel_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_connect_links_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "connect_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column("channel_kind", sa.String(length=16), nullable=False),
        sa.Column("message_class", sa.String(length=16), nullable=False),
        sa.Column("to", tessera.core.crypto.types.EncryptedString(), nullable=False),
        sa.Column("to_index", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=True),
        sa.Column(
            "variables",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("carrier", sa.String(length=64), nullable=False),
        sa.Column(
            "carrier_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("segments", sa.SmallInteger(), nullable=False),
        sa.Column("encoding", sa.String(length=8), nullable=False),
        sa.Column("cost_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "route",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("link_id", sa.Uuid(), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("resubmissions", sa.SmallInteger(), nullable=False),
        sa.Column("scheduled_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("valid_until", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("campaign_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("queued_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("done_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["connect_channels.id"],
            name=op.f("fk_connect_messages_channel_id_connect_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_connect_messages_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_messages")),
    )
    with op.batch_alter_table("connect_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connect_messages_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_connect_messages_status"), ["status"], unique=False)
        batch_op.create_index(
            "ix_connect_messages_tenant_created", ["tenant_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_connect_messages_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_connect_messages_tenant_reference", ["tenant_id", "reference"], unique=False
        )
        batch_op.create_index("ix_connect_messages_tenant_to", ["tenant_id", "to_index"], unique=False)
    op.create_table(
        "connect_message_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["connect_messages.id"],
            name=op.f("fk_connect_message_events_message_id_connect_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_connect_message_events_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_message_events")),
    )
    with op.batch_alter_table("connect_message_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_connect_message_events_message_id"), ["message_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_connect_message_events_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "connect_routes",
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column("carrier", sa.String(length=64), nullable=False),
        sa.Column("link_id", sa.Uuid(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
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
            ["channel_id"],
            ["connect_channels.id"],
            name=op.f("fk_connect_routes_channel_id_connect_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["connect_links.id"],
            name=op.f("fk_connect_routes_link_id_connect_links"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_connect_routes_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_routes")),
    )
    with op.batch_alter_table("connect_routes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connect_routes_channel_id"), ["channel_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_connect_routes_tenant_id"), ["tenant_id"], unique=False)
    rls.enable(*TENANT_TABLES)


def downgrade() -> None:
    rls.disable(*TENANT_TABLES)
    with op.batch_alter_table("connect_routes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connect_routes_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_connect_routes_channel_id"))
    op.drop_table("connect_routes")
    with op.batch_alter_table("connect_message_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connect_message_events_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_connect_message_events_message_id"))
    op.drop_table("connect_message_events")
    with op.batch_alter_table("connect_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_connect_messages_tenant_to")
        batch_op.drop_index("ix_connect_messages_tenant_reference")
        batch_op.drop_index(batch_op.f("ix_connect_messages_tenant_id"))
        batch_op.drop_index("ix_connect_messages_tenant_created")
        batch_op.drop_index(batch_op.f("ix_connect_messages_status"))
        batch_op.drop_index(batch_op.f("ix_connect_messages_campaign_id"))
    op.drop_table("connect_messages")
    with op.batch_alter_table("connect_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connect_links_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_connect_links_channel_id"))
    op.drop_table("connect_links")
    with op.batch_alter_table("connect_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connect_templates_tenant_id"))
    op.drop_table("connect_templates")
    with op.batch_alter_table("connect_signatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connect_signatures_tenant_id"))
    op.drop_table("connect_signatures")
    with op.batch_alter_table("connect_rate_cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connect_rate_cards_tenant_id"))
    op.drop_table("connect_rate_cards")
    with op.batch_alter_table("connect_ported_numbers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connect_ported_numbers_tenant_id"))
    op.drop_table("connect_ported_numbers")
    with op.batch_alter_table("connect_dispatch", schema=None) as batch_op:
        batch_op.drop_index("ix_connect_dispatch_ready")
    op.drop_table("connect_dispatch")
    with op.batch_alter_table("connect_channels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connect_channels_tenant_id"))
    op.drop_table("connect_channels")
    op.drop_table("connect_carrier_ids")
    op.drop_table("connect_gateways")
