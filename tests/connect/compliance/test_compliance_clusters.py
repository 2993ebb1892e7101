"""The fast normalisation splits text into plain parts and special clusters (a special character
and the non-starters after it); normalising part by part must equal the definition on the whole."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.connect.compliance.normalize import (
    _NONSTARTER_SEARCH,
    _SPECIAL_SPLIT,
    _normalize_exact,
    normalize,
    normalize_utf8,
)

_CHARS = list("aAß中國賭博網站-. ，【】、。Ａ１ﬁ㎏é") + [
    "\u0301",
    "\u0316",
    "\u0345",
    "\u0f73",
    "\u0344",
    "\u3099",
    "\u200b",
    "\U0001f600",
    "\U0001d400",
    "ǅ",
    "Ꭰ",
]


def _is_nonstarter(char: str) -> bool:
    return _NONSTARTER_SEARCH(char) is not None


@settings(max_examples=500, deadline=None)
@given(text=st.text(st.sampled_from(_CHARS), max_size=30))
def test_parts_are_plain_runs_and_special_clusters(text: str) -> None:
    parts = _SPECIAL_SPLIT(text)
    assert "".join(parts) == text
    for k in range(1, len(parts), 2):
        cluster = parts[k]
        # one character, then only non-starters: all of them (the next part starts otherwise)
        assert cluster and all(map(_is_nonstarter, cluster[1:])), parts
        following = "".join(parts[k + 1 :])
        assert not following or not _is_nonstarter(following[0]), parts
    assert "".join(map(_normalize_exact, parts)) == _normalize_exact(text)
    assert normalize(text) == _normalize_exact(text)


def test_traditional_text_splits_into_single_characters() -> None:
    parts = _SPECIAL_SPLIT("請回復退訂【賭博網站】")
    assert parts[1::2] == list("請復訂【賭網】")
    assert normalize_utf8("請回復退訂【賭博網站】") == "请回复退订赌博网站".encode()
    assert _SPECIAL_SPLIT("e\u0301\u0316【\u0345") == ["e", "\u0301\u0316", "", "【\u0345", ""]
