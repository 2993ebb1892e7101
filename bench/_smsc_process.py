"""The bundled SMSC simulator in a process of its own, as a remote SMSC is in production.

A benchmark that ran the simulator inside its own event loop (beside the API under test)
measured the simulator's stalls too: a starved API process answered submit_sm late. Here the
child process runs :class:`~tessera.connect.smpp.server.SmscSimulator` and reports over its
stdout, one JSON object per line:

- ``{"port": p, "nice": n}`` once listening (``nice``: the priority it runs at, see below);
- ``{"bound": n}`` whenever the number of bound sessions changes;
- ``{"d": destination, "t": time.time()}`` for each accepted submit_sm whose destination starts
  with one of the tracked prefixes (the arrival time is taken in the child, so the parent's
  reading delay is not part of it; ``time.time()`` is the same clock in both processes);
- ``{"submits": n, "duplicates": n}`` every half second and once more when it stops (SIGTERM).

The child asks for a higher scheduling priority (nice :data:`NICE`, when the OS allows it,
e.g. as root; else it runs at the default and says ``null``): it stands for a carrier's SMSC on
a machine of its own, so on a busy benchmark machine its wait for a CPU (which delays the
moment it reads a submit_sm and stamps its arrival) is not charged to the platform. It uses
little CPU (a few percent of one core under the bulk load), so this takes next to nothing from
the processes under test.

Parent side: ``async with RemoteSmsc(accounts, track=("86137",)) as smsc: …`` with ``port``,
``bound``, ``arrivals`` (destination → arrival time), ``submits``, ``duplicates`` and ``pid``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NICE = -10  # the child's scheduling priority (see the module docstring)


def _raise_priority() -> int | None:
    """Run this process at :data:`NICE`; the value applied, or None when not allowed."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    except PermissionError:
        return None
    return NICE


class RemoteSmsc:
    def __init__(self, accounts: Sequence[tuple[str, str]], *, track: Sequence[str] = ()) -> None:
        self.accounts = list(accounts)
        self.track = list(track)
        self.port = 0
        self.bound = 0
        self.submits = 0
        self.duplicates = 0
        self.arrivals: dict[str, float] = {}
        self.nice: int | None = None  # the child's scheduling priority (None: the default)
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopped = asyncio.Event()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        args = [sys.executable, str(Path(__file__).resolve())]
        for system_id, password in self.accounts:
            args += ["--account", f"{system_id}:{password}"]
        for prefix in self.track:
            args += ["--track", prefix]
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, cwd=ROOT, limit=1 << 20
        )
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._ready.wait(), 60)

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            async for line in self._proc.stdout:
                msg: dict[str, Any] = json.loads(line)
                if "d" in msg:
                    self.arrivals.setdefault(msg["d"], msg["t"])
                elif "bound" in msg:
                    self.bound = msg["bound"]
                elif "submits" in msg:
                    self.submits, self.duplicates = msg["submits"], msg["duplicates"]
                elif "port" in msg:
                    self.port, self.nice = msg["port"], msg.get("nice")
                    self._ready.set()
        finally:
            self._stopped.set()

    def bound_sessions(self) -> int:
        return self.bound

    async def stop(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self._stopped.wait(), 30)  # the final counts are read
        await self._proc.wait()

    async def __aenter__(self) -> RemoteSmsc:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _child(accounts: list[str], track: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator, SubmittedMessage

    out = sys.stdout
    prefixes = tuple(track)
    nice = _raise_priority()

    def emit(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")

    class Reporting(SmscSimulator):
        def _accept(self, msg: SubmittedMessage) -> None:
            super()._accept(msg)
            if prefixes and msg.destination.startswith(prefixes):
                emit({"d": msg.destination, "t": msg.submitted_at})

    async def run() -> None:
        sim = Reporting(
            SmscConfig(
                accounts=[SmscAccount(*a.split(":", 1)) for a in accounts], port=0, keep_messages=False
            )
        )
        await sim.start()
        emit({"port": sim.port, "nice": nice})
        out.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        bound, last, tick = -1, -1, 0
        while not stop.is_set():
            n = len(sim.bound_sessions())
            if n != bound:
                bound = n
                emit({"bound": n})
            tick += 1
            if tick % 10 == 0 and sim.stats_.submits != last:
                last = sim.stats_.submits
                emit({"submits": last, "duplicates": len(sim.duplicates())})
            out.flush()
            try:
                await asyncio.wait_for(stop.wait(), 0.05)
            except TimeoutError:
                pass
        await sim.stop()
        emit({"submits": sim.stats_.submits, "duplicates": len(sim.duplicates())})
        out.flush()

    asyncio.run(run())


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--account", action="append", default=[])
    ap.add_argument("--track", action="append", default=[])
    a = ap.parse_args()
    _child(a.account, a.track)
