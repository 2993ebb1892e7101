"""Phone numbers: E.164 normalisation and carrier lookup (phonenumbers).

Both are remembered for the last few thousand numbers asked (per process): one send asks about
the same recipient several times (the request's validation, the compliance check, the route's
carrier): three normalisations and a carrier lookup took 72 us of CPU per recipient, 39 us
remembered."""

from __future__ import annotations

import functools
import traceback

import phonenumbers
from phonenumbers import carrier

from tessera.core.http.errors import InvalidInput


class InvalidPhone(InvalidInput):
    """The phone number is not valid."""

    code = "phone.invalid"


# What _e164 answers for a text that is not a phone number, or not a valid one.
_UNPARSABLE = 1
_INVALID = 2


def _forget_frames(exc: BaseException | None) -> None:
    """Clear the finished frames of ``exc`` and of the exceptions it was raised from.
    ``phonenumbers.parse`` keeps the exception it caught in a local: that frame and the
    exception's traceback form a reference cycle which, through ``f_back``, would keep the
    locals of every caller (a whole import chunk) alive until a cyclic collection."""
    while exc is not None:
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__context__


@functools.lru_cache(maxsize=8192)
def _e164(raw: str, region: str) -> str | int:
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        _forget_frames(exc)
        return _UNPARSABLE
    if not phonenumbers.is_valid_number(parsed):
        return _INVALID
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone(raw: str, region: str = "CN", *, field: str = "phone") -> str:
    """Return ``raw`` in E.164 or raise :class:`InvalidPhone` naming ``field``."""
    found = _e164(raw, region)
    if isinstance(found, str):
        return found
    if found == _UNPARSABLE:
        raise InvalidPhone(f"'{raw}' is not a phone number", field=field)
    raise InvalidPhone(f"'{raw}' is not a valid phone number", field=field)


@functools.lru_cache(maxsize=8192)
def carrier_name(e164: str, lang: str = "en") -> str:
    try:
        return carrier.name_for_number(phonenumbers.parse(e164), lang) or ""
    except phonenumbers.NumberParseException:
        return ""
