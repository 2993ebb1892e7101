"""The messaging gateway process: ``tessera gateway`` runs :func:`run_gateway`; in embedded mode
the app runs one dispatcher in-process (:func:`start_embedded` / :func:`stop_embedded`,
registered with :mod:`tessera.core.lifecycle` by ``tessera.connect.tasks``). Both also run the
bounce mailbox (:func:`tessera.connect.email.dsn.start_bounce_mailbox`) when
``TESSERA_BOUNCE_SMTP_PORT`` is set, and stop it before the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from tessera.connect.dispatcher import Dispatcher
from tessera.connect.email.dsn import BounceMailbox, start_bounce_mailbox

log = logging.getLogger(__name__)


async def run_gateway(settings: Any = None, *, stop: asyncio.Event | None = None, **options: Any) -> None:
    """Run a dispatcher until SIGTERM/SIGINT (or ``stop`` is set); options go to :class:`Dispatcher`."""
    from tessera.app import init_runtime
    from tessera.migrations.models import load_all
    from tessera.settings import get_settings

    settings = settings or get_settings()
    load_all()  # every model mapped, so foreign-key column types resolve
    init_runtime(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    dispatcher = Dispatcher(**options)
    await dispatcher.start()
    if getattr(settings, "gc_tuning", True):
        # what start-up built is frozen out of the collector's sight and young collections run
        # less often, as in the API process: at the default threshold a full collection walked
        # the gateway's whole heap (claims in hand, recent carrier ids) every few hundred messages
        from tessera.app import tune_gc

        tune_gc()
    log.info("gateway %s started", dispatcher.id)
    try:
        bounces = await start_bounce_mailbox(settings)  # TESSERA_BOUNCE_SMTP_PORT set
        try:
            await stop.wait()
        finally:
            if bounces is not None:
                await bounces.stop()
    finally:
        await dispatcher.stop()
        log.info("gateway %s stopped", dispatcher.id)


async def start_embedded(app: Any) -> None:
    settings = getattr(app.state, "settings", None)
    if settings is None or not settings.embedded_workers:
        return
    dispatcher = Dispatcher()
    await dispatcher.start()
    app.state.connect_gateway = dispatcher
    app.state.bounce_mailbox = await start_bounce_mailbox(settings)  # TESSERA_BOUNCE_SMTP_PORT set


async def stop_embedded(app: Any) -> None:
    bounces: BounceMailbox | None = getattr(app.state, "bounce_mailbox", None)
    if bounces is not None:
        await bounces.stop()
        app.state.bounce_mailbox = None
    dispatcher: Dispatcher | None = getattr(app.state, "connect_gateway", None)
    if dispatcher is not None:
        await dispatcher.stop()
        app.state.connect_gateway = None


def main() -> None:
    """Entry point: ``python -m tessera.connect.gateway``."""
    asyncio.run(run_gateway())


if __name__ == "__main__":
    main()
