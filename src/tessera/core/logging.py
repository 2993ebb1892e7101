"""structlog JSON logging with request and tenant ids bound from the ambient context."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from tessera.core import context


def _add_context(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    req = context.current_request()
    if req.request_id and "request_id" not in event:
        event["request_id"] = req.request_id
    tid = context.current_tenant_id_or_none()
    if tid is not None and "tenant_id" not in event:
        event["tenant_id"] = str(tid)
    return event


_info_enabled = True


def log_info_enabled() -> bool:
    """Whether INFO lines are written: lets hot paths skip building a line nobody reads."""
    return _info_enabled


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    global _info_enabled
    _info_enabled = logging.getLevelName(level.upper()) <= logging.INFO
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
