"""The phone fast paths of the import (``dedupe.cached_phone``, ``dedupe.fast_phone``) give
exactly phonenumbers' answer (``core.phone.normalize_phone``): the same E.164 number, or the
same refusal (type and message), for generated numbers of several regions."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tessera.contacts import dedupe
from tessera.core.phone import normalize_phone

REGIONS = ["CN", "US", "GB", "HK", "DE", "SG", "IN"]
DIGITS = "0123456789"
# Unicode digits phonenumbers reads as digits (full width, Arabic-Indic) and punctuation it skips
ODD = "０１３８٣ +-()./\u3000\xa0x#*"


def _answer(fn, raw: str, region: str) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(raw, region, field="phone"))
    except Exception as exc:  # the refusal: its type and message
        return ("refused", type(exc).__name__, str(getattr(exc, "message", exc)))


def _same(raw: str, region: str) -> None:
    want = _answer(normalize_phone, raw, region)
    assert _answer(dedupe.fast_phone, raw, region) == want, (raw, region)
    dedupe._PHONE_CACHE.clear()
    assert _answer(dedupe.cached_phone, raw, region) == want, (raw, region)
    assert _answer(dedupe.cached_phone, raw, region) == want, (raw, region)  # from the cache


def _mobile_like() -> st.SearchStrategy[str]:
    """Eleven digits starting with 1 (every mainland mobile prefix, valid or not), sometimes
    laid out as the fast path reads them or in other ways."""
    number = st.builds(
        lambda p, rest: "1" + p + rest,
        st.text(DIGITS, min_size=2, max_size=2),
        st.text(DIGITS, min_size=8, max_size=8),
    )
    layouts = st.sampled_from(
        [
            "{n}",
            "{a} {b} {c}",
            "{a}-{b}-{c}",
            "+86{n}",
            "+86 {n}",
            "+86-{a}-{b}-{c}",
            "{a} {b}-{c}",
            "0{n}",
            "86{n}",
            "+86 0{n}",
            "({a}) {b}{c}",
            " {n} ",
            "{n}x12",
            "{a}{b}",
        ]
    )
    return st.builds(lambda n, layout: layout.format(n=n, a=n[:3], b=n[3:7], c=n[7:]), number, layouts)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_mobile_like(), region=st.sampled_from(REGIONS))
@example(raw="14000000000", region="CN")  # 1[3-9] but not a mobile range phonenumbers accepts
@example(raw="16000000000", region="CN")
@example(raw="17912345678", region="CN")  # 179xx is a carrier code parse strips
@example(raw="17400512345", region="CN")  # 1740[0-5]: satellite numbers
@example(raw="17406123456", region="CN")
@example(raw="13800138000", region="CN")
@example(raw="+86 138 0013 8000", region="US")
def test_mobile_like_numbers_get_phonenumbers_answer(raw: str, region: str) -> None:
    _same(raw, region)


@settings(max_examples=1500, deadline=None)
@given(raw=st.text(DIGITS + ODD, max_size=18), region=st.sampled_from(REGIONS))
@example(raw="１３８００１３８０００", region="CN")  # full-width digits: normalised by phonenumbers
@example(raw="138٠٠١٣٨٠٠٠", region="CN")
def test_any_text_gets_phonenumbers_answer(raw: str, region: str) -> None:
    _same(raw, region)


@settings(max_examples=500, deadline=None)
@given(
    region=st.sampled_from(REGIONS),
    kind=st.sampled_from(["MOBILE", "FIXED_LINE"]),
    seed=st.integers(0, 2**32),
)
def test_example_numbers_and_their_neighbours_get_phonenumbers_answer(
    region: str, kind: str, seed: int
) -> None:
    """Real numbers of each region (phonenumbers' examples) with some digits changed."""
    ex = phonenumbers.example_number_for_type(region, getattr(phonenumbers.PhoneNumberType, kind))
    assert ex is not None
    national = str(ex.national_number)
    rnd = random.Random(seed)
    digits = list(national)
    for _ in range(rnd.randint(0, 3)):
        digits[rnd.randrange(len(digits))] = rnd.choice(DIGITS)
    mutated = "".join(digits)
    for raw in (mutated, f"+{ex.country_code}{mutated}", f"0{mutated}"):
        _same(raw, region)


@pytest.mark.parametrize("prefix", [f"1{p:03d}" for p in range(1000)][::7] + ["1740", "1610", "1790", "1100"])
def test_every_mainland_prefix_block(prefix: str) -> None:
    """Deterministic sweep over four-digit prefixes (one in seven, and the tricky ones)."""
    rnd = random.Random(prefix)
    for _ in range(4):
        _same(prefix + "".join(rnd.choice(DIGITS) for _ in range(7)), "CN")


def test_the_fast_path_is_taken_for_plain_mobiles() -> None:
    """The point of it: a plain mainland mobile never reaches the parser."""
    fast = dedupe._FAST["CN"]
    assert fast("13800138000") and fast("19912345678") and fast("17400012345")
    assert not fast("14000000000") and not fast("17912345678") and not fast("1380013800")
    assert not fast("１３８００１３８０００") and not fast("86138001380")


@pytest.mark.parametrize("raw", ["1200001", "+999 1234 5678", "12345"])
def test_a_refusal_leaves_no_cycle_holding_the_callers(raw: str) -> None:
    """phonenumbers.parse keeps the exception it caught in a local; the frames of that cycle
    must not keep the caller's locals (a whole import chunk) alive until a cyclic collection."""
    import gc
    import weakref

    class Chunk:
        pass

    def caller() -> weakref.ref[Chunk]:
        chunk = Chunk()  # a local of a frame below the parser, like the import's chunk
        try:
            dedupe.cached_phone(raw, "CN")
        except Exception:
            pass
        return weakref.ref(chunk)

    dedupe._PHONE_CACHE.clear()
    gc.disable()
    try:
        ref = caller()
        assert ref() is None  # freed by reference counting alone
    finally:
        gc.enable()
