"""``Utf8SourceMap`` (the matcher's slow path: hit spans from byte offsets, mapped part by part)
against ``normalize_with_offsets`` (every output character's span, computed for the whole text)."""

from __future__ import annotations

from itertools import accumulate

from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.connect.compliance.normalize import Utf8SourceMap, normalize_utf8, normalize_with_offsets

_TRICKY = list("aAß中國賭博-. ，【】Ａ１ﬁ㎏½\x00") + [
    "\u0301",
    "\u0345",
    "\u1e9e",
    "\u3000",
    "\u0f73",
    "\u200b",
    "\U0001f600",
    "\U0001d400",
    "\ud800",
    "ǅ",
    "Ꭰ",
]


def _check(text: str) -> None:
    source = Utf8SourceMap(text)
    norm = normalize_with_offsets(text)
    assert source.data == normalize_utf8(text)
    assert source.data == norm.text.encode("utf-8", "surrogatepass")
    # Byte offset of each normalised character, and of the end.
    at = [0, *accumulate(len(c.encode("utf-8", "surrogatepass")) for c in norm.text)]
    n = len(norm.text)
    for i in range(n):
        for j in range(i + 1, n + 1):
            assert source.span(at[i], at[j]) == norm.span(i, j), (text, i, j)


@settings(max_examples=400, deadline=None)
@given(text=st.text(st.sampled_from(_TRICKY), max_size=24))
def test_source_map_spans_equal_the_offset_normalisation_on_tricky_characters(text: str) -> None:
    _check(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=30))
def test_source_map_spans_equal_the_offset_normalisation(text: str) -> None:
    _check(text)


def test_source_map_examples() -> None:
    for text in (
        "",
        "abc",
        "A-b C",
        "加-微-信",
        "【赌博】",
        "賭 博",
        "ﬁ中",
        "c\u0301a",
        "a\x00【b",
        "Ａ\u0345\u0301",
    ):
        _check(text)
    source = Utf8SourceMap("【您好】加-微-信！")
    assert source.data == "您好加微信".encode()
    start = source.data.index("加".encode())
    assert source.span(start, len(source.data)) == (4, 9)
