"""Process wiring of the messaging pipeline: the embedded gateway and the demo SMSC simulator
start and stop with the app (lifecycle hooks; both do nothing unless embedded workers are on)."""

from __future__ import annotations

from tessera.connect import demo, gateway
from tessera.core import lifecycle

for hook in (demo.start_simulator, gateway.start_embedded):
    if hook not in lifecycle.on_startup:
        lifecycle.startup(hook)
for hook in (gateway.stop_embedded, demo.stop_simulator):
    if hook not in lifecycle.on_shutdown:
        lifecycle.shutdown(hook)
