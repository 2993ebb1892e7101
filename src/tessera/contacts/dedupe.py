"""Identity normalisation and fuzzy duplicate scoring.

Exact duplicates are found through blind indexes of normalised identities; fuzzy suggestions
compare names (rapidfuzz token-set ratio, which also handles reordered CJK/Latin names), account,
city and phone tail, and give the reasons with the score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from phonenumbers import PhoneMetadata
from rapidfuzz import fuzz

from tessera.contacts.errors import InvalidEmail
from tessera.core.http.errors import InvalidInput
from tessera.core.phone import normalize_phone

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(raw: str, *, field: str = "email") -> str:
    value = raw.strip().lower()
    if len(value) > 320 or not _email_ok(value):
        raise InvalidEmail(f"'{raw}' is not a valid email address", field=field)
    return value


def _email_ok(value: str) -> bool:
    r"""``_EMAIL.match(value)``, answered with string methods when ``value`` is printable (about
    four times faster): every whitespace character but the space is unprintable, so a printable
    value without a space has no ``\s``; then it matches when the part after its first ``@`` has
    no other ``@`` and a ``.`` with a character on either side."""
    if not value.isprintable():
        return _EMAIL.match(value) is not None
    if " " in value:
        return False
    local, at, domain = value.partition("@")
    return bool(local) and bool(at) and "@" not in domain and "." in domain[1:-1]


class _FastMobiles:
    """The numbers of a region that phonenumbers certainly turns into ``+<country code><digits>``
    unchanged: ASCII digits only, a possible length of the region's mobile numbers, a full match
    of its general and mobile patterns (so ``is_valid_number`` is true), and nothing that
    ``parse`` would strip or read differently: no leading 0, no leading country code, no match
    of the national prefix for parsing (CN: carrier codes 1[12]xx, 179xx) or of the
    international prefix. Built from phonenumbers' own metadata, so it follows its updates.
    Anything else is left to phonenumbers (``tests/contacts/test_phone_fast_path.py`` checks
    the answers are the same, refusals included)."""

    def __init__(self, region: str) -> None:
        md = PhoneMetadata.metadata_for_region(region)
        assert md is not None and md.mobile is not None and md.general_desc is not None
        self.prefix = f"+{md.country_code}"
        self.lengths = frozenset(md.mobile.possible_length) & frozenset(md.general_desc.possible_length)
        # one pattern (one call): none of what parse strips, then the general and mobile patterns
        refused = ["0", str(md.country_code)]
        refused += [f"(?:{p})" for p in (md.national_prefix_for_parsing, md.international_prefix) if p]
        self.pattern = re.compile(
            "".join(f"(?!{r})" for r in refused)
            + f"(?=(?:{md.general_desc.national_number_pattern})\\Z)(?:{md.mobile.national_number_pattern})",
            re.ASCII,
        )

    def __call__(self, digits: str) -> bool:
        return len(digits) in self.lengths and digits.isascii() and self.pattern.fullmatch(digits) is not None


# Only CN: its country code belongs to no other region (with a shared code, is_valid_number
# picks the region by leading digits first) and it has no national prefix transform.
_FAST = {"CN": _FastMobiles("CN")}
# _FAST["CN"] as one call for 11 characters (its pattern, compiled ASCII-only, matches digits only)
_CN_MOBILE = _FAST["CN"].pattern.fullmatch if 11 in _FAST["CN"].lengths else (lambda raw: None)
# The layouts of a mainland mobile the fast path reads (anything else goes to phonenumbers):
# 11 digits, optionally as 3-4-4 groups split by one space or hyphen, optionally after +86.
_CN_LAYOUT = re.compile(r"(?:\+86[ -]?)?(\d{3})([ -]?)(\d{4})\2(\d{4})", re.ASCII)


def fast_phone(raw: str, region: str, *, field: str = "phone") -> str:
    """:func:`normalize_phone`'s answer, without the parser for plain mainland mobile numbers
    (the bulk of imports) in a few common layouts."""
    fast = _FAST.get(region)
    if fast is not None:
        m = _CN_LAYOUT.fullmatch(raw)
        if m is not None:
            digits = m.group(1) + m.group(3) + m.group(4)
            if fast(digits):
                return fast.prefix + digits
    return normalize_phone(raw, region, field=field)


_PHONE_CACHE: dict[tuple[str, str], str | tuple[type[InvalidInput], str]] = {}
_PHONE_CACHE_MAX = 200_000


def cached_phone(raw: str, region: str, *, field: str = "phone") -> str:
    """:func:`fast_phone` for bulk work: plain mainland mobiles (11 digits) are checked against
    phonenumbers' patterns without parsing, and whatever needs phonenumbers is remembered
    (results and refusals), so a file that repeats numbers, or a bad one, pays the parser once."""
    if len(raw) == 11 and region == "CN" and _CN_MOBILE(raw) is not None:
        return "+86" + raw
    hit = _PHONE_CACHE.get((raw, region))
    if hit is None:
        try:
            hit = fast_phone(raw, region, field=field)
        except InvalidInput as exc:  # (core.phone clears phonenumbers' frames of a refusal)
            hit = (type(exc), exc.message)
        if len(_PHONE_CACHE) >= _PHONE_CACHE_MAX:
            _PHONE_CACHE.clear()
        _PHONE_CACHE[(raw, region)] = hit
    if isinstance(hit, tuple):
        raise hit[0](hit[1], field=field)
    return hit


def normalize_identity(kind: str, raw: str, region: str, *, field: str | None = None) -> str:
    f = field or kind
    if kind == "phone":
        return fast_phone(raw, region, field=f)
    if kind == "email":
        return normalize_email(raw, field=f)
    value = raw.strip()
    if not value or len(value) > 200:
        raise InvalidInput(f"{kind} must be 1 to 200 characters", field=f)
    return value


@dataclass
class Candidate:
    id: object
    name: str
    account: str | None = None
    city: str | None = None
    phone_tail: str | None = None


@dataclass
class Suggestion:
    id: object
    score: int
    reasons: list[str] = field(default_factory=list)


def score(a: Candidate, b: Candidate) -> Suggestion:
    """0–100; name similarity dominates, account, city and phone tail add evidence."""
    reasons: list[str] = []
    name_score = fuzz.token_set_ratio(a.name.lower(), b.name.lower())
    total = name_score * 0.6
    if name_score >= 85:
        reasons.append(f"similar name ({int(name_score)})")
    if a.account and b.account:
        acc = fuzz.token_set_ratio(a.account.lower(), b.account.lower())
        if acc >= 85:
            total += 15
            reasons.append("same account")
    if a.city and b.city and a.city.strip().lower() == b.city.strip().lower():
        total += 10
        reasons.append("same city")
    if a.phone_tail and b.phone_tail and a.phone_tail == b.phone_tail:
        total += 15
        reasons.append("same phone ending")
    return Suggestion(b.id, min(100, round(total)), reasons)
