"""Text normalisation applied to messages and word lists before sensitive-word matching.

The pipeline, applied per character so every output character maps back to an input span:

1. Unicode NFKD: compatibility folding (full-width to half-width, ligatures, circled and
   styled letters). Deviation from the NFKC of the brief, stated: NFKD without recomposition
   lets step 3 drop combining marks, so a mark appended to a letter (``c`` + U+0301) cannot
   turn it into another letter and hide a word; NFKD is also about 8x cheaper than NFKC.
2. Case folding (``str.casefold``).
3. Removal of separators: every character of the Basic Multilingual Plane that is not a letter
   or digit (``str.isalnum``: punctuation, symbols, spaces, controls, zero-width and other
   format characters, combining marks, ``_``), plus emoji and pictographs (U+1F000-U+1FAFF)
   and tags/variation selectors (U+E0000-U+E0FFF). Other supplementary-plane symbols are kept:
   each extra range costs time on every character scanned. ``加-微-信``, ``加 微 信``, ``a.b.c`` all become one run.
4. Traditional to Simplified Chinese for the characters of ``data/t2s.json`` (scope in the file).

``normalize`` is the fast path (whole-string C-level operations); ``normalize_with_offsets``
is the slow path that also returns, for each output character, the span of the original text
it came from. Both give the same text (property-tested).
"""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from itertools import accumulate, compress, count, islice
from typing import Final

__all__ = [
    "SEPARATOR_RANGES",
    "TRADITIONAL_TO_SIMPLIFIED",
    "NormalizedText",
    "Utf8SourceMap",
    "is_separator",
    "normalize",
    "normalize_utf8",
    "normalize_utf8_joined",
    "normalize_with_offsets",
]


def _load_t2s() -> dict[str, str]:
    raw = resources.files("tessera.connect.compliance").joinpath("data/t2s.json").read_text("utf-8")
    mapping: dict[str, str] = json.loads(raw)["map"]
    return mapping


TRADITIONAL_TO_SIMPLIFIED: Final[dict[str, str]] = _load_t2s()
_T2S_TABLE: Final[dict[int, str]] = {ord(k): v for k, v in TRADITIONAL_TO_SIMPLIFIED.items()}
_TRAD_SEARCH = re.compile("[" + "".join(sorted(TRADITIONAL_TO_SIMPLIFIED)) + "]").search

_EXTRA_SEPARATOR_RANGES: Final[tuple[tuple[int, int], ...]] = (
    (
        0x1F000,
        0x1FAFF,
    ),  # mahjong/cards, enclosed supplement, emoji, pictographs, symbols
    (0xE0000, 0xE0FFF),  # tag characters, variation selectors supplement
)


def _separator_ranges() -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    start = -1
    for cp in range(0x10000):
        sep = not chr(cp).isalnum()
        if sep and start < 0:
            start = cp
        elif not sep and start >= 0:
            ranges.append((start, cp - 1))
            start = -1
    if start >= 0:
        ranges.append((start, 0xFFFF))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges + list(_EXTRA_SEPARATOR_RANGES)):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


SEPARATOR_RANGES: Final[tuple[tuple[int, int], ...]] = _separator_ranges()


def _class(ranges: list[tuple[int, int]]) -> str:
    def esc(cp: int) -> str:
        return f"\\U{cp:08x}"

    return "[" + "".join(esc(lo) if lo == hi else f"{esc(lo)}-{esc(hi)}" for lo, hi in ranges) + "]"


_NON_ASCII_SEPARATORS: Final[list[tuple[int, int]]] = [
    (max(lo, 0x80), hi) for lo, hi in SEPARATOR_RANGES if hi >= 0x80
]
_NON_ASCII_SEP_SUB = re.compile(_class(_NON_ASCII_SEPARATORS) + "+").sub
_SEP_MATCH = re.compile(_class(list(SEPARATOR_RANGES))).fullmatch
_ASCII_DELETE: Final[bytes] = bytes(c for c in range(128) if not chr(c).isalnum())
_ASCII_LOWER: Final[bytes] = bytes(range(256)).upper().lower()  # A-Z -> a-z, rest unchanged
_ASCII_DELETE_BUT_NUL: Final[bytes] = _ASCII_DELETE.replace(b"\x00", b"")


def is_separator(char: str) -> bool:
    """True if ``char`` is removed by normalisation (punctuation, symbol, space, mark, ...)."""
    return _SEP_MATCH(char) is not None


def _normalize_exact(text: str) -> str:
    """The definition (steps 1-4 of the module docstring) on whole strings."""
    folded = unicodedata.normalize("NFKD", text).casefold()
    if _TRAD_SEARCH(folded) is not None:
        folded = folded.translate(_T2S_TABLE)
    folded = _NON_ASCII_SEP_SUB("", folded)
    return (
        folded.encode("utf-8", "surrogatepass")
        .translate(None, _ASCII_DELETE)
        .decode("utf-8", "surrogatepass")
    )


def _special_ranges() -> list[tuple[int, int]]:
    """Non-ASCII characters the fast path cannot copy as they are: separators, characters that
    NFKD, case folding or the variant table change, non-starters (NFKD may reorder them with
    their neighbours), surrogates, and the whole supplementary range. ASCII is left to the
    byte-level table that lowers letters and deletes separators."""
    special: list[int] = []
    for cp in range(0x80, 0x10000):
        ch = chr(cp)
        if (
            0xD800 <= cp <= 0xDFFF
            or not ch.isalnum()
            or cp in _T2S_TABLE
            or unicodedata.normalize("NFKD", ch) != ch
            or ch.casefold() != ch
            or unicodedata.combining(ch)
        ):
            special.append(cp)
    for lo, hi in _nonstarter_ranges():
        special.extend(range(max(lo, 0x80), min(hi, 0xFFFF) + 1))
    ranges: list[tuple[int, int]] = []
    for cp in sorted(set(special)):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    ranges.append((0x10000, 0x10FFFF))
    return ranges


class _RunTable(dict[str, str]):
    """Normalised form of each special cluster seen (see ``_SPECIAL_SPLIT``), computed on first
    use: from the character table when the cluster has no non-starter (then NFKD acts character
    by character), else by the definition."""

    def __missing__(self, run: str) -> str:
        if _NONSTARTER_SEARCH(run) is None:
            value = "".join(map(_CHARS.__getitem__, run))
        else:
            value = _normalize_exact(run)
        if len(self) < 200_000:
            self[run] = value
        return value


def normalize_utf8(text: str) -> bytes:
    """The normalised text as UTF-8 bytes (what the matcher's automaton consumes).

    Fast path, equal to the definition (property-tested): the text is split into runs of
    characters that stay as they are and special clusters, a special character and the
    non-starters after it (``_SPECIAL_SPLIT``, one C-level scan); each cluster is replaced by
    its normalised form from a table filled on first use (a C-level ``map`` over the
    dictionary, no Python call once warm). NFKD, case folding and the variant table act
    character by character and NFKD only reorders runs of non-starters, which are special and
    so stay inside one cluster: normalising part by part gives the same text as normalising
    the whole. Last, one ``bytes.translate`` lowers ASCII letters
    and deletes ASCII separators.
    """
    if not text.isascii():
        parts = _SPECIAL_SPLIT(text)
        if len(parts) > 1:
            parts[1::2] = map(_RUNS.__getitem__, parts[1::2])
            text = "".join(parts)
        return text.encode("utf-8", "surrogatepass").translate(_ASCII_LOWER, _ASCII_DELETE)
    return text.encode("ascii").translate(_ASCII_LOWER, _ASCII_DELETE)


def normalize_utf8_joined(texts: Sequence[str]) -> bytes | None:
    """``b"\\x00".join(map(normalize_utf8, texts))`` with one call per step for all the texts,
    or ``None`` when a text contains NUL itself (then the NULs would not mark the boundaries).

    Equal by construction: NUL is ASCII, so it is never inside a special cluster (none crosses
    a boundary) and the UTF-8 encoding and the byte table act byte by byte; the table here
    keeps NUL, which normalisation otherwise deletes, so no normalised text contains it and the
    NULs left are exactly the boundaries."""
    joined = "\x00".join(texts)
    if joined.count("\x00") != max(len(texts) - 1, 0):
        return None
    if not joined.isascii():
        parts = _SPECIAL_SPLIT(joined)
        if len(parts) > 1:
            parts[1::2] = map(_RUNS.__getitem__, parts[1::2])
            joined = "".join(parts)
        return joined.encode("utf-8", "surrogatepass").translate(_ASCII_LOWER, _ASCII_DELETE_BUT_NUL)
    return joined.encode("ascii").translate(_ASCII_LOWER, _ASCII_DELETE_BUT_NUL)


def normalize(text: str) -> str:
    """Normalise ``text`` for matching (see the module docstring)."""
    return normalize_utf8(text).decode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """Normalised text with, per output character, the original span ``[starts[i], ends[i])``."""

    original: str
    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original span of the normalised slice ``text[start:end]`` (``end > start``)."""
        return self.starts[start], self.ends[end - 1]


def _nonstarter_ranges() -> list[tuple[int, int]]:
    # Characters whose decomposition begins with a non-starter (combining class > 0). NFKD only
    # reorders within runs of these, so a text free of them normalises character by character,
    # and otherwise cluster by cluster (a cluster = a starter and the non-starters after it).
    found: list[int] = []
    for cp in range(0x10000):
        ch = chr(cp)
        if unicodedata.combining(ch) or (
            unicodedata.decomposition(ch) and unicodedata.combining(unicodedata.normalize("NFKD", ch)[0])
        ):
            found.append(cp)
    ranges: list[tuple[int, int]] = []
    for cp in found:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    # Supplementary characters always take the (always correct) cluster path: listing their
    # fragmented non-starter ranges would slow the search down on every character.
    ranges.append((0x10000, 0x10FFFF))
    return ranges


_NONSTARTER_CLASS = _class(_nonstarter_ranges())
_NONSTARTER_SEARCH = re.compile(_NONSTARTER_CLASS).search
_SPECIAL_CLASS = _class(_special_ranges())
# One special character and the non-starters after it (a special cluster), rather than a whole
# run of special characters: NFKD reorders only within runs of non-starters, so normalising
# cluster by cluster equals normalising the run, and the table of normalised forms then keys
# on single characters or short clusters (a few hundred in mixed Chinese text) instead of every
# combination of traditional characters and punctuation met (each first one a Python call).
# The class leads the pattern: sre only skips ahead with the class's bitmap when the pattern
# starts with a class (a repeat hides it, and every position then costs a match attempt).
_SPECIAL_SPLIT = re.compile("(" + _SPECIAL_CLASS + _NONSTARTER_CLASS + "*)").split
_SPECIAL_SEARCH = re.compile(_SPECIAL_CLASS).search
_RUNS: Final[_RunTable] = _RunTable()


@lru_cache(maxsize=65536)
def _starts_cluster(char: str) -> bool:
    return _NONSTARTER_SEARCH(char) is None


_CHAR_CACHE: dict[str, str] = {}
_CHAR_CACHE_MAX: Final = 100_000


def _normalize_char(char: str) -> str:
    piece = _CHAR_CACHE.get(char)
    if piece is None:
        piece = normalize(char)
        if len(_CHAR_CACHE) < _CHAR_CACHE_MAX:
            _CHAR_CACHE[char] = piece
    return piece


def _offsets_by_cluster(text: str) -> NormalizedText:
    """Normalise ``text`` cluster by cluster, keeping each output character's source span."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    cache_get = _CHAR_CACHE.get
    if _NONSTARTER_SEARCH(text) is None:  # common case: character by character
        for i, ch in enumerate(text):
            piece = cache_get(ch)
            if piece is None:
                piece = _normalize_char(ch)
            if piece:
                out.append(piece)
                if len(piece) == 1:
                    starts.append(i)
                    ends.append(i + 1)
                else:
                    starts.extend([i] * len(piece))
                    ends.extend([i + 1] * len(piece))
        return NormalizedText(text, "".join(out), tuple(starts), tuple(ends))
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        j = i + 1
        while j < n and not _starts_cluster(text[j]):
            j += 1
        if j - i == 1:
            piece = cache_get(ch)
            if piece is None:
                piece = _normalize_char(ch)
        else:
            piece = normalize(text[i:j])
        if piece:
            out.append(piece)
            if len(piece) == 1:
                starts.append(i)
                ends.append(j)
            else:
                starts.extend([i] * len(piece))
                ends.extend([j] * len(piece))
        i = j
    return NormalizedText(text, "".join(out), tuple(starts), tuple(ends))


_KEPT_ASCII_OR_PLAIN = re.compile(r"[A-Za-z0-9\u0080-\U0010FFFF]+").finditer


def normalize_with_offsets(text: str) -> NormalizedText:
    """Normalise ``text`` and keep the mapping from each output character to its source span.

    The runs of the fast path: a run of plain characters maps one to one (ASCII letters
    lowered, ASCII separators dropped: ``range`` extends, no per-character Python); a special
    part is normalised cluster by cluster (a cluster = a starter and the
    non-starters after it), each output character spanning its cluster."""
    if _SPECIAL_SEARCH(text) is None:
        if text.isascii() and text.isalnum():
            return NormalizedText(text, text.lower(), tuple(range(len(text))), tuple(range(1, len(text) + 1)))
        parts = [text]
    else:
        parts = _SPECIAL_SPLIT(text)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    base = 0
    for index, part in enumerate(parts):
        if not part:
            continue
        if index % 2 == 0:
            for m in _KEPT_ASCII_OR_PLAIN(part):
                lo, hi = base + m.start(), base + m.end()
                out.append(m.group().casefold())  # plain: casefold changes ASCII letters only
                starts.extend(range(lo, hi))
                ends.extend(range(lo + 1, hi + 1))
        else:
            norm = _offsets_by_cluster(part)
            out.append(norm.text)
            starts.extend([base + i for i in norm.starts])
            ends.extend([base + i for i in norm.ends])
        base += len(part)
    return NormalizedText(text, "".join(out), tuple(starts), tuple(ends))


class _CharTable(dict[str, str]):
    """Normalised form of each character seen (filled on first use, bounded)."""

    def __missing__(self, char: str) -> str:
        value = _normalize_exact(char)
        if len(self) < _CHAR_CACHE_MAX:
            self[char] = value
        return value


_CHARS: Final[_CharTable] = _CharTable()


_UTF8_CONTINUATION: Final[bytes] = bytes(range(0x80, 0xC0))


class Utf8SourceMap:
    """``normalize_utf8(text)`` as ``data``, and ``span``, which maps a slice of it back to the
    original text: the same spans as ``normalize_with_offsets`` (a character, or in a run of
    special characters with non-starters its cluster), computed for the asked offsets only.

    The data is built as ``normalize_utf8`` builds it, from plain parts and special clusters; with a
    NUL after each part (when the text has none: NUL is ASCII, kept by the byte table here as
    in ``normalize_utf8_joined``), one split gives each part's bytes. A byte is located in its
    part by bisection, and only that part is mapped character by character: a plain part drops
    its ASCII separators and keeps every other character (each one a letter or digit,
    ``str.isalnum``); a special cluster maps through the character table, or as clusters of
    ``normalize_with_offsets`` when it holds a non-starter. No per-character work over the whole text.
    """

    __slots__ = ("_bases", "_encoded", "_ends", "_parts", "data")

    def __init__(self, text: str) -> None:
        parts = [text] if text.isascii() else _SPECIAL_SPLIT(text)
        encoded: list[bytes]
        if len(parts) == 1:
            data = text.encode("utf-8", "surrogatepass").translate(_ASCII_LOWER, _ASCII_DELETE)
            encoded = [data]
        else:
            normalized = parts.copy()
            normalized[1::2] = map(_RUNS.__getitem__, parts[1::2])
            if "\x00" in text:
                encoded = [
                    p.encode("utf-8", "surrogatepass").translate(_ASCII_LOWER, _ASCII_DELETE)
                    for p in normalized
                ]
                data = b"".join(encoded)
            else:
                marked = (
                    "\x00".join(normalized)
                    .encode("utf-8", "surrogatepass")
                    .translate(_ASCII_LOWER, _ASCII_DELETE_BUT_NUL)
                )
                encoded = marked.split(b"\x00")
                data = marked.replace(b"\x00", b"")
        self.data: bytes = data
        self._parts: list[str] = parts
        self._encoded: list[bytes] = encoded
        self._ends: list[int] = list(accumulate(map(len, encoded)))
        self._bases: list[int] = [0, *accumulate(map(len, parts))]

    def _source(self, byte: int) -> tuple[int, int]:
        """Original span of the unit that produced the normalised character holding ``data[byte]``."""
        k = bisect_right(self._ends, byte)
        offset = byte - (self._ends[k - 1] if k else 0)
        # Index of that character in its part's output: the lead bytes up to ``byte``, less one.
        char = len(self._encoded[k][: offset + 1].translate(None, _UTF8_CONTINUATION)) - 1
        part = self._parts[k]
        base = self._bases[k]
        if k % 2 == 0:  # plain: ASCII separators dropped, every other character kept
            if not part.isalnum():
                char = next(islice(compress(count(), map(str.isalnum, part)), char, None))
            return base + char, base + char + 1
        if len(part) == 1:
            return base, base + 1
        if _NONSTARTER_SEARCH(part) is None:  # character by character
            at = bisect_right(list(accumulate(map(len, map(_CHARS.__getitem__, part)))), char)
            return base + at, base + at + 1
        norm = _offsets_by_cluster(part)
        return base + norm.starts[char], base + norm.ends[char]

    def span(self, first_byte: int, end_byte: int) -> tuple[int, int]:
        """Original span of ``data[first_byte:end_byte]`` (character boundaries, ``end_byte > first_byte``)."""
        return self._source(first_byte)[0], self._source(end_byte - 1)[1]
