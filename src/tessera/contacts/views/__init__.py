"""The customer-data console pages, one module per area, each with its own ``router``.

Modules listed in ``PAGES`` are mounted in this order when they exist.
"""

from __future__ import annotations

from fastapi import FastAPI

from tessera.modules import load

PAGES = [
    "tessera.contacts.views.people",
    "tessera.contacts.views.accounts",
    "tessera.contacts.views.tags",
    "tessera.contacts.views.duplicates",
    "tessera.contacts.views.imports",
    "tessera.contacts.views.segments",
    "tessera.contacts.views.quality",
]


def mount(app: FastAPI) -> None:
    for mod in load(PAGES):
        app.include_router(mod.router)
