"""Sensitive-word matching over normalised text with an Aho-Corasick automaton.

The automaton (``ahocorasick_rs``, the Rust ``aho-corasick`` crate; contiguous NFA: ~2 MB for
10,000 words, where the full DFA takes ~30 MB per tenant matcher) is built over the UTF-8 bytes
of the normalised words and scans the UTF-8 bytes of the normalised text, with no decoding.
UTF-8 is self-synchronising, so a byte match always starts and ends on character boundaries.

``scan`` first runs the automaton over the fast normalisation; only messages with a hit pay for
locating each hit in the original text (``Utf8SourceMap``: only the parts holding a hit's ends
are mapped character by character). ``scan_many`` does the same for many messages with one
normalisation and one automaton call per chunk of messages.
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from functools import lru_cache
from itertools import compress, count, islice
from typing import Final, NamedTuple

from ahocorasick_rs import MATCHKIND_STANDARD, BytesAhoCorasick, Implementation

from tessera.connect.compliance.normalize import (
    Utf8SourceMap,
    normalize,
    normalize_utf8,
    normalize_utf8_joined,
)

__all__ = [
    "DEFAULT_OPT_OUT_KEYWORDS",
    "Action",
    "Hit",
    "Matcher",
    "MatcherCache",
    "ScanResult",
    "Verdict",
    "WordEntry",
    "is_opt_out",
]


class Action(StrEnum):
    BLOCK = "block"
    HOLD = "hold"
    REPLACE = "replace"


class Verdict(StrEnum):
    ALLOW = "allow"
    HOLD = "hold"
    BLOCK = "block"


class _Rank(IntEnum):
    REPLACE = 1
    HOLD = 2
    BLOCK = 3


_RANK: Final[dict[Action, int]] = {
    Action.REPLACE: _Rank.REPLACE,
    Action.HOLD: _Rank.HOLD,
    Action.BLOCK: _Rank.BLOCK,
}


@dataclass(frozen=True, slots=True)
class WordEntry:
    """One listed word.

    ``replacement`` is used by ``Action.REPLACE``; ``None`` masks every letter and digit of the
    matched original span with ``*``. ``whole_word`` only accepts a hit whose neighbours in the
    original text are not letters or digits (CJK characters do not count as neighbours), which
    avoids ``class`` matching ``ass``.
    """

    word: str
    category: str
    action: Action
    replacement: str | None = None
    whole_word: bool = False


@dataclass(frozen=True, slots=True)
class Hit:
    word: str
    category: str
    action: Action
    start: int
    end: int
    matched: str
    replacement: str | None = None


class ScanResult(NamedTuple):
    """A named tuple rather than a frozen dataclass: built once per message scanned, and a
    tuple is several times cheaper to create than a frozen dataclass (``object.__setattr__``)."""

    hits: tuple[Hit, ...]
    verdict: Verdict
    replaced_text: str

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(h.category for h in self.hits)


def _is_word_char(ch: str) -> bool:
    if not ch.isalnum():
        return False
    cp = ord(ch)
    cjk = 0x2E80 <= cp <= 0x9FFF or 0xAC00 <= cp <= 0xD7AF or 0xF900 <= cp <= 0xFAFF or cp >= 0x20000
    return not cjk


def _mask(span: str) -> str:
    return "".join("*" if c.isalnum() else c for c in span)


class Matcher:
    """Immutable matcher over a word list; safe to share between tasks and threads.

    When several entries normalise to the same key, the strongest action wins
    (block > hold > replace; first listed on ties), so a tenant list merged after the global
    list can add or strengthen words but never weaken a global one.
    """

    __slots__ = ("_empty", "_entries", "_find")

    def __init__(self, entries: Iterable[WordEntry]) -> None:
        by_key: dict[bytes, WordEntry] = {}
        for entry in entries:
            key = normalize_utf8(entry.word)
            if not key:
                raise ValueError(f"word {entry.word!r} is empty after normalisation")
            current = by_key.get(key)
            if current is None or _RANK[entry.action] > _RANK[current.action]:
                by_key[key] = entry
        self._entries: tuple[WordEntry, ...] = tuple(by_key.values())
        self._empty = not by_key
        # Standard match kind: the only one that reports overlapping matches (the slow path needs
        # them all); without ``overlapping`` it still reports a match whenever there is one.
        automaton = BytesAhoCorasick(
            list(by_key),
            matchkind=MATCHKIND_STANDARD,
            implementation=Implementation.ContiguousNFA,
        )
        self._find = automaton.find_matches_as_indexes

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[WordEntry, ...]:
        return self._entries

    def has_hit(self, text: str) -> bool:
        """Cheap yes/no check (no offsets, ignores ``whole_word``)."""
        if self._empty:
            return False
        return bool(self._find(normalize_utf8(text)))

    def scan(self, text: str) -> ScanResult:
        if self._find(normalize_utf8(text)):  # (an empty automaton finds nothing)
            return self._scan_slow(text)
        # tuple.__new__: the named tuple's own __new__ is a Python function, about twice the cost.
        return _new_tuple(ScanResult, ((), Verdict.ALLOW, text))

    def scan_many(self, texts: Sequence[str]) -> list[ScanResult | None]:
        """The result of ``scan`` for each text, or ``None`` for a text without any hit (its
        result would be ``ScanResult((), Verdict.ALLOW, text)``): one normalisation and one
        automaton call per chunk of texts instead of one per text (see ``_flagged``), and no
        object per clean text (``None`` is not tracked by the garbage collector, whereas a
        hundred thousand live result tuples make it scan them over and over)."""
        results: list[ScanResult | None] = [None] * len(texts)
        if self._empty:
            return results
        # ASCII texts apart from the others: they need only the byte table, while the others'
        # normalisation looks for special characters character by character. The groups are not
        # copied into lists: a young list of tens of thousands of strings makes every collection
        # of the young generation touch each string (a cache miss apiece), which cost more than
        # the loop itself; byte masks and an array of indexes are not tracked by the collector.
        is_ascii = bytes(map(str.isascii, texts))
        for select in (is_ascii, is_ascii.translate(_FLIP)):
            indexes = array("q", compress(range(len(texts)), select))
            for i in self._flagged(compress(texts, select)):
                index = indexes[i]
                result = self._scan_slow(texts[index])
                if result.hits:
                    results[index] = result
        return results

    def _flagged(self, texts: Iterable[str]) -> Iterator[int]:
        """Indexes of the texts in which the automaton finds a match, in order.

        Per chunk, the normalised texts are joined by NUL, which no listed word contains (see
        ``normalize_utf8_joined``): a match lies within one text, found from its offset."""
        find = self._find
        last = -1
        remaining = iter(texts)
        for begin in count(0, _CHUNK):
            chunk = list(islice(remaining, _CHUNK))
            if not chunk:
                return
            data = normalize_utf8_joined(chunk)
            if data is None:  # a text contains NUL itself: one by one
                yield from (begin + i for i, text in enumerate(chunk) if find(normalize_utf8(text)))
                continue
            # The text of a match: the NULs before it, counted from one match to the next (the
            # non-overlapping matches come in order; sorted anyway, as it costs nothing here).
            index = begin
            at = 0
            for start in sorted(start for _, start, _ in find(data)):
                index += data.count(b"\x00", at, start)
                at = start
                if index != last:
                    yield index
                    last = index

    def _scan_slow(self, text: str) -> ScanResult:
        source = Utf8SourceMap(text)
        span = source.span
        hits: list[Hit] = []
        for entry_index, first_byte, end_byte in self._find(source.data, overlapping=True):
            entry = self._entries[entry_index]
            start, end = span(first_byte, end_byte)
            if entry.whole_word and (
                (start > 0 and _is_word_char(text[start - 1]))
                or (end < len(text) and _is_word_char(text[end]))
            ):
                continue
            hits.append(
                Hit(
                    word=entry.word,
                    category=entry.category,
                    action=entry.action,
                    start=start,
                    end=end,
                    matched=text[start:end],
                    replacement=entry.replacement if entry.action is Action.REPLACE else None,
                )
            )
        hits.sort(key=lambda h: (h.start, -h.end))
        actions = {h.action for h in hits}
        if Action.BLOCK in actions:
            verdict = Verdict.BLOCK
        elif Action.HOLD in actions:
            verdict = Verdict.HOLD
        else:
            verdict = Verdict.ALLOW
        return ScanResult(tuple(hits), verdict, _apply_replacements(text, hits))


_CHUNK: Final = 512  # texts per automaton call in ``scan_many``


_new_tuple: Final = tuple.__new__
_FLIP: Final = bytes.maketrans(b"\x00\x01", b"\x01\x00")


def _apply_replacements(text: str, hits: Sequence[Hit]) -> str:
    """Replace non-overlapping replace-hits, leftmost first and longest on ties."""
    pieces: list[str] = []
    cursor = 0
    for hit in hits:  # sorted by (start, -end)
        if hit.action is not Action.REPLACE or hit.start < cursor:
            continue
        pieces.append(text[cursor : hit.start])
        pieces.append(hit.replacement if hit.replacement is not None else _mask(hit.matched))
        cursor = hit.end
    if not pieces:
        return text
    pieces.append(text[cursor:])
    return "".join(pieces)


class MatcherCache:
    """Matchers per tenant, rebuilt when the tenant's or the global list version changes.

    The matcher of a tenant merges the global list with the tenant's list (see ``Matcher`` for
    the precedence). ``tenant=None`` gives the global-only matcher. Least recently used tenants
    are evicted beyond ``max_tenants``. Builds happen outside the lock: two concurrent callers
    may both build, and the last one wins, which is harmless.
    """

    def __init__(
        self,
        global_entries: Iterable[WordEntry] = (),
        global_version: Hashable = 0,
        *,
        max_tenants: int = 1024,
    ) -> None:
        self._global_entries: tuple[WordEntry, ...] = tuple(global_entries)
        self._global_version: Hashable = global_version
        self._max = max_tenants
        self._lock = threading.Lock()
        self._cache: OrderedDict[str | None, tuple[Hashable, Hashable, Matcher]] = OrderedDict()
        self.builds = 0

    def set_global(self, entries: Iterable[WordEntry], version: Hashable) -> None:
        with self._lock:
            if version == self._global_version:
                return
            self._global_entries = tuple(entries)
            self._global_version = version

    def get(
        self,
        tenant: str | None,
        version: Hashable,
        loader: Callable[[], Iterable[WordEntry]],
    ) -> Matcher:
        """The matcher for ``tenant`` at list ``version``; ``loader`` is called on a miss only."""
        with self._lock:
            global_version = self._global_version
            global_entries = self._global_entries
            cached = self._cache.get(tenant)
            if cached is not None and cached[0] == version and cached[1] == global_version:
                self._cache.move_to_end(tenant)
                return cached[2]
        tenant_entries = tuple(loader()) if tenant is not None else ()
        matcher = Matcher(global_entries + tenant_entries)
        with self._lock:
            self.builds += 1
            self._cache[tenant] = (version, global_version, matcher)
            self._cache.move_to_end(tenant)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return matcher

    def invalidate(self, tenant: str | None = None) -> None:
        with self._lock:
            self._cache.pop(tenant, None)

    def __len__(self) -> int:
        return len(self._cache)


DEFAULT_OPT_OUT_KEYWORDS: Final[tuple[str, ...]] = ("TD", "退订", "STOP", "UNSUBSCRIBE")


@lru_cache(maxsize=256)
def _normalized_keywords(keywords: tuple[str, ...]) -> frozenset[str]:
    return frozenset(k for k in (normalize(w) for w in keywords) if k)


def is_opt_out(text: str, keywords: Sequence[str] = DEFAULT_OPT_OUT_KEYWORDS) -> bool:
    """True if the whole message, once normalised, is one of ``keywords`` (``" Stop! "``, ``退訂``)."""
    return normalize(text) in _normalized_keywords(tuple(keywords))
