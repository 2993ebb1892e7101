"""Console translations (Babel catalogues in ``console/i18n``) and locale-aware formatting.

The active locale is a context variable set per request from the user's preference, so
templates, components and Python code all translate through :func:`gettext`.
"""

from __future__ import annotations

import datetime as dt
import functools
from contextvars import ContextVar
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime as _fmt_datetime
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

LOCALES = ("en", "zh_Hans")
LOCALE_NAMES = {"en": "English", "zh_Hans": "简体中文"}
DIR = Path(__file__).parent / "i18n"

_locale: ContextVar[str] = ContextVar("tessera_console_locale", default="en")
_tz: ContextVar[str] = ContextVar("tessera_console_tz", default="UTC")


def normalise(locale: str | None) -> str:
    if not locale:
        return "en"
    if locale.lower().startswith("zh"):
        return "zh_Hans"
    return "en"


SRC = Path(__file__).resolve().parents[1]


def context_catalogues(locale: str) -> list[Path]:
    """The ``.po`` files contexts keep beside their pages: ``tessera/<context>/i18n/<locale>/*.po``.

    Each context (and each area of a large one) owns its own file, so pages added in parallel
    never edit a shared catalogue; they are merged over the console's compiled catalogue.
    """
    return sorted(SRC.glob(f"*/i18n/{locale}/*.po")) + sorted(SRC.glob(f"*/*/i18n/{locale}/*.po"))


@functools.cache
def translations(locale: str) -> NullTranslations:
    import io

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    base = Translations.load(str(DIR), [locale], domain="messages")
    if not isinstance(base, Translations):
        return base
    for path in context_catalogues(locale):
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        base.merge(Translations(fp=buf))
    return base


def activate(locale: str | None, timezone: str | None = None) -> str:
    loc = normalise(locale)
    _locale.set(loc)
    if timezone:
        _tz.set(timezone)
    return loc


def current_locale() -> str:
    return _locale.get()


def current_timezone() -> str:
    return _tz.get()


def gettext(message: str) -> str:
    return translations(_locale.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_locale.get()).ngettext(singular, plural, n)


_ = gettext


def babel_locale() -> Locale:
    return Locale.parse(_locale.get())


def format_datetime(value: dt.datetime | None, fmt: str = "medium") -> str:
    """A UTC datetime shown in the tenant's time zone and the user's locale."""
    if value is None:
        return "—"
    import zoneinfo

    return _fmt_datetime(value, fmt, tzinfo=zoneinfo.ZoneInfo(_tz.get()), locale=babel_locale())


def format_number(value: int | float | None) -> str:
    if value is None:
        return "—"
    return format_decimal(value, locale=babel_locale())
