"""Verification-code latency: POST /v1/verify returning → submit_sm arriving at the SMSC.

Starts a migrated database (``--db postgres``: a fresh database like ``bench/sms_throughput.py``,
the app connecting as ``tessera_app``; ``BENCH_DB_URL`` owner URL; or a temporary SQLite file),
the app in process (httpx ASGI transport), one gateway dispatcher and the bundled SMSC simulator
on loopback in a process of its own (``bench/_smsc_process.py``: a remote SMSC in production,
so a busy API process does not delay its answers, and at a raised scheduling priority when the
OS allows it, as on a machine of its own: ``smsc_nice`` says which); the simulator stamps each submit_sm's
arrival with ``time.time()`` and reports it back, and the latency is that minus the
``time.time()`` at which ``POST /v1/verify`` returned. Sends ``RATE`` verifications per second for ``SECONDS`` seconds (default 50/s for
60 s; ``python bench/otp_latency.py [rate] [seconds] [--db sqlite|postgres] [--bulk N]``), one
number per verification, and prints one JSON line:
{"bench":"otp_latency","rate":50,"seconds":60,"sent":N,"submitted":N,"p50_ms":...,"p99_ms":...,
 "max_ms":...,"post_p50_ms":...,"post_p99_ms":...,"bulk":...,"cpu_s":...}

Codes start once the gateway has bound every link (``gateway_start_s``).
``--gateway-process`` runs the dispatcher as its own ``tessera gateway`` process, as in
production (it is woken across processes by PostgreSQL ``NOTIFY``); by default it runs in this
process beside the API, as in the embedded mode. ``--unit-of-work-claim`` makes the gateway
claim codes through a unit of work (``BEGIN`` with the tenant, the claim, ``COMMIT``) instead of
in one round trip (``tessera.connect.code_claim``), for A/B runs; the JSON says which
(``code_claim``). On PostgreSQL codes are pushed to the gateway with their message
(``tessera.connect.push``; ``pushed`` in the JSON counts them); ``--no-push`` makes the gateway
claim them instead, for A/B runs.

``--bulk N`` runs the sms_throughput load at the same time: N notification messages posted in
batches of 10,000 through ``POST /v1/messages/batch`` (``--bulk-rate R``: paced at R per second
in batches of 1,000, like ``sms_throughput.py --rate``) on two more links of window 50, so the
verification lane competes with a bulk backlog for the same gateway, SMSC and database. The
bulk feed runs in a process of its own with its own API app, like ``sms_throughput.py`` beside
this bench: the codes' API process does not also build the bulk's 10,000-recipient requests
(in one process those held its event loop for seconds, so ``POST /v1/verify`` queued behind
them, which is the API's batch cost, not the verification lane's latency).

Where the time goes: the dispatcher stamps each code's stages (``Dispatcher(trace_file=…)``,
written when it stops) and ``stages`` gives p50, p99 and the mean over the slowest 1 % of codes
of: ``returned_to_wake`` (POST returning → the gateway told, negative when the NOTIFY came
first), ``wake_to_claim``, ``claim_to_claimed`` (the claim's transaction), ``claimed_to_worker``
(the link's worker takes it; with a worker idle to finish it, the claim writes the code's
submit_sm itself, and this is the time to that write) and ``worker_to_arrived`` (submit_sm
written and read by the SMSC);
with the one-round-trip claim, ``claim_to_claimed`` split into ``claim_to_rows`` (its round
trip, with the event-loop turn that reads the answer) and ``rows_to_claimed`` (the items built).
``p99_ms_by_10s``: the codes' p99 per 10 s of the run, by when their POST returned (where
the slow ones are; ``post_p99_ms_by_10s`` the same for the POST itself).
``gateway_loop_lag_ms``: how late a 5 ms sleep woke up in the gateway (its longest loop turns);
``over_20ms`` counts the wake-ups more than 20 ms late and ``over_20ms_busy_share`` is the share
of their lateness the gateway spent on the CPU (near 1: its own long stretches of work; near 0:
it waited for a CPU, the machine was busy). ``gateway_gc``: the garbage collector's pauses in
the gateway per generation (count, longest, total; ``cpu_max_ms``: the longest one's time on
the CPU, the rest of it waiting for one; ``collected``: objects found in reference cycles).
Both API processes tune the garbage collector once set up (``tessera.app.tune_gc``), as a
serving process's lifespan does (httpx's ASGI transport runs no lifespan).
``api_cpu_ms_per_code``: CPU of this process per accepted code (the API with its in-process
client; with the dispatcher in process, that too); ``gateway_cpu_s`` and ``bulk_feed_cpu_s``
are the other processes'; ``gateway_cpu_ms_per_code``: the gateway's CPU from the moment its
links are bound (its imports and start-up left out) to the end, per accepted code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_env(db: str) -> str | None:
    """Environment of a fresh database; returns the PostgreSQL database name to drop."""
    pg_name = None
    if db == "postgres":
        from bench.sms_throughput import _prepare_db

        url, owner, pg_name = _prepare_db("postgres", tempfile.mkdtemp())
        os.environ["TESSERA_DB_APP_ROLE"] = "tessera_app"
    else:
        url = owner = os.environ.get("BENCH_DB_URL") or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    os.environ.setdefault("TESSERA_DATA_DIR", tempfile.mkdtemp())
    os.environ["TESSERA_DATABASE_URL"] = url
    os.environ["TESSERA_MIGRATION_DATABASE_URL"] = owner
    os.environ.setdefault("TESSERA_SUBSCRIPTION_DEFAULT_PLAN", "enterprise")
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    os.environ["TESSERA_EMBEDDED_WORKERS"] = "false"
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        env=os.environ.copy(),
    )
    return pg_name


def _cpu_of(pid: int) -> float:
    from bench.sms_throughput import _cpu_of as cpu_of

    return cpu_of(pid)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 2) if s else float("nan")


class _Port:
    def __init__(self, port: int) -> None:
        self.port = port


async def _bulk_feed(n: int, port: int, rate: float | None) -> None:
    """Child process (``--bulk-feed``): the sms_throughput load through an API process of its own.

    Creates a tenant with two links of window 50 on the simulator at ``port``, prints ``ready``,
    then posts ``n`` notification messages in batches of 10,000 (``rate``: paced, a batch of
    1,000 every 1,000/rate s, like ``sms_throughput.py --rate``), and prints ``done``."""
    import httpx
    from tests.conftest import make_tenant
    from tests.connect.messaging.conftest import setup_sms

    from tessera.app import create_app, init_runtime, tune_gc
    from tessera.settings import Settings

    settings = Settings()
    init_runtime(settings)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://bulk", timeout=600) as client:
        world = await make_tenant(roles=("admin",))
        h = world.headers("admin")
        await setup_sms(client, world, _Port(port), links=2, window=50)  # type: ignore[arg-type]
        if settings.gc_tuning:
            tune_gc()
        print("ready", flush=True)
        sys.stdin.readline()  # go
        size = 1_000 if rate else 10_000
        t0 = time.monotonic()
        for b in range(0, n, size):
            rec = [{"to": f"+86138{(b + i):08d}"} for i in range(min(size, n - b))]
            r = await client.post(
                "/v1/messages/batch",
                json={"class": "notification", "body": "Your parcel is on its way", "recipients": rec},
                headers=h,
            )
            assert r.status_code == 202, r.text
            if rate:
                await asyncio.sleep(max(0.0, t0 + (b + len(rec)) / rate - time.monotonic()))
    print("done", round(time.process_time(), 2), flush=True)


def _p99_by_10s(samples: list[tuple[float, float]], seconds: float) -> list[float | None]:
    """p99 (ms) of ``(seconds into the run, value in seconds)`` samples per 10 s of the run
    (the 10 s without a sample left out)."""
    out = []
    for k in range(int(seconds // 10) + 1):
        these = [v for t, v in samples if k * 10 <= t < (k + 1) * 10]
        if these:
            out.append(pct(these, 0.99))
    return out


_CHILDREN: list[subprocess.Popen[bytes]] = []  # the gateway process


async def main(
    rate: float,
    seconds: float,
    bulk: int = 0,
    gateway_process: bool = False,
    bulk_rate: float = 0.0,
    direct_claim: bool = True,
    push: bool = True,
) -> dict[str, object]:
    import httpx
    from bench._smsc_process import RemoteSmsc
    from tests.conftest import make_tenant
    from tests.connect.messaging.conftest import setup_sms

    from tessera.app import create_app, init_runtime, tune_gc
    from tessera.connect.dispatcher import Dispatcher
    from tessera.settings import Settings

    settings = Settings()
    init_runtime(settings)
    app = create_app(settings)
    sim = RemoteSmsc([("acct0", "pw"), ("acct1", "pw")], track=("86137",))
    await sim.start()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        world = await make_tenant(roles=("admin",))
        await setup_sms(client, world, sim, window=50)  # type: ignore[arg-type]
        if settings.gc_tuning:  # what a serving process does once started (its lifespan, which
            tune_gc()  # httpx's ASGI transport does not run)
        cpu0 = time.process_time()
        feed = None
        if bulk:  # the sms_throughput load from an API process of its own (see the docstring)
            args = [sys.executable, str(Path(__file__).resolve()), "--bulk-feed", str(bulk)]
            args += ["--smsc-port", str(sim.port)]
            if bulk_rate:
                args += ["--bulk-rate", str(bulk_rate)]
            feed = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT
            )
            assert feed.stdout is not None and feed.stdin is not None
            assert (await feed.stdout.readline()).strip() == b"ready"
        dispatcher = None
        gw = None
        trace_file = os.path.join(tempfile.mkdtemp(), "trace.json")
        if gateway_process:  # the production layout: `tessera gateway` beside `tessera serve`
            code = (
                "from tessera.cli import run_service; from tessera.connect.gateway import run_gateway; "
                f"run_service(run_gateway(trace_file={trace_file!r}, direct_code_claim={direct_claim!r}, "
                f"push_codes={push!r}))"
            )
            gw = subprocess.Popen([sys.executable, "-c", code], env={**os.environ}, cwd=ROOT)
            _CHILDREN.append(gw)  # stopped whatever happens (see the end of the module)
        else:
            dispatcher = Dispatcher(trace_file=trace_file, direct_code_claim=direct_claim, push_codes=push)
            await dispatcher.start()
        # the first code once the gateway has bound every link (the code's and the bulk's), as
        # in production where the gateway runs before traffic: its start-up is not code latency
        started = time.monotonic()
        while sim.bound < 1 + (2 if bulk else 0):
            if (gw is not None and gw.poll() is not None) or time.monotonic() - started > 180:
                raise SystemExit("the gateway did not bind its links")
            await asyncio.sleep(0.1)
        gateway_start_s = time.monotonic() - started
        gw_cpu0 = _cpu_of(gw.pid) if gw is not None else None  # its start-up is not the codes' CPU
        if feed is not None:
            assert feed.stdin is not None
            feed.stdin.write(b"go\n")
            await feed.stdin.drain()
            await asyncio.sleep(2.0)  # the backlog is building when the codes start
        returned: dict[str, float] = {}
        post_times: list[float] = []
        post_at: list[tuple[float, float]] = []  # (seconds into the run, POST duration)
        wall0 = time.time()
        errors = 0
        error_codes: dict[int, int] = {}

        async def one(i: int) -> None:
            nonlocal errors
            to = f"+86137{i:08d}"
            t0 = time.time()
            r = await client.post(
                "/v1/verify", json={"to": to, "fallback_after_seconds": None}, headers=world.headers("admin")
            )
            t1 = time.time()
            if r.status_code != 201:
                errors += 1
                error_codes[r.status_code] = error_codes.get(r.status_code, 0) + 1
                return
            post_times.append(t1 - t0)
            post_at.append((t0 - wall0, t1 - t0))
            returned[to.lstrip("+")] = t1

        tasks = []
        start = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(1 for d in sim.arrivals if d in returned) >= len(returned):
                break
            await asyncio.sleep(0.1)
        backlog = await dispatcher.backlog() if dispatcher is not None else None
        feed_cpu = 0.0
        if feed is not None:  # its CPU: from /proc while it runs, else from its last line
            assert feed.stdout is not None
            feed_cpu = _cpu_of(feed.pid)
            if feed.returncode is None:
                feed.terminate()
            for line in (await feed.stdout.read()).decode().split():
                with contextlib.suppress(ValueError):
                    feed_cpu = max(feed_cpu, float(line))
            await feed.wait()
        gw_cpu = _cpu_of(gw.pid) if gw is not None else None
        if dispatcher is not None:
            await dispatcher.stop()
        if gw is not None:
            gw_cpu = _cpu_of(gw.pid)
            gw.terminate()
            gw.wait(timeout=30)
    smsc_cpu = _cpu_of(sim.pid)
    await sim.stop()
    cpu = time.process_time() - cpu0
    lat = [t - returned[d] for d, t in sim.arrivals.items() if d in returned]
    stages = _stages(trace_file, returned, sim.arrivals)
    return {
        "bench": "otp_latency",
        "rate": rate,
        "seconds": seconds,
        "sent": n,
        "accepted": len(returned),
        "errors": errors,
        "errors_by_status": error_codes,
        "submitted": len(lat),
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "max_ms": round(max(lat) * 1000, 2) if lat else None,
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None,
        # a starved API process answers after the gateway has already submitted the code
        "arrived_before_post_returned": sum(1 for x in lat if x < 0),
        # p99 of the codes per 10 s of the run (by when their POST returned): where the slow ones are
        "p99_ms_by_10s": _p99_by_10s(
            [(returned[d] - wall0, t - returned[d]) for d, t in sim.arrivals.items() if d in returned],
            seconds,
        ),
        "post_p50_ms": pct(post_times, 0.5),
        "post_p99_ms": pct(post_times, 0.99),
        # p99 of the POST per 10 s of the run: a backlog that builds up shows where it started
        "post_p99_ms_by_10s": _p99_by_10s(post_at, seconds),
        "db": "postgres" if os.environ["TESSERA_DATABASE_URL"].startswith("postgresql") else "sqlite",
        "bulk": bulk,
        "bulk_backlog_at_end": backlog,
        "bulk_submitted": sim.submits - len(sim.arrivals),
        "gateway": "process" if gateway_process else "in-process",
        "code_claim": "one round trip" if direct_claim else "unit of work",
        "push_codes": push,
        "gateway_start_s": round(gateway_start_s, 2),
        # this process: the API of the codes (and the in-process gateway without --gateway-process)
        "cpu_s": round(cpu, 1),
        "api_cpu_ms_per_code": round(1000 * cpu / max(1, len(returned)), 2),
        "gateway_cpu_s": round(gw_cpu, 1) if gw_cpu is not None else None,
        # the gateway's CPU from its links bound (start-up done) to the end, per accepted code
        # (with --bulk, the bulk's messages are in it too)
        "gateway_cpu_ms_per_code": round(1000 * (gw_cpu - gw_cpu0) / max(1, len(returned)), 2)
        if gw_cpu is not None and gw_cpu0 is not None
        else None,
        "bulk_feed_cpu_s": round(feed_cpu, 1) if bulk else None,
        "smsc_cpu_s": round(smsc_cpu, 1),
        "smsc_nice": sim.nice,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        **stages,
    }


STAGES = (  # (name, from, to): "returned" is POST /v1/verify returning, "arrived" the SMSC's stamp
    ("returned_to_wake", "returned", "wake"),  # negative: the NOTIFY came before the response
    ("wake_to_claim", "wake", "claim"),
    ("claim_to_claimed", "claim", "claimed"),
    # the one-round-trip claim only: its round trip, then the items built
    ("claim_to_rows", "claim", "rows"),
    ("rows_to_claimed", "rows", "claimed"),
    ("claimed_to_worker", "claimed", "worker"),
    ("worker_to_arrived", "worker", "arrived"),
)


def _stages(path: str, returned: dict[str, float], arrivals: dict[str, float]) -> dict[str, object]:
    """Per stage of a code (gateway trace, see ``Dispatcher(trace_file=…)``): p50/p99 in ms, and
    the mean of each stage over the slowest 1 % of codes (where the tail's time goes)."""
    try:
        trace = json.loads(Path(path).read_text())
    except OSError:
        return {"stages": None}
    rows = []
    for d, st in trace["stages"].items():
        if d in returned and d in arrivals and "claim" in st and "worker" in st:
            rows.append({**st, "returned": returned[d], "arrived": arrivals[d]})
    if not rows:
        return {"stages": None}
    rows.sort(key=lambda r: r["arrived"] - r["returned"])
    tail = rows[-max(1, len(rows) // 100) :]
    out: dict[str, object] = {}
    for name, a, b in STAGES:
        # a stage not stamped for every code (the claim's round trip): over the codes that have it
        vals = [r[b] - r[a] for r in rows if a in r and b in r]
        tail_vals = [r[b] - r[a] for r in tail if a in r and b in r]
        if not vals:
            continue
        out[name] = {
            "p50": pct(vals, 0.5),
            "p99": pct(vals, 0.99),
            "tail_mean": round(statistics.fmean(tail_vals) * 1000, 2) if tail_vals else None,
        }
    return {
        "stages": out,
        "urgent_claimed": sum(1 for r in rows if r.get("urgent")),
        # codes taken from their announcement (tessera.connect.push), not claimed
        "pushed": sum(1 for r in rows if r.get("pushed")),
        "gateway_stats": trace.get("stats"),
        "gateway_loop_lag_ms": trace.get("loop_lag_ms"),
        "gateway_gc": trace.get("gc"),
    }


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("rate", nargs="?", type=float, default=50.0)
    p.add_argument("seconds", nargs="?", type=float, default=60.0)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--bulk", type=int, default=0, help="messages of bulk load at the same time")
    p.add_argument(
        "--bulk-rate",
        type=float,
        default=0.0,
        help="offer the bulk load at this rate (batches of 1,000) instead of as fast as its API accepts",
    )
    p.add_argument("--bulk-feed", type=int, default=0, help=argparse.SUPPRESS)  # the child
    p.add_argument("--smsc-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument(
        "--gateway-process",
        action="store_true",
        help="run the dispatcher as its own `tessera gateway` process (production layout) instead "
        "of in this process beside the API",
    )
    p.add_argument(
        "--unit-of-work-claim",
        action="store_true",
        help="claim codes through a unit of work (three round trips) instead of in one (A/B)",
    )
    p.add_argument(
        "--no-push",
        action="store_true",
        help="the gateway claims codes instead of taking them pushed with their message (A/B)",
    )
    args = p.parse_args()
    from tessera.cli import run_service  # the event loop `tessera serve` and `tessera gateway` use

    if args.bulk_feed:  # the bulk feed's own process: the parent's environment names the database
        run_service(_bulk_feed(args.bulk_feed, args.smsc_port, args.bulk_rate or None))
        raise SystemExit(0)
    name = setup_env(args.db)
    try:
        print(
            json.dumps(
                run_service(
                    main(
                        args.rate,
                        args.seconds,
                        args.bulk,
                        args.gateway_process,
                        args.bulk_rate,
                        not args.unit_of_work_claim,
                        not args.no_push,
                    )
                )
            )
        )
    finally:
        for child in _CHILDREN:  # a failed run leaves no gateway behind
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=30)
        if name:
            from bench.sms_throughput import _drop_db

            _drop_db(name)
