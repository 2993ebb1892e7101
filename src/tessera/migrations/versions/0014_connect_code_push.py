"""connect: gateways that take verification codes pushed to them

``connect_gateways.code_push``: the gateway hears the dispatch channel and takes the codes the
API assigns to it with the message in the announcement (``connect_dispatch.state`` 2), without
claiming them first. The API assigns codes only to gateways that say so in a fresh heartbeat.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connect_gateways") as batch:
        batch.add_column(sa.Column("code_push", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    # codes assigned to a gateway and not taken yet go back to the queue
    op.execute("UPDATE connect_dispatch SET state = 0, claimed_by = NULL WHERE state = 2")
    with op.batch_alter_table("connect_gateways") as batch:
        batch.drop_column("code_push")
