"""submit_sm / deliver_sm built and parsed without smpplib (``tessera.connect.smpp.pdu``): the
same bytes and the same fields as smpplib's codec, and smpplib's reading of anything else."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from smpplib import smpp  # type: ignore[import-untyped]

from tessera.connect.smpp import pdu as P

COMMANDS = ("submit_sm", "deliver_sm")
BYTE = st.integers(0, 255)
ASCII = st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=25)


smpplib_build = P.smpplib_build


def smpplib_parse(raw: bytes) -> Any:
    return smpp.parse_pdu(raw, client=None, sequence=0, allow_unknown_opt_params=True)


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except Exception as exc:
        return "error", type(exc)


def fields_of(pdu: Any, name: str) -> dict[str, Any]:
    keys = P._SM_PARAMS[name] + ("command", "sequence", "status", "length")
    return {k: getattr(pdu, k) for k in keys}


mandatory = st.fixed_dictionaries(
    {},
    optional={
        "service_type": st.one_of(st.none(), ASCII),
        "source_addr_ton": st.one_of(st.none(), BYTE),
        "source_addr_npi": BYTE,
        "source_addr": st.one_of(st.none(), ASCII),
        "dest_addr_ton": BYTE,
        "dest_addr_npi": BYTE,
        "destination_addr": ASCII,
        "esm_class": BYTE,
        "protocol_id": BYTE,
        "priority_flag": BYTE,
        "schedule_delivery_time": ASCII,
        "validity_period": st.one_of(st.none(), ASCII),
        "registered_delivery": st.one_of(st.booleans(), BYTE),
        "replace_if_present_flag": BYTE,
        "data_coding": BYTE,
        "sm_default_msg_id": BYTE,
        "short_message": st.binary(max_size=255),
    },
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(COMMANDS), sequence=st.integers(1, P.MAX_SEQUENCE), status=BYTE, fields=mandatory)
def test_built_as_smpplib_builds(name: str, sequence: int, status: int, fields: dict[str, Any]) -> None:
    assert P._build_sm(P._SM_IDS[name], sequence, status, fields) is not None
    raw = P.build(name, sequence, status, **fields)
    assert raw == smpplib_build(name, sequence, status, **fields)
    # and read back as smpplib reads it
    parsed = P.parse(raw)
    assert isinstance(parsed, P.ShortMessage)
    assert fields_of(parsed, name) == fields_of(smpplib_parse(raw), name)


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(COMMANDS),
    fields=mandatory,
    odd=st.sampled_from(
        [
            {"source_addr": b"123"},  # bytes: smpplib refuses
            {"short_message": "text"},  # str
            {"esm_class": 256},
            {"data_coding": -1},
            {"destination_addr": "8613\u00e9"},  # not ASCII
            {"short_message": b"x" * 256},  # longer than sm_length can say
            {"user_message_reference": 7},  # a TLV not built directly
            {"message_payload": b"abc", "short_message": b"x"},  # both: smpplib refuses
            {"message_state": 256},
            {"sar_msg_ref_num": -1},
            {"message_payload": "text"},  # str
            {"receipted_message_id": b"abc"},  # bytes
            {"receipted_message_id": "id\u00e9"},  # not ASCII
        ]
    ),
)
def test_anything_else_is_smpplibs(name: str, fields: dict[str, Any], odd: dict[str, Any]) -> None:
    fields = {**fields, **odd}
    assert P._build_sm(P._SM_IDS[name], 1, 0, fields) is None
    got = outcome(lambda: P.build(name, 1, **fields))
    want = outcome(lambda: smpplib_build(name, 1, 0, **fields))
    assert got == want


TLVS = {
    "deliver_sm": st.fixed_dictionaries(
        {},
        optional={
            "receipted_message_id": st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=64),
            "message_state": BYTE,
            "network_error_code": st.binary(min_size=3, max_size=3),
            "message_payload": st.binary(max_size=260),
            "sar_msg_ref_num": st.integers(0, 65535),
            "sar_total_segments": BYTE,
            "sar_segment_seqnum": BYTE,
            "user_message_reference": st.integers(0, 65535),  # not read directly: smpplib's
            "language_indicator": BYTE,
        },
    ),
    "submit_sm": st.fixed_dictionaries(
        {},
        optional={
            "message_payload": st.binary(max_size=260),
            "sar_msg_ref_num": st.integers(0, 65535),
            "sar_total_segments": BYTE,
            "sar_segment_seqnum": BYTE,
            "user_message_reference": st.integers(0, 65535),
            "payload_type": BYTE,
        },
    ),
}


@settings(max_examples=400, deadline=None)
@given(data=st.data(), name=st.sampled_from(COMMANDS), fields=mandatory)
def test_built_with_tlvs_as_smpplib_builds(data: st.DataObject, name: str, fields: dict[str, Any]) -> None:
    """A receipt's or a long message's TLVs (the simulator's receipts) are built directly, in
    smpplib's order and with its quirks (an empty string or octet TLV left out, an integer one
    written even when 0, a receipted_message_id longer than 65 cut to 64); any other TLV, or
    short_message with message_payload, goes to smpplib (or to its error)."""
    tlvs = data.draw(TLVS[name])
    if name == "deliver_sm":
        rid = data.draw(
            st.one_of(st.none(), st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=70))
        )
        if rid is not None:
            tlvs["receipted_message_id"] = rid
    both = bool(fields.get("short_message")) and bool(tlvs.get("message_payload"))
    other = {"user_message_reference", "language_indicator", "payload_type"} & set(tlvs)
    built = P._build_sm(P._SM_IDS[name], 9, 0, {**fields, **tlvs})
    assert (built is not None) == (not both and not other)
    got = outcome(lambda: P.build(name, 9, **fields, **tlvs))
    want = outcome(lambda: smpplib_build(name, 9, 0, **fields, **tlvs))
    assert got == want
    if built is not None:
        assert built == want[1]
        parsed = P.parse(built)
        assert fields_of(parsed, name) == fields_of(smpplib_parse(built), name)


def test_simulator_receipt_built_directly() -> None:
    fields = {
        "source_addr": "8613800000001",
        "destination_addr": "10690000",
        "esm_class": 0x04,
        "data_coding": 0,
        "short_message": b"id:0a1b2c0000000001 sub:001 dlvrd:001 stat:DELIVRD err:000 text:hi",
        "receipted_message_id": "0a1b2c0000000001",
        "message_state": P.STATE_DELIVERED,
    }
    raw = P._build_sm(P.DELIVER_SM, 4, 0, fields)
    assert raw is not None and raw == smpplib_build("deliver_sm", 4, 0, **fields)
    assert P.build("deliver_sm", 4, **fields) == raw


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(COMMANDS), fields=mandatory)
def test_parsed_as_smpplib_parses(data: st.DataObject, name: str, fields: dict[str, Any]) -> None:
    tlvs = data.draw(TLVS[name])
    if tlvs.get("message_payload"):
        fields.pop("short_message", None)
    raw = smpplib_build(name, 9, 0, **fields, **tlvs)
    parsed = P.parse(raw)
    assert fields_of(parsed, name) == fields_of(smpplib_parse(raw), name)
    # what is read directly: the mandatory fields and the TLVs a receipt or a long MO carries
    direct = not {"user_message_reference", "language_indicator", "payload_type"} & {
        k for k, v in tlvs.items() if v is not None
    }
    assert isinstance(parsed, P.ShortMessage) == direct


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(COMMANDS),
    fields=mandatory,
    cut=st.integers(0, 400),
    junk=st.binary(max_size=12),
)
def test_damaged_bodies_read_as_smpplib_reads_them(
    name: str, fields: dict[str, Any], cut: int, junk: bytes
) -> None:
    """A body cut short or with bytes after it: read directly only when smpplib reads it the
    same way; otherwise smpplib's reading (or its error) as before."""
    raw = smpplib_build(name, 3, 0, **fields, **({"message_state": 2} if name == "deliver_sm" else {}))
    body = raw[16 : 16 + cut] + junk
    damaged = P.HEADER.pack(16 + len(body), *P.HEADER.unpack_from(raw)[1:]) + body
    got = outcome(P.parse, damaged)
    want = outcome(smpplib_parse, damaged)
    assert got[0] == want[0]
    if got[0] == "ok":
        assert fields_of(got[1], name) == fields_of(want[1], name)
    else:
        assert got[1] is want[1]


def test_receipt_read_directly() -> None:
    raw = smpplib_build(
        "deliver_sm",
        7,
        0,
        source_addr="8613800000001",
        destination_addr="10690000",
        esm_class=4,
        short_message=b"id:abc123 sub:001 dlvrd:001 submit date:2401011200 done date:2401011200 stat:DELIVRD err:000",
        receipted_message_id="abc123",
        message_state=2,
    )
    req = P.parse(raw)
    assert isinstance(req, P.ShortMessage)
    assert (req.receipted_message_id, req.message_state, req.esm_class) == (b"abc123", 2, 4)
    assert req.sequence == 7 and req.command == "deliver_sm" and req.sar_msg_ref_num is None
