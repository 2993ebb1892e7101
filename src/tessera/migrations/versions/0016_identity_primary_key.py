"""contacts: the identities' primary key leads with contact_id

``contact_identities`` had a primary key on ``id`` and an index on ``contact_id``; the primary
key is now (contact_id, id), which serves what the index served (a contact's identities, the
cascade from contacts) and leaves one index entry to write per identity instead of two. No
query looks an identity up by its id alone.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contact_identities") as batch:
        batch.drop_constraint("pk_contact_identities", type_="primary")
        batch.create_primary_key("pk_contact_identities", ["contact_id", "id"])
    op.drop_index("ix_contact_identities_contact_id", table_name="contact_identities")


def downgrade() -> None:
    op.create_index("ix_contact_identities_contact_id", "contact_identities", ["contact_id"])
    with op.batch_alter_table("contact_identities") as batch:
        batch.drop_constraint("pk_contact_identities", type_="primary")
        batch.create_primary_key("pk_contact_identities", ["id"])
