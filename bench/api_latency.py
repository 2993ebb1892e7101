"""API latency: authenticated ``GET /v1/users/{id}`` with 64 concurrent clients.

Goal on PostgreSQL: >= 2,000 requests/s with p99 <= 50 ms from one server process.

The database: ``--db sqlite`` (a fresh file in a temporary directory) or ``--db postgres`` (a
fresh database created with ``TESSERA_BENCH_PG_ADMIN_URL``, else ``TESSERA_TEST_PG_ADMIN_URL``,
default postgresql://postgres@127.0.0.1:55432/postgres, migrated by the owner and used by the
non-owner role ``tessera_app`` so row-level security is in force, dropped afterwards). The
default is ``TESSERA_BENCH_DB`` (``sqlite``). An explicit ``TESSERA_DATABASE_URL`` wins: it is
migrated (as ``TESSERA_MIGRATION_DATABASE_URL`` when given, granting ``TESSERA_DB_APP_ROLE``).

It creates a tenant, a user and an API key through the services, starts one ``tessera serve``
process, as production runs it (uvicorn on uvloop with httptools and one write per response,
no access log, log level warning), and drives it from a separate process: ``wrk`` when installed (one thread; a
Lua script sets the Authorization header), otherwise a raw asyncio HTTP/1.1 keep-alive client.

Prints one JSON line::

    {"bench":"api_latency","n":...,"seconds":...,"rps":...,"p50_ms":...,"p99_ms":...,
     "database":...,"concurrency":64,"server_cpu_ms_per_request":...,...}

``--pin`` (on a machine with two CPUs or more) runs the server on CPU 0 and the load generator on
the others, as if the clients were on another machine: the load generator then never takes the
server's CPU, and the figures show what the server does alone. Without it the scheduler places
both. The JSON line says which (``"pinned"``).

``server_cpu_ms_per_request`` is the server process's CPU time (user + system) during the
measured run divided by the requests served: a figure that other load on the machine barely
moves, unlike requests/s. ``BENCH_SECONDS`` (default 30) shortens the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 64

LUA = """
wrk.headers["Authorization"] = "Bearer %(key)s"
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"non2xx":%%d,"errors":%%d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
"""

CLIENT = r"""
import asyncio, json, sys, time
host, port, path, key, conc, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n").encode()
lat = []; bad = 0
async def worker(deadline):
    global bad
    r, w = await asyncio.open_connection(host, port)
    while time.perf_counter() < deadline:
        t = time.perf_counter(); w.write(req); await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"): n = int(line.split(b":")[1])
        await r.readexactly(n)
        lat.append(time.perf_counter() - t)
        if not head.startswith(b"HTTP/1.1 200"): bad += 1
    w.close()
async def main():
    start = time.perf_counter(); deadline = start + secs
    await asyncio.gather(*(worker(deadline) for _ in range(conc)))
    dur = time.perf_counter() - start
    lat.sort()
    print("WRKJSON " + json.dumps({"requests": len(lat), "duration_us": int(dur * 1e6),
        "p50_us": int(lat[len(lat) // 2] * 1e6), "p99_us": int(lat[int(len(lat) * 0.99)] * 1e6),
        "non2xx": bad, "errors": 0}))
asyncio.run(main())
"""


DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:55432/postgres"


def _pg_admin() -> str:
    return (
        os.environ.get("TESSERA_BENCH_PG_ADMIN_URL")
        or os.environ.get("TESSERA_TEST_PG_ADMIN_URL")
        or DEFAULT_PG_ADMIN
    )


def _pg_admin_sql(sql: str) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(
        _pg_admin().replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with eng.connect() as c:
        c.execute(text(sql))
    eng.dispose()


def _create_pg_database() -> tuple[str, str, str]:
    """A fresh database: (app URL as tessera_app, owner URL, name)."""
    name = f"tessera_bench_{uuid.uuid4().hex[:8]}"
    _pg_admin_sql(f'CREATE DATABASE "{name}"')
    base = _pg_admin().rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    host = base.split("@", 1)[1]
    return f"postgresql+psycopg://tessera_app:tessera_app@{host}/{name}", f"{base}/{name}", name


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _migrate(env: dict[str, str]) -> None:
    mig = {
        **env,
        "TESSERA_MIGRATION_DATABASE_URL": env.get("TESSERA_MIGRATION_DATABASE_URL")
        or env["TESSERA_DATABASE_URL"],
    }
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        check=True,
        cwd=ROOT,
        env=mig,
        capture_output=True,
    )


async def _seed() -> tuple[uuid.UUID, str]:
    from tessera.app import init_runtime
    from tessera.core import context
    from tessera.core.db.session import get_database, unit_of_work
    from tessera.core.identity import auth, service
    from tessera.core.identity.auth import build_principal
    from tessera.core.identity.repository import RoleRepository
    from tessera.core.identity.schemas import ApiKeyCreate, UserCreate
    from tessera.core.tenancy import service as tenancy
    from tessera.core.tenancy.schemas import TenantCreate
    from tessera.settings import get_settings

    init_runtime(get_settings())
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            await tenancy.create_tenant(s, TenantCreate(name="Bench", slug=slug))
            roles = {r.key: r for r in await RoleRepository(s).all_roles()}
            admin = await service.create_user(
                s,
                UserCreate(
                    email=f"admin@{slug}.example.com",
                    name="Bench Admin",
                    role_id=roles["admin"].id,
                    password="bench-password-1",
                    phone="13800138000",
                ),
            )
            target = await service.create_user(
                s,
                UserCreate(
                    email=f"member@{slug}.example.com",
                    name="Bench Member",
                    role_id=roles["member"].id,
                    phone="13900139000",
                ),
            )
            _key, raw = await auth.create_api_key(
                s, ApiKeyCreate(name="bench"), await build_principal(s, admin)
            )
    await get_database().dispose()
    return target.id, raw


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


SERVER_CPUS: set[int] | None = None  # --pin: the server's CPUs and the load generator's
CLIENT_CPUS: set[int] | None = None


def _pinned(cpus: set[int] | None) -> Any:
    """A ``preexec_fn`` putting the child on ``cpus`` (None: leave it to the scheduler)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _drive(port: int, path: str, key: str, seconds: int, workdir: Path) -> dict[str, int]:
    if shutil.which("wrk"):
        script = workdir / "auth.lua"
        script.write_text(LUA % {"key": key})
        cmd = [
            "wrk",
            "-t1",
            f"-c{CONCURRENCY}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ]
    else:
        cmd = [
            sys.executable,
            "-c",
            CLIENT,
            "127.0.0.1",
            str(port),
            path,
            key,
            str(CONCURRENCY),
            str(seconds),
        ]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, preexec_fn=_pinned(CLIENT_CPUS)
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    result: dict[str, int] = json.loads(line[len("WRKJSON ") :])
    result["wrk"] = int(cmd[0] == "wrk")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--db", choices=("sqlite", "postgres"), default=os.environ.get("TESSERA_BENCH_DB", "sqlite")
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run the server on CPU 0 and the load generator on the other CPUs",
    )
    args = parser.parse_args()
    global SERVER_CPUS, CLIENT_CPUS
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) >= 2:
        SERVER_CPUS, CLIENT_CPUS = {cpus[0]}, set(cpus[1:])
    seconds = int(os.environ.get("BENCH_SECONDS", "30"))
    workdir = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    env = dict(os.environ)
    pg_name: str | None = None
    if "TESSERA_DATABASE_URL" not in env:
        if args.db == "postgres":
            app_url, owner_url, pg_name = _create_pg_database()
            env.update(
                TESSERA_DATABASE_URL=app_url,
                TESSERA_MIGRATION_DATABASE_URL=owner_url,
                TESSERA_DB_APP_ROLE="tessera_app",
            )
        else:
            env["TESSERA_DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    env.setdefault("TESSERA_DATA_DIR", str(workdir / "data"))
    env.update(
        TESSERA_LOG_LEVEL="WARNING",
        TESSERA_EMBEDDED_WORKERS="false",
        TESSERA_RATE_LIMIT_PER_KEY=str(10**9),
        TESSERA_RATE_LIMIT_PER_IP=str(10**9),
    )
    env.setdefault("TESSERA_ARGON2_TIME_COST", "1")
    env.setdefault("TESSERA_ARGON2_MEMORY_COST", "1024")
    env.setdefault("TESSERA_ARGON2_PARALLELISM", "1")
    os.environ.update(env)
    try:
        r, cpu = _run(env, seconds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if pg_name is not None:
            _pg_admin_sql(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    url = env["TESSERA_DATABASE_URL"]
    dur = r["duration_us"] / 1e6
    db = "postgresql" if url.startswith("postgresql") else "sqlite"
    print(
        json.dumps(
            {
                "bench": "api_latency",
                "n": r["requests"],
                "seconds": round(dur, 2),
                "rps": round(r["requests"] / dur, 1),
                "p50_ms": round(r["p50_us"] / 1000, 2),
                "p99_ms": round(r["p99_us"] / 1000, 2),
                "database": db,
                "db": db,
                "concurrency": CONCURRENCY,
                "requests": r["requests"],
                "server_cpu_ms_per_request": (
                    round(cpu * 1000 / r["requests"], 4) if cpu is not None and r["requests"] else None
                ),
                "non_2xx": r["non2xx"],
                "socket_errors": r["errors"],
                "load_generator": "wrk" if r["wrk"] else "asyncio",
                "pinned": SERVER_CPUS is not None,
            }
        )
    )


def _run(env: dict[str, str], seconds: int, workdir: Path) -> tuple[dict[str, int], float | None]:
    """Migrate, seed, start the server, warm it up and measure; returns the load generator's
    figures and the server's CPU seconds during the measured run."""
    _migrate(env)
    user_id, key = asyncio.run(_seed())
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        preexec_fn=_pinned(SERVER_CPUS),
    )
    try:
        _wait_ready(port, server)
        path = f"/v1/users/{user_id}"
        _drive(port, path, key, 2, workdir)  # warm-up: caches, pool, JIT-free but allocator-warm
        cpu0 = _cpu_seconds(server.pid)
        r = _drive(port, path, key, seconds, workdir)
        cpu1 = _cpu_seconds(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=20)
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return r, cpu


if __name__ == "__main__":
    main()
