"""Console-owned tables: saved views of list pages (a named filter/sort query per user)."""

from __future__ import annotations

import uuid

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TenantOwned, TimestampMixin


class SavedView(IdMixin, TimestampMixin, TenantOwned, Base):
    """A list page's query string saved under a name; ``shared`` views are seen by every user."""

    __tablename__ = "console_saved_views"

    user_id: Mapped[uuid.UUID] = mapped_column()
    page: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[str] = mapped_column(String(2000), default="")
    shared: Mapped[bool] = mapped_column(default=False)


Index("ix_console_saved_views_tenant_page", SavedView.tenant_id, SavedView.page)
