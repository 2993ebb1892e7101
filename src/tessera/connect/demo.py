"""Demo mode: the demo tenant's SMS channel wired to the bundled SMSC simulator on loopback.

``setup(settings)`` creates (once) the channel, one link to the simulator, a route, an approved
signature and an approved verification template. The simulator itself is started in-process
by :func:`start_simulator` (a lifecycle start-up hook in embedded mode)."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import select

from tessera.connect.models import Channel, Link, RouteEntry, Signature, Template
from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator
from tessera.core import context
from tessera.core.db.session import switch_tenant, unit_of_work

SIM_SYSTEM_ID = "demo"
SIM_PASSWORD = "demo"


def simulator_port() -> int:
    return int(os.environ.get("TESSERA_SMSC_SIMULATOR_PORT", "2775"))


async def setup(settings: Any, *, tenant_slug: str = "demo", port: int | None = None) -> None:
    from tessera.core.tenancy import service as tenancy

    port = port or simulator_port()
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            tenant = await tenancy.get_by_slug(s, tenant_slug)
            if tenant is None:
                return
            await switch_tenant(s, tenant.id)
            ch = (
                await s.execute(select(Channel).where(Channel.kind == "sms", Channel.name == "Demo SMS"))
            ).scalar_one_or_none()
            if ch is None:
                ch = Channel(
                    kind="sms", name="Demo SMS", default_source="10690000", settings={"simulator": True}
                )
                s.add(ch)
                await s.flush()
                link = Link(
                    channel_id=ch.id,
                    name="SMSC simulator",
                    host="127.0.0.1",
                    port=port,
                    system_id=SIM_SYSTEM_ID,
                    password=SIM_PASSWORD,
                    window=50,
                    tps=None,
                )
                s.add(link)
                await s.flush()
                s.add(RouteEntry(channel_id=ch.id, carrier="*", link_id=link.id, priority=0, weight=100))
                s.add(Signature(text="Tessera", status="approved", is_default=True))
                s.add(
                    Template(
                        name="Verification code",
                        message_class="verification",
                        bodies={"sms": "Your verification code is {{code}}. It expires in 5 minutes."},
                        variables=["code"],
                        status="approved",
                    )
                )
            else:
                for link in (await s.execute(select(Link).where(Link.channel_id == ch.id))).scalars():
                    link.port = port
            await s.flush()
            await switch_tenant(s, None)


_simulator: SmscSimulator | None = None


async def start_simulator(app: Any) -> None:
    global _simulator
    settings = getattr(app.state, "settings", None)
    if settings is None or settings.mode != "embedded" or not settings.embedded_workers:
        return
    if os.environ.get("TESSERA_SMSC_SIMULATOR", "1") == "0" or _simulator is not None:
        return
    sim = SmscSimulator(
        SmscConfig(
            accounts=[SmscAccount(SIM_SYSTEM_ID, SIM_PASSWORD)],
            port=simulator_port(),
            receipt_delay=0.5,
            keep_messages=False,
        )
    )
    try:
        await sim.start()
    except OSError:  # the port is taken (another process runs the simulator)
        return
    _simulator = sim


async def stop_simulator(app: Any) -> None:
    global _simulator
    if _simulator is not None:
        await _simulator.stop()
        _simulator = None
