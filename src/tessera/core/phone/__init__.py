"""Phone numbers: E.164 normalisation and carrier lookup (phonenumbers)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import carrier

from tessera.core.http.errors import InvalidInput


class InvalidPhone(InvalidInput):
    """The phone number is not valid."""

    code = "phone.invalid"


def normalize_phone(raw: str, region: str = "CN", *, field: str = "phone") -> str:
    """Return ``raw`` in E.164 or raise :class:`InvalidPhone` naming ``field``."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise InvalidPhone(f"'{raw}' is not a phone number", field=field) from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone(f"'{raw}' is not a valid phone number", field=field)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def carrier_name(e164: str, lang: str = "en") -> str:
    try:
        return carrier.name_for_number(phonenumbers.parse(e164), lang) or ""
    except phonenumbers.NumberParseException:
        return ""
