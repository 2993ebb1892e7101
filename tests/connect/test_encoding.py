from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.connect import encoding as enc

GSM_CHARS = enc._GSM_BASIC.replace("\x1b", "") + "".join(enc._GSM_EXTENSION)


def _rejoin(message: enc.EncodedMessage) -> str:
    texts = []
    for payload in message.payloads:
        body = payload
        if message.esm_class & enc.ESM_CLASS_UDHI:
            concat, body = enc.parse_udh(payload)
            assert concat is not None
        texts.append(enc.decode_payload(body, message.data_coding))
    return "".join(texts)


def test_detection() -> None:
    assert enc.detect("Hello @ £5 {x} €") == "GSM-7"
    assert enc.detect("你好") == "UCS-2"
    assert enc.detect("ç") == "UCS-2"  # only capital Ç is in 03.38
    assert enc.gsm7_length("a€[") == 5


def test_segment_limits() -> None:
    assert enc.segments("a" * 160) == 1
    assert enc.segments("a" * 161) == 2
    assert enc.segments("a" * 306) == 2
    assert enc.segments("a" * 307) == 3
    assert enc.segments("€" * 80) == 1
    assert enc.segments("€" * 81) == 2
    assert enc.segments("中" * 70) == 1
    assert enc.segments("中" * 71) == 2
    assert enc.segments("中" * 134) == 2
    assert enc.segments("中" * 135) == 3


def test_long_chinese_is_three_segments() -> None:
    text = "中文短信测试" * 33 + "完成"
    assert len(text) == 200
    p = enc.preview(text)
    assert p == {
        "encoding": "UCS-2",
        "segments": 3,
        "characters": 200,
        "parts": p["parts"],
    }
    assert "".join(p["parts"]) == text
    m = enc.encode_message(text, reference=7)
    assert m.data_coding == 8 and m.esm_class == 0x40
    assert [pl[:6] for pl in m.payloads] == [bytes([5, 0, 3, 7, 3, i]) for i in (1, 2, 3)]
    assert all(len(pl) <= 140 for pl in m.payloads)


def test_escape_never_split() -> None:
    text = "a" * 152 + "€" + "b" * 10
    parts = enc.split(text)
    assert parts[0] == "a" * 152 and parts[1].startswith("€")


def test_surrogate_never_split() -> None:
    text = "中" * 66 + "😀" + "x" * 10
    parts = enc.split(text)
    assert parts[0] == "中" * 66 and parts[1].startswith("😀")
    assert _rejoin(enc.encode_message(text)) == text


def test_gsm_roundtrip_unpacked() -> None:
    text = "@£$¥ Hello {world} ~ | ^ € [ok] \\"
    raw = enc.encode_gsm7(text)
    assert raw[0] == 0x00 and max(raw) < 0x80
    assert enc.decode_gsm7(raw) == text


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=700))
def test_gsm_parts_rejoin(text: str) -> None:
    m = enc.encode_message(text)
    assert m.data_coding == 0
    assert "".join(m.texts) == text
    assert _rejoin(m) == text
    for part in m.texts:
        assert enc.gsm7_length(part) <= (160 if len(m.texts) == 1 else 153)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400).filter(lambda s: not all(c in enc._GSM_COST for c in s)))
def test_ucs2_parts_rejoin(text: str) -> None:
    text = "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF) + "中"
    m = enc.encode_message(text)
    assert m.data_coding == 8
    assert _rejoin(m) == text
    assert enc.segments(text) == len(m.payloads)
    for part, payload in zip(m.texts, m.payloads, strict=True):
        assert enc.ucs2_length(part) <= (70 if len(m.texts) == 1 else 67)
        assert len(payload) <= 140
