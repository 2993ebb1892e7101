"""``tessera backup create|list|restore|prune``."""

from __future__ import annotations

import datetime as dt
import json

import typer

from tessera.core.backup import service
from tessera.settings import get_settings

app = typer.Typer(help="Encrypted database backups: create, list, restore, prune.", no_args_is_help=True)


@app.command()
def create() -> None:
    """Snapshot the database into <data dir>/backups."""
    path = service.create_backup(get_settings())
    typer.echo(str(path))


@app.command("list")
def list_() -> None:
    for b in service.list_backups(get_settings()):
        total = sum(b["tables"].values())
        typer.echo(f"{b['created_at']}  {b['db_kind']:<10}  {b['size']:>12} B  {total:>10} rows  {b['name']}")


@app.command()
def restore(
    at: str = typer.Option(
        ..., "--at", help="Restore the newest backup taken on or before this date (YYYY-MM-DD)."
    ),
    target: str = typer.Option(
        ..., "--target", help="SQLite: a new file path. PostgreSQL: a new database name."
    ),
) -> None:
    """Restore into a new database and verify checksum, row counts and audit chains."""
    try:
        day = dt.date.fromisoformat(at)
    except ValueError:
        raise typer.BadParameter("must be a date such as 2026-11-21", param_hint="--at") from None
    report = service.restore_backup(get_settings(), day, target)
    typer.echo(
        json.dumps(
            {
                "backup": report.backup,
                "target": report.target,
                "ok": report.ok,
                "audit_rows_verified": report.audit,
                "problems": report.problems,
            },
            indent=2,
        )
    )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def prune(
    keep_daily: int = typer.Option(service.KEEP_DAILY, help="Newest backup of each of the last N days."),
    keep_weekly: int = typer.Option(service.KEEP_WEEKLY, help="Newest backup of each of the last M weeks."),
) -> None:
    for name in service.prune_backups(get_settings(), keep_daily=keep_daily, keep_weekly=keep_weekly):
        typer.echo(f"deleted {name}")
