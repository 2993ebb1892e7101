"""The email sender interface the kernel uses for password resets and invitations.

The messaging context installs a real SMTP-backed sender at start-up. Until one is
installed, :class:`LogEmailSender` writes the message to the log, and only in embedded
(demo) mode; in production mode sending without a configured sender is an error.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from tessera.settings import get_settings

log = structlog.get_logger("tessera.mail")


class EmailSender(Protocol):
    async def send(self, to: str, subject: str, text: str) -> None: ...


class LogEmailSender:
    async def send(self, to: str, subject: str, text: str) -> None:
        if get_settings().mode != "embedded":
            raise RuntimeError("no email sender configured in production mode")
        log.warning("email.logged_demo_only", to=to, subject=subject, text=text)


_sender: EmailSender = LogEmailSender()
outbox: list[tuple[str, str, str]] = []  # last messages, for tests and the demo console


def set_email_sender(sender: EmailSender) -> None:
    global _sender
    _sender = sender


async def send_email(to: str, subject: str, text: str) -> None:
    outbox.append((to, subject, text))
    del outbox[:-100]
    await _sender.send(to, subject, text)
