from __future__ import annotations

import random
import string
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.connect.compliance import (
    Action,
    Matcher,
    MatcherCache,
    Verdict,
    WordEntry,
    is_opt_out,
    is_separator,
    normalize_with_offsets,
)
from tessera.connect.compliance.normalize import (
    TRADITIONAL_TO_SIMPLIFIED,
    normalize,
    normalize_utf8,
    normalize_utf8_joined,
)

WORDS = [
    WordEntry("加微信", "contact", Action.HOLD),
    WordEntry("赌博", "gambling", Action.BLOCK),
    WordEntry("傻瓜", "abuse", Action.REPLACE, "**"),
    WordEntry("viagra", "spam", Action.BLOCK),
    WordEntry("ass", "abuse", Action.REPLACE, whole_word=True),
    WordEntry("idiot", "abuse", Action.REPLACE),
]


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(WORDS)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("加-微-信", "加微信"),
        ("加 微 信", "加微信"),
        ("a.b.c", "abc"),
        ("Ａ\u200bＢ\u200dＣ", "abc"),
        ("ＶＩＡＧＲＡ！", "viagra"),
        ("賭博網站", "赌博网站"),
        ("退訂", "退订"),
        ("c\u0301", "c"),
        ("【优惠】😀", "优惠"),
        ("Straße", "strasse"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected
    assert normalize_with_offsets(raw).text == expected


def test_separator_predicate() -> None:
    assert all(is_separator(c) for c in "-. _\u200b、。【】😀")
    assert not any(is_separator(c) for c in "a1中Ω")


def test_t2s_table_is_stable() -> None:
    assert len(TRADITIONAL_TO_SIMPLIFIED) > 500
    for trad, simp in TRADITIONAL_TO_SIMPLIFIED.items():
        assert normalize(trad) == simp
        assert normalize(simp) == simp


def test_offsets_point_to_original_span() -> None:
    text = "请加-微-信哦"
    norm = normalize_with_offsets(text)
    start = norm.text.index("加微信")
    assert norm.span(start, start + 3) == (1, 6)


def test_scan_hit_spans_and_verdicts(matcher: Matcher) -> None:
    result = matcher.scan("请加-微-信 abc")
    assert result.verdict is Verdict.HOLD
    (hit,) = result.hits
    assert (hit.word, hit.category, hit.start, hit.end, hit.matched) == (
        "加微信",
        "contact",
        1,
        6,
        "加-微-信",
    )

    assert matcher.scan("賭 博 and 加微信").verdict is Verdict.BLOCK  # block beats hold
    clean = matcher.scan("hello world")
    assert clean.hits == () and clean.verdict is Verdict.ALLOW and clean.replaced_text == "hello world"


def test_replace_uses_original_span(matcher: Matcher) -> None:
    result = matcher.scan("你是傻 瓜吗, I.D.I.O.T!")
    assert result.verdict is Verdict.ALLOW
    assert result.replaced_text == "你是**吗, *.*.*.*.*!"
    assert {h.category for h in result.hits} == {"abuse"}


def test_whole_word(matcher: Matcher) -> None:
    assert matcher.scan("a class act").hits == ()
    assert matcher.scan("you A.S.S!").replaced_text == "you *.*.*!"
    assert matcher.scan("你个ass").hits  # CJK neighbours do not count as word characters


def test_strongest_action_wins_for_same_word() -> None:
    m = Matcher([WordEntry("spam", "a", Action.REPLACE), WordEntry("SPAM", "b", Action.BLOCK)])
    assert len(m) == 1
    assert m.scan("s-p-a-m").verdict is Verdict.BLOCK


def test_empty_word_rejected_and_empty_list() -> None:
    with pytest.raises(ValueError):
        Matcher([WordEntry("---", "x", Action.BLOCK)])
    assert Matcher([]).scan("anything").verdict is Verdict.ALLOW


def test_matcher_cache_rebuilds_on_version_change() -> None:
    cache = MatcherCache([WordEntry("global", "g", Action.BLOCK)], global_version=1)
    loads: list[str] = []

    def loader(words: list[WordEntry]) -> Callable[[], list[WordEntry]]:
        def load() -> list[WordEntry]:
            loads.append("x")
            return words

        return load

    m1 = cache.get("t1", 1, loader([WordEntry("tenantword", "t", Action.HOLD)]))
    assert m1.scan("GLOBAL").verdict is Verdict.BLOCK
    assert m1.scan("tenant word").verdict is Verdict.HOLD
    assert cache.get("t1", 1, loader([])) is m1 and len(loads) == 1
    m2 = cache.get("t1", 2, loader([WordEntry("other", "t", Action.HOLD)]))
    assert m2 is not m1 and m2.scan("tenant word").verdict is Verdict.ALLOW
    # other tenants do not see t1's words
    assert cache.get("t2", 1, loader([])).scan("other").verdict is Verdict.ALLOW
    # a tenant list cannot weaken a global block
    weak = cache.get("t3", 1, loader([WordEntry("global", "t", Action.REPLACE)]))
    assert weak.scan("global").verdict is Verdict.BLOCK
    # a new global version rebuilds every tenant lazily
    cache.set_global([WordEntry("newglobal", "g", Action.HOLD)], version=2)
    m3 = cache.get("t1", 2, loader([WordEntry("other", "t", Action.HOLD)]))
    assert m3 is not m2 and m3.scan("new global").verdict is Verdict.HOLD
    assert cache.get(None, 0, loader([])).scan("global").verdict is Verdict.ALLOW


def test_matcher_cache_evicts_lru() -> None:
    cache = MatcherCache(max_tenants=2)
    for tenant in ("a", "b", "c"):
        cache.get(tenant, 1, lambda: [WordEntry("x1", "c", Action.HOLD)])
    assert len(cache) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TD", True),
        (" td ", True),
        ("Stop!", True),
        ("退订", True),
        ("退訂", True),
        ("ＵＮＳＵＢＳＣＲＩＢＥ", True),
        ("S T O P", True),
        ("please stop", False),
        ("TD优惠", False),
        ("", False),
    ],
)
def test_is_opt_out(text: str, expected: bool) -> None:
    assert is_opt_out(text) is expected


def test_is_opt_out_custom_keywords() -> None:
    assert is_opt_out("cancel", keywords=("CANCEL",))
    assert not is_opt_out("TD", keywords=("CANCEL",))


# --- properties ----------------------------------------------------------------------------

_SEPARATORS = list("-. *_|/\\,、。·・~") + [
    "\u200b",
    "\u200c",
    "\u200d",
    "\ufeff",
    "\u3000",
    "😀",
    "\u00a0",
]
_ZH = "加微信赌博发票代开贷款验证码银行优惠退订刷单兼职彩票"
_word_chars = st.sampled_from(string.ascii_letters + string.digits + _ZH + "".join(TRADITIONAL_TO_SIMPLIFIED))
_words = st.text(_word_chars, min_size=2, max_size=6)


def _full_width(ch: str) -> str:
    return chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch


@st.composite
def _obfuscated(draw: st.DrawFn, word: str) -> str:
    out: list[str] = []
    for ch in word:
        form = draw(st.sampled_from(["same", "upper", "lower", "full"]))
        if form == "upper":
            ch = ch.upper()
        elif form == "lower":
            ch = ch.lower()
        elif form == "full":
            ch = _full_width(ch)
        out.append(ch)
        out.append(draw(st.text(st.sampled_from(_SEPARATORS), max_size=3)))
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    word=_words,
    prefix=st.text(max_size=30),
    suffix=st.text(max_size=30),
)
def test_obfuscation_never_hides_a_listed_word(
    data: st.DataObject, word: str, prefix: str, suffix: str
) -> None:
    matcher = Matcher([WordEntry(word, "c", Action.BLOCK)])
    text = prefix + data.draw(_obfuscated(word)) + suffix
    result = matcher.scan(text)
    assert result.verdict is Verdict.BLOCK, (word, text)
    assert any(h.word == word for h in result.hits)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_fast_and_offset_normalisation_agree(text: str) -> None:
    norm = normalize_with_offsets(text)
    assert norm.text == normalize(text)
    assert len(norm.starts) == len(norm.ends) == len(norm.text)
    assert all(0 <= s < e <= len(text) for s, e in zip(norm.starts, norm.ends, strict=True))
    assert list(norm.starts) == sorted(norm.starts)


@settings(max_examples=200, deadline=None)
@given(word=_words, prefix=st.text(max_size=20), suffix=st.text(max_size=20))
def test_replace_rewrites_only_the_span(word: str, prefix: str, suffix: str) -> None:
    matcher = Matcher([WordEntry(word, "c", Action.REPLACE, "<X>")])
    result = matcher.scan(prefix + word + suffix)
    assert result.hits
    assert "<X>" in result.replaced_text


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=60))
def test_fast_normalisation_equals_the_definition(text: str) -> None:
    from tessera.connect.compliance.normalize import _normalize_exact

    assert normalize(text) == _normalize_exact(text)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(
        st.sampled_from(
            list("aAß中國賭博-. ")
            + ["\u0301", "\u0345", "\u1e9e", "\uff21", "\u3000", "\u0f73", "\U0001f600", "ǅ", "Ꭰ"]
        ),
        max_size=40,
    )
)
def test_fast_normalisation_equals_the_definition_on_tricky_characters(text: str) -> None:
    from tessera.connect.compliance.normalize import _normalize_exact

    assert normalize(text) == _normalize_exact(text)
    norm = normalize_with_offsets(text)
    assert norm.text == normalize(text)
    assert all(0 <= s < e <= len(text) for s, e in zip(norm.starts, norm.ends, strict=True))


# --- the engine against the definition -------------------------------------------------------

_KEY_CHARS = "abAB中国國赌賭博ßﬁ"
_TEXT_CHARS = list(_KEY_CHARS + "-. ，Ａ") + ["\u200b", "\u0301", "\U0001f600", "\x00"]


def _definition_hits(words: list[str], text: str) -> set[tuple[str, int, int]]:
    """Every occurrence of every word's normalised form in the normalised text, mapped back to
    its original span (overlaps included): what the matcher must find, by brute force."""
    norm = normalize_with_offsets(text)
    found: set[tuple[str, int, int]] = set()
    for key in {normalize(w) for w in words}:
        at = norm.text.find(key)
        while at >= 0:
            found.add((key, *norm.span(at, at + len(key))))
            at = norm.text.find(key, at + 1)
    return found


@settings(max_examples=400, deadline=None)
@given(
    words=st.lists(st.text(st.sampled_from(_KEY_CHARS), min_size=1, max_size=3), min_size=1, max_size=8),
    text=st.text(st.sampled_from(_TEXT_CHARS), max_size=40),
)
def test_matcher_finds_exactly_the_definitions_hits(words: list[str], text: str) -> None:
    matcher = Matcher([WordEntry(w, "c", Action.HOLD) for w in words])
    expected = _definition_hits(words, text)
    result = matcher.scan(text)
    assert {(normalize(h.word), h.start, h.end) for h in result.hits} == expected
    assert [(h.start, -h.end) for h in result.hits] == sorted((h.start, -h.end) for h in result.hits)
    assert matcher.has_hit(text) is bool(expected)
    assert result.verdict is (Verdict.HOLD if expected else Verdict.ALLOW)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(st.sampled_from(_TEXT_CHARS), max_size=20), max_size=6))
def test_normalize_utf8_joined_is_the_join_of_the_texts(texts: list[str]) -> None:
    joined = normalize_utf8_joined(texts)
    if any("\x00" in t for t in texts):
        assert joined is None
    else:
        assert joined == b"\x00".join(map(normalize_utf8, texts))


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.text(st.sampled_from(_KEY_CHARS), min_size=1, max_size=3), min_size=1, max_size=8),
    texts=st.lists(st.text(st.sampled_from(_TEXT_CHARS), max_size=20), max_size=8),
)
def test_scan_many_equals_scan(words: list[str], texts: list[str]) -> None:
    matcher = Matcher([WordEntry(w, "c", Action.REPLACE, whole_word=i % 2 == 1) for i, w in enumerate(words)])
    expected = [matcher.scan(t) for t in texts]
    assert matcher.scan_many(texts) == [r if r.hits else None for r in expected]


def test_scan_many_across_chunks(matcher: Matcher) -> None:
    rnd = random.Random(3)
    pieces = ["hello ", "加-微-信", "你好，", "V.I.A.G.R.A", "賭博", "a class", "傻瓜", "\x00", "世界。"]
    texts = ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 4))) for _ in range(1500)]
    expected = [matcher.scan(t) for t in texts]
    assert sum(1 for r in expected if r.hits) > 500
    assert matcher.scan_many(texts) == [r if r.hits else None for r in expected]
    no_nul = [t.replace("\x00", "") for t in texts]
    assert matcher.scan_many(no_nul) == [r if r.hits else None for r in map(matcher.scan, no_nul)]
    assert Matcher([]).scan_many(["赌博"]) == [None]
