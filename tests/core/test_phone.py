"""core.phone: E.164 normalisation and carrier names, remembered per number."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.core.phone import InvalidPhone, _e164, carrier_name, normalize_phone


def _plain(raw: str, region: str) -> str | None:
    """What phonenumbers says, without the cache (None: refused)."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


NUMBERS = st.one_of(
    st.from_regex(r"\+?(86)?1[3-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"\+?[0-9 ()-]{3,18}", fullmatch=True),
    st.text(max_size=12),
)


@given(NUMBERS, st.sampled_from(["CN", "US", "GB"]))
def test_the_remembered_answer_is_phonenumbers_answer_asked_again(raw: str, region: str) -> None:
    expected = _plain(raw, region)
    for _ in range(2):  # the second answer comes from the cache
        if expected is None:
            with pytest.raises(InvalidPhone):
                normalize_phone(raw, region)
        else:
            assert normalize_phone(raw, region) == expected


def test_refusals_name_the_field_and_the_rule_every_time() -> None:
    for _ in range(2):
        with pytest.raises(InvalidPhone) as bad:
            normalize_phone("not a number", field="to")
        assert bad.value.field == "to" and "is not a phone number" in str(bad.value)
        with pytest.raises(InvalidPhone) as invalid:
            normalize_phone("+86 123", field="mobile")
        assert invalid.value.field == "mobile" and "is not a valid phone number" in str(invalid.value)


def test_a_number_asked_again_is_not_parsed_again() -> None:
    _e164.cache_clear()
    assert normalize_phone("13800138000") == "+8613800138000"
    assert normalize_phone("13800138000", field="to") == "+8613800138000"
    assert normalize_phone("138 0013 8000") == "+8613800138000"  # another text: parsed
    info = _e164.cache_info()
    assert (info.hits, info.misses) == (1, 2)
    assert carrier_name("+8613800138000") == carrier_name("+8613800138000") != ""
    assert carrier_name.cache_info().hits >= 1


def test_a_refusal_keeps_no_caller_alive() -> None:
    """phonenumbers.parse keeps the exception it caught in a local, a cycle whose frames would
    hold every caller's locals until a cyclic collection: the refusal clears them."""
    import gc
    import weakref

    class Chunk:
        pass

    def caller() -> weakref.ref[Chunk]:
        chunk = Chunk()
        with pytest.raises(InvalidPhone):
            normalize_phone("+999 1234 5678 x")
        return weakref.ref(chunk)

    _e164.cache_clear()
    gc.disable()
    try:
        assert caller()() is None  # freed by reference counting alone
    finally:
        gc.enable()
