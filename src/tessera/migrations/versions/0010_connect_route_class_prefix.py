"""connect: routes keyed by message class and number prefix

Revision ID: 0010
Revises: 0009

``connect_routes.message_class`` (null = any class) and ``connect_routes.prefix`` (null = any
number; an E.164 prefix such as ``+86`` or ``+8613``, longest wins). Existing rows keep null in
both, so they match exactly as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connect_routes") as batch:
        batch.add_column(sa.Column("message_class", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("prefix", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connect_routes") as batch:
        batch.drop_column("prefix")
        batch.drop_column("message_class")
