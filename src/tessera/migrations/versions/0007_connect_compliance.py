"""connect compliance: word/number lists, opt-outs, reviews; verifications; inbound messages

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tessera.core.crypto.types
import tessera.core.db.base
from tessera.migrations import rls

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TENANT_TABLES = (
    "compliance_words",
    "compliance_list_entries",
    "compliance_opt_outs",
    "compliance_settings",
    "compliance_reviews",
    "verify_verifications",
    "inbound_messages",
    "inbound_auto_reply_rules",
)


def upgrade() -> None:
    op.create_table(
        "compliance_global_entries",
        sa.Column("list_kind", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_global_entries")),
        sa.UniqueConstraint("list_kind", "value", name=op.f("uq_compliance_global_entries_list_kind_value")),
    )
    op.create_table(
        "compliance_global_words",
        sa.Column("word", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("replacement", sa.String(length=200), nullable=True),
        sa.Column("whole_word", sa.Boolean(), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_global_words")),
        sa.UniqueConstraint("word", name=op.f("uq_compliance_global_words_word")),
    )
    op.create_table(
        "compliance_versions",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_compliance_versions")),
    )
    op.create_table(
        "compliance_list_entries",
        sa.Column("list_kind", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", tessera.core.crypto.types.EncryptedString(), nullable=False),
        sa.Column("value_index", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
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
            name=op.f("fk_compliance_list_entries_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_list_entries")),
        sa.UniqueConstraint(
            "tenant_id",
            "list_kind",
            "value_index",
            name=op.f("uq_compliance_list_entries_tenant_id_list_kind_value_index"),
        ),
    )
    with op.batch_alter_table("compliance_list_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compliance_list_entries_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_compliance_list_entries_value_index"), ["value_index"], unique=False
        )

    op.create_table(
        "compliance_opt_outs",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("address", tessera.core.crypto.types.EncryptedString(), nullable=False),
        sa.Column("address_index", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
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
            name=op.f("fk_compliance_opt_outs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_opt_outs")),
        sa.UniqueConstraint(
            "tenant_id",
            "channel",
            "address_index",
            name=op.f("uq_compliance_opt_outs_tenant_id_channel_address_index"),
        ),
    )
    with op.batch_alter_table("compliance_opt_outs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compliance_opt_outs_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "compliance_reviews",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("message_class", sa.String(length=16), nullable=False),
        sa.Column("to", tessera.core.crypto.types.EncryptedString(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "hits",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.Column("decided_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("message_id", sa.Uuid(), nullable=True),
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
            name=op.f("fk_compliance_reviews_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_reviews")),
    )
    with op.batch_alter_table("compliance_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compliance_reviews_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_compliance_reviews_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "compliance_settings",
        sa.Column("quiet_start", sa.Integer(), nullable=True),
        sa.Column("quiet_end", sa.Integer(), nullable=True),
        sa.Column("cap_count", sa.Integer(), nullable=True),
        sa.Column("cap_window_hours", sa.Integer(), nullable=False),
        sa.Column(
            "opt_out_keywords",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("opt_out_reply", sa.Text(), nullable=False),
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
            name=op.f("fk_compliance_settings_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_settings")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_compliance_settings_tenant_id")),
    )
    with op.batch_alter_table("compliance_settings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compliance_settings_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "compliance_words",
        sa.Column("word", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("replacement", sa.String(length=200), nullable=True),
        sa.Column("whole_word", sa.Boolean(), nullable=False),
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
            name=op.f("fk_compliance_words_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_words")),
        sa.UniqueConstraint("tenant_id", "word", name=op.f("uq_compliance_words_tenant_id_word")),
    )
    with op.batch_alter_table("compliance_words", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compliance_words_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "inbound_auto_reply_rules",
        sa.Column("keyword", sa.String(length=64), nullable=False),
        sa.Column("match", sa.String(length=8), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
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
            name=op.f("fk_inbound_auto_reply_rules_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_auto_reply_rules")),
        sa.UniqueConstraint(
            "tenant_id", "keyword", name=op.f("uq_inbound_auto_reply_rules_tenant_id_keyword")
        ),
    )
    with op.batch_alter_table("inbound_auto_reply_rules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbound_auto_reply_rules_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "inbound_messages",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("from", tessera.core.crypto.types.EncryptedString(), nullable=False),
        sa.Column("from_index", sa.String(length=64), nullable=False),
        sa.Column("to", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("opt_out", sa.Boolean(), nullable=False),
        sa.Column("rule_id", sa.Uuid(), nullable=True),
        sa.Column("reply_message_id", sa.Uuid(), nullable=True),
        sa.Column("received_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_inbound_messages_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_messages_tenant_from", ["tenant_id", "from_index"], unique=False)
        batch_op.create_index(batch_op.f("ix_inbound_messages_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_inbound_messages_tenant_received", ["tenant_id", "received_at", "id"], unique=False
        )

    op.create_table(
        "verify_verifications",
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("to", tessera.core.crypto.types.EncryptedString(), nullable=False),
        sa.Column("to_index", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("code_length", sa.SmallInteger(), nullable=False),
        sa.Column("code_salt", sa.String(length=32), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("expires_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("checks", sa.SmallInteger(), nullable=False),
        sa.Column("sends", sa.SmallInteger(), nullable=False),
        sa.Column("last_sent_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("delivered_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("fallback_after", sa.Integer(), nullable=True),
        sa.Column("voice_used", sa.Boolean(), nullable=False),
        sa.Column("voice_call_id", sa.String(length=64), nullable=True),
        sa.Column("voice_status", sa.String(length=16), nullable=True),
        sa.Column("approved_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("code_sealed", tessera.core.crypto.types.EncryptedString(), nullable=True),
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
            name=op.f("fk_verify_verifications_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verify_verifications")),
    )
    with op.batch_alter_table("verify_verifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_verify_verifications_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_verify_verifications_tenant_ip", ["tenant_id", "ip", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_verify_verifications_tenant_template", ["tenant_id", "template", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_verify_verifications_tenant_to", ["tenant_id", "to_index", "created_at"], unique=False
        )

    rls.enable(*TENANT_TABLES)


def downgrade() -> None:
    rls.disable(*TENANT_TABLES)
    with op.batch_alter_table("verify_verifications", schema=None) as batch_op:
        batch_op.drop_index("ix_verify_verifications_tenant_to")
        batch_op.drop_index("ix_verify_verifications_tenant_template")
        batch_op.drop_index("ix_verify_verifications_tenant_ip")
        batch_op.drop_index(batch_op.f("ix_verify_verifications_tenant_id"))

    op.drop_table("verify_verifications")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_messages_tenant_received")
        batch_op.drop_index(batch_op.f("ix_inbound_messages_tenant_id"))
        batch_op.drop_index("ix_inbound_messages_tenant_from")

    op.drop_table("inbound_messages")
    with op.batch_alter_table("inbound_auto_reply_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_auto_reply_rules_tenant_id"))

    op.drop_table("inbound_auto_reply_rules")
    with op.batch_alter_table("compliance_words", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compliance_words_tenant_id"))

    op.drop_table("compliance_words")
    with op.batch_alter_table("compliance_settings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compliance_settings_tenant_id"))

    op.drop_table("compliance_settings")
    with op.batch_alter_table("compliance_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compliance_reviews_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_compliance_reviews_status"))

    op.drop_table("compliance_reviews")
    with op.batch_alter_table("compliance_opt_outs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compliance_opt_outs_tenant_id"))

    op.drop_table("compliance_opt_outs")
    with op.batch_alter_table("compliance_list_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compliance_list_entries_value_index"))
        batch_op.drop_index(batch_op.f("ix_compliance_list_entries_tenant_id"))

    op.drop_table("compliance_list_entries")
    op.drop_table("compliance_versions")
    op.drop_table("compliance_global_words")
    op.drop_table("compliance_global_entries")
