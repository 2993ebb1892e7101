"""The Connect console pages, one module per area, each with its own ``router``.

Modules listed in ``PAGES`` are mounted in this order when they exist.
"""

from __future__ import annotations

from fastapi import FastAPI

from tessera.modules import load

PAGES = [
    "tessera.connect.views.messages",
    "tessera.connect.views.channels",
    "tessera.connect.views.routes",
    "tessera.connect.views.templates",
    "tessera.connect.views.compliance",
    "tessera.connect.views.inbound",
    "tessera.connect.views.verify",
    "tessera.connect.views.email",
    "tessera.connect.views.unsubscribe",
]


def mount(app: FastAPI) -> None:
    for mod in load(PAGES):
        app.include_router(mod.router)
