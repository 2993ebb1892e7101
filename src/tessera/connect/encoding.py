"""SMS text encoding: GSM-7 / UCS-2 detection, segment counting, splitting and UDH.

Choices, stated once:

* A text is GSM-7 when every character is in the GSM 03.38 default alphabet or its extension
  table (extension characters cost two septets: ESC + code); otherwise it is UCS-2.
* Over SMPP, GSM-7 (``data_coding=0``) is carried **unpacked**: one septet per octet, escape
  sequences as two octets. That is what SMSCs expect on an SMPP link (they pack for the air
  interface themselves); packed septets only exist inside the radio PDU.
* UCS-2 (``data_coding=8``) is big-endian UTF-16: characters beyond the BMP travel as surrogate
  pairs (what handsets decode), count two units, and are never split across parts.
* Limits: GSM-7 160 septets in one message, 153 per part when concatenated; UCS-2 70 / 67 units.
  Concatenation uses a 6-octet UDH with the 8-bit reference IE ``0x00``
  (``05 00 03 ref total seq``); parts never split an escape sequence or a surrogate pair.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final, Literal, TypedDict

Encoding = Literal["GSM-7", "UCS-2"]

DATA_CODING_GSM7: Final = 0x00
DATA_CODING_LATIN1: Final = 0x03
DATA_CODING_UCS2: Final = 0x08
ESM_CLASS_UDHI: Final = 0x40

GSM7_SINGLE: Final = 160
GSM7_PART: Final = 153
UCS2_SINGLE: Final = 70
UCS2_PART: Final = 67

_ESC: Final = 0x1B

# GSM 03.38 default alphabet, code points 0x00..0x7F; 0x1B is the escape to the extension table.
_GSM_BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION: Final = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

_ENCODE_BASIC: Final = {ch: i for i, ch in enumerate(_GSM_BASIC) if i != _ESC}
_DECODE_BASIC: Final = dict(enumerate(_GSM_BASIC))
_DECODE_EXTENSION: Final = {code: ch for ch, code in _GSM_EXTENSION.items()}
_GSM_COST: Final[dict[str, int]] = {
    **{ch: 1 for ch in _ENCODE_BASIC},
    **{ch: 2 for ch in _GSM_EXTENSION},
}

_udh_ref = itertools.count(1)


class Preview(TypedDict):
    encoding: Encoding
    segments: int
    characters: int
    parts: list[str]


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """A text ready for ``submit_sm``: one ``short_message`` per part (UDH included)."""

    data_coding: int
    esm_class: int
    payloads: tuple[bytes, ...]
    texts: tuple[str, ...]
    reference: int | None


def is_gsm7(text: str) -> bool:
    """True when ``text`` can be sent in the GSM 03.38 alphabet (with the extension table)."""
    cost = _GSM_COST
    return all(ch in cost for ch in text)


def detect(text: str) -> Encoding:
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def gsm7_length(text: str) -> int:
    """Septets needed for ``text``; extension characters count two."""
    cost = _GSM_COST
    return sum(cost[ch] for ch in text)


def ucs2_length(text: str) -> int:
    """UTF-16 code units for ``text`` (astral characters count two)."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def encode_gsm7(text: str) -> bytes:
    """Unpacked GSM-7: one septet per octet; raises ``ValueError`` on a non-GSM character."""
    out = bytearray()
    basic = _ENCODE_BASIC
    for ch in text:
        code = basic.get(ch)
        if code is not None:
            out.append(code)
            continue
        ext = _GSM_EXTENSION.get(ch)
        if ext is None:
            raise ValueError(f"character {ch!r} is not in the GSM 03.38 alphabet")
        out += bytes((_ESC, ext))
    return bytes(out)


def decode_gsm7(data: bytes) -> str:
    """Inverse of :func:`encode_gsm7`; unknown escapes decode as the base character (03.38)."""
    out: list[str] = []
    escape = False
    for octet in data:
        septet = octet & 0x7F
        if escape:
            out.append(_DECODE_EXTENSION.get(septet, _DECODE_BASIC[septet]))
            escape = False
        elif septet == _ESC:
            escape = True
        else:
            out.append(_DECODE_BASIC[septet])
    return "".join(out)


def encode_ucs2(text: str) -> bytes:
    return text.encode("utf-16-be", errors="surrogatepass")


def decode_ucs2(data: bytes) -> str:
    if len(data) % 2:
        data = data[:-1]
    return data.decode("utf-16-be", errors="replace")


def decode_payload(data: bytes, data_coding: int) -> str:
    """Decode a ``short_message`` (without UDH) by its SMPP ``data_coding``."""
    if data_coding == DATA_CODING_UCS2:
        return decode_ucs2(data)
    if data_coding == DATA_CODING_GSM7:
        return decode_gsm7(data)
    return data.decode("latin-1")


def split(text: str, encoding: Encoding | None = None) -> list[str]:
    """Split ``text`` into the parts it travels as (one part when it fits a single message)."""
    enc = encoding or detect(text)
    if enc == "GSM-7":
        cost = _GSM_COST
        single, per_part = GSM7_SINGLE, GSM7_PART

        def width(ch: str) -> int:
            return cost[ch]
    else:
        single, per_part = UCS2_SINGLE, UCS2_PART

        def width(ch: str) -> int:
            return 2 if ord(ch) > 0xFFFF else 1

    total = sum(width(ch) for ch in text)
    if total <= single:
        return [text]
    parts: list[str] = []
    start = 0
    used = 0
    for i, ch in enumerate(text):
        w = width(ch)
        if used + w > per_part:
            parts.append(text[start:i])
            start, used = i, 0
        used += w
    parts.append(text[start:])
    return parts


def segments(text: str) -> int:
    return len(split(text))


def preview(text: str) -> Preview:
    """What the sender will be charged for: encoding, segments, characters and the parts."""
    enc = detect(text)
    parts = split(text, enc)
    return {
        "encoding": enc,
        "segments": len(parts),
        "characters": len(text),
        "parts": parts,
    }


def udh_concat(reference: int, total: int, sequence: int) -> bytes:
    """6-octet UDH, IE 0x00 (concatenated SM, 8-bit reference)."""
    return bytes((0x05, 0x00, 0x03, reference & 0xFF, total, sequence))


def parse_udh(payload: bytes) -> tuple[tuple[int, int, int] | None, bytes]:
    """Return ``((reference, total, sequence) | None, body)`` for a UDHI ``short_message``.

    Understands IE 0x00 (8-bit ref) and 0x08 (16-bit ref); other IEs are skipped.
    """
    if not payload:
        return None, payload
    udhl = payload[0]
    header, body = payload[1 : 1 + udhl], payload[1 + udhl :]
    concat: tuple[int, int, int] | None = None
    pos = 0
    while pos + 2 <= len(header):
        iei, iel = header[pos], header[pos + 1]
        data = header[pos + 2 : pos + 2 + iel]
        if iei == 0x00 and iel == 3 and len(data) == 3:
            concat = (data[0], data[1], data[2])
        elif iei == 0x08 and iel == 4 and len(data) == 4:
            concat = ((data[0] << 8) | data[1], data[2], data[3])
        pos += 2 + iel
    return concat, body


def next_reference() -> int:
    return next(_udh_ref) & 0xFF


def encode_message(text: str, data_coding: int | None = None, reference: int | None = None) -> EncodedMessage:
    """Encode ``text`` as ``submit_sm`` payloads (data_coding 0 = GSM-7, 8 = UCS-2, None = auto)."""
    if data_coding is None:
        enc: Encoding = detect(text)
    elif data_coding == DATA_CODING_GSM7:
        enc = "GSM-7"
    elif data_coding == DATA_CODING_UCS2:
        enc = "UCS-2"
    else:
        raise ValueError(f"unsupported data_coding {data_coding:#x} for text")
    encode = encode_gsm7 if enc == "GSM-7" else encode_ucs2
    dc = DATA_CODING_GSM7 if enc == "GSM-7" else DATA_CODING_UCS2
    parts = split(text, enc)
    if len(parts) == 1:
        return EncodedMessage(dc, 0, (encode(text),), (text,), None)
    if len(parts) > 255:
        raise ValueError("message too long: more than 255 parts")
    ref = next_reference() if reference is None else reference & 0xFF
    total = len(parts)
    payloads = tuple(udh_concat(ref, total, i) + encode(part) for i, part in enumerate(parts, start=1))
    return EncodedMessage(dc, ESM_CLASS_UDHI, payloads, tuple(parts), ref)
