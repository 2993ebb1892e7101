"""``tessera worker``: a Typer app the main CLI mounts, and the function it calls."""

from __future__ import annotations

import typer

from tessera.core.jobs.worker import run_worker

app = typer.Typer(help="Run background job workers.")


@app.command("worker")
def worker(
    queues: str = typer.Option("default", help="Comma-separated queues; 'name:N' caps a queue at N."),
    concurrency: int = typer.Option(8, min=1, help="Jobs run at the same time by this process."),
    lease_seconds: float = typer.Option(60.0, min=1.0, help="Lease a job holds between heartbeats."),
) -> None:
    """Claim and run jobs until SIGTERM (running jobs finish first)."""
    run_worker([q for q in queues.split(",") if q], concurrency, lease_seconds=lease_seconds)


__all__ = ["app", "run_worker"]
