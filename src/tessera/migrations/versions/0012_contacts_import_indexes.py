"""contacts: fewer index entries per imported contact

tenant_id of contacts and contact_identities is served by the composite indexes it leads
(ix_contacts_tenant_created, the unique (tenant_id, kind, value_index)), so its own indexes go;
the owner and account indexes leave out NULLs (what a bulk import writes), which every lookup
by owner or account (and the ON DELETE SET NULL of users and accounts) still uses. About a tenth
of the database's time per imported row (bench/contacts_import.py).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _partial(column: str, *, partial: bool) -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_index(f"ix_contacts_{column}")
        where = sa.text(f"{column} IS NOT NULL") if partial else None
        batch.create_index(f"ix_contacts_{column}", [column], postgresql_where=where, sqlite_where=where)


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_index("ix_contacts_tenant_id")
    with op.batch_alter_table("contact_identities") as batch:
        batch.drop_index("ix_contact_identities_tenant_id")
    _partial("owner_id", partial=True)
    _partial("account_id", partial=True)


def downgrade() -> None:
    _partial("account_id", partial=False)
    _partial("owner_id", partial=False)
    with op.batch_alter_table("contact_identities") as batch:
        batch.create_index("ix_contact_identities_tenant_id", ["tenant_id"])
    with op.batch_alter_table("contacts") as batch:
        batch.create_index("ix_contacts_tenant_id", ["tenant_id"])
