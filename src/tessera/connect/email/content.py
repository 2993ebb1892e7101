"""Rendering the parts of an email message at send time: subject, text and HTML share variables.

The same rules as :func:`tessera.connect.service.templates.render` (every placeholder needs a
value, every value a placeholder), checked over the three parts together; values filled into
the HTML part are HTML-escaped. The rendered subject and HTML travel in the message's variables
under ``$email`` (see :mod:`tessera.connect.email.pipeline`).
"""

from __future__ import annotations

import html as html_lib
from typing import Any

from tessera.connect.errors import MessageInvalid
from tessera.connect.service.templates import VARIABLE

__all__ = ["EMAIL_VARIABLES_KEY", "render_email_parts"]

EMAIL_VARIABLES_KEY = "$email"


def render_email_parts(
    body: str,
    subject: str | None,
    html: str | None,
    variables: dict[str, str],
    *,
    field: str = "variables",
) -> tuple[str, dict[str, Any]]:
    """The rendered text and the variables to store (with ``$email``: subject and HTML)."""
    if subject is None or not subject.strip():
        raise MessageInvalid("an email needs a subject", field="subject", rule="required")
    wanted = set(VARIABLE.findall(body)) | set(VARIABLE.findall(subject))
    if html is not None:
        wanted |= set(VARIABLE.findall(html))
    for name in variables:
        if name not in wanted:
            raise MessageInvalid(
                f"variable '{name}' is not used by the message",
                field=f"{field}.{name}",
                rule="unknown_variable",
            )
    for name in wanted:
        if name not in variables:
            raise MessageInvalid(
                f"variable '{name}' has no value", field=f"{field}.{name}", rule="missing_variable"
            )
    text = VARIABLE.sub(lambda m: variables[m.group(1)], body)
    rendered_subject = " ".join(VARIABLE.sub(lambda m: variables[m.group(1)], subject).split())
    rendered_html = (
        VARIABLE.sub(lambda m: html_lib.escape(variables[m.group(1)]), html) if html is not None else None
    )
    return text, {**variables, EMAIL_VARIABLES_KEY: {"subject": rendered_subject, "html": rendered_html}}
