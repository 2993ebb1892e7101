"""Thin, typed layer over smpplib's PDU codec shared by the simulator and the ESME.

smpplib (``smpplib.smpp`` / ``smpplib.command``) builds and parses every PDU that has a body.
PDUs that are only a header (``enquire_link``, ``*_resp`` with an empty or C-string body) are
packed with ``struct`` directly: they are the hot path and carry nothing a codec could get wrong.

Two smpplib quirks handled here: passing ``sequence=``/``status=`` to its constructors is ignored
(the attributes already hold a value), so both are assigned after construction; and parsing needs
``sequence=0`` so it does not ask a client object for a sequence number.

``submit_sm`` and ``deliver_sm`` (one per message each way: the gateway's bulk path) are built
and parsed here directly when they carry only what the gateway sends and carriers answer (the
mandatory fields; a receipt's ``receipted_message_id``, ``message_state``, ``network_error_code``,
``message_payload`` and the ``sar_*`` TLVs): smpplib took ~70 µs to build one and ~75 µs to parse
one, a sixth of the gateway's CPU per message, and held the event loop ~10 ms per 64 KiB of
receipts read (the SMSC simulator, a process beside the gateway in the benchmarks, spent
~50 µs of its ~72 µs per message building the receipt). The results are smpplib's, byte for byte and field for field (tests compare
them); anything else (other TLVs, values smpplib would refuse or read oddly) goes to smpplib.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from smpplib import command, consts, smpp  # type: ignore[import-untyped]
from smpplib.exceptions import UnknownCommandError  # type: ignore[import-untyped]

BIND_RECEIVER: Final = 0x00000001
BIND_TRANSMITTER: Final = 0x00000002
SUBMIT_SM: Final = 0x00000004
DELIVER_SM: Final = 0x00000005
UNBIND: Final = 0x00000006
BIND_TRANSCEIVER: Final = 0x00000009
ENQUIRE_LINK: Final = 0x00000015
GENERIC_NACK: Final = 0x80000000
RESP: Final = 0x80000000

ESME_ROK: Final = 0x00
ESME_RINVMSGLEN: Final = 0x01
ESME_RINVCMDLEN: Final = 0x02
ESME_RINVCMDID: Final = 0x03
ESME_RINVBNDSTS: Final = 0x04
ESME_RALYBND: Final = 0x05
ESME_RSYSERR: Final = 0x08
ESME_RBINDFAIL: Final = 0x0D
ESME_RINVPASWD: Final = 0x0E
ESME_RINVSYSID: Final = 0x0F
ESME_RMSGQFUL: Final = 0x14
ESME_RTHROTTLED: Final = 0x58
ESME_RX_T_APPN: Final = 0x64
ESME_RUNKNOWNERR: Final = 0xFF

HEADER: Final = struct.Struct(">IIII")
MAX_PDU: Final = 65536
MAX_SEQUENCE: Final = 0x7FFFFFFF

# SMPP 3.4 message_state values (TLV 0x0427) and their receipt "stat:" words.
STATE_DELIVERED: Final = 2
STATE_EXPIRED: Final = 3
STATE_DELETED: Final = 4
STATE_UNDELIVERABLE: Final = 5
STATE_ACCEPTED: Final = 6
STATE_UNKNOWN: Final = 7
STATE_REJECTED: Final = 8
STAT_BY_STATE: Final = {
    1: "ENROUTE",
    STATE_DELIVERED: "DELIVRD",
    STATE_EXPIRED: "EXPIRED",
    STATE_DELETED: "DELETED",
    STATE_UNDELIVERABLE: "UNDELIV",
    STATE_ACCEPTED: "ACCEPTD",
    STATE_UNKNOWN: "UNKNOWN",
    STATE_REJECTED: "REJECTD",
}
STATE_BY_STAT: Final = {v: k for k, v in STAT_BY_STATE.items()}


CODEC_ERRORS: Final = (
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    struct.error,
    UnknownCommandError,
)
"""What smpplib raises on a malformed body."""


class FramingError(Exception):
    """The byte stream cannot be cut into PDUs (bad command_length)."""


def status_name(status: int) -> str:
    desc = consts.DESCRIPTIONS.get(status)
    return f"{status:#04x} {desc}" if desc else f"{status:#04x}"


def header_only(command_id: int, status: int, sequence: int) -> bytes:
    return HEADER.pack(16, command_id, status, sequence)


def with_cstring(command_id: int, status: int, sequence: int, text: str) -> bytes:
    """A response whose body is a single C-octet string (``*_resp`` with ``message_id``)."""
    body = text.encode("ascii") + b"\x00"
    return HEADER.pack(16 + len(body), command_id, status, sequence) + body


def cstring_body(raw: bytes) -> str:
    """First C-octet string of a PDU body (``message_id`` of ``submit_sm_resp``)."""
    return raw[16:].split(b"\x00", 1)[0].decode("ascii", errors="replace")


def build(command_name: str, sequence: int, status: int = ESME_ROK, **fields: Any) -> bytes:
    """Generate a PDU (``submit_sm``/``deliver_sm`` with mandatory fields only: directly, else
    with smpplib's codec; the same bytes either way)."""
    if command_name in _SM_IDS:
        raw = _build_sm(_SM_IDS[command_name], sequence, status, fields)
        if raw is not None:
            return raw
    return smpplib_build(command_name, sequence, status, **fields)


def smpplib_build(command_name: str, sequence: int, status: int = ESME_ROK, **fields: Any) -> bytes:
    """Generate a PDU with smpplib's codec (what :func:`build` does for anything it does not
    build directly, and what the direct builds are tested against)."""
    pdu = smpp.make_pdu(command_name, client=None, sequence=sequence, **fields)
    pdu.sequence = sequence
    pdu.status = status
    data: bytes = pdu.generate()
    return data


def parse(raw: bytes) -> Any:
    """Parse a PDU with smpplib's codec (unknown TLVs are skipped, not fatal); ``submit_sm`` and
    ``deliver_sm`` whose every field and TLV :func:`_parse_sm` knows are read directly, into an
    object with smpplib's attribute names and values."""
    if len(raw) >= 16 and raw[4:8] in _SM_ID_BYTES:
        sm = _parse_sm(raw)
        if sm is not None:
            return sm
    return smpp.parse_pdu(raw, client=None, sequence=0, allow_unknown_opt_params=True)


# -- submit_sm / deliver_sm without smpplib ---------------------------------------------------
# (name, kind, max): kind "c" C-octet string of at most ``max`` octets with its NUL, "i" one octet
_SM_FIELDS: Final = (
    ("service_type", "c", 6),
    ("source_addr_ton", "i", 1),
    ("source_addr_npi", "i", 1),
    ("source_addr", "c", 21),
    ("dest_addr_ton", "i", 1),
    ("dest_addr_npi", "i", 1),
    ("destination_addr", "c", 21),
    ("esm_class", "i", 1),
    ("protocol_id", "i", 1),
    ("priority_flag", "i", 1),
    ("schedule_delivery_time", "c", 17),
    ("validity_period", "c", 17),
    ("registered_delivery", "i", 1),
    ("replace_if_present_flag", "i", 1),
    ("data_coding", "i", 1),
    ("sm_default_msg_id", "i", 1),
)
_SM_IDS: Final = {"submit_sm": SUBMIT_SM, "deliver_sm": DELIVER_SM}
_SM_ID_BYTES: Final = {SUBMIT_SM.to_bytes(4, "big"): "submit_sm", DELIVER_SM.to_bytes(4, "big"): "deliver_sm"}
_SM_KEYS: Final = frozenset([name for name, _, _ in _SM_FIELDS] + ["sm_length", "short_message"])
# TLVs read directly, per command: tag → (name, kind, size); "i" integer of ``size`` octets
# (the TLV's length must be that), "s" C-octet string (smpplib drops its last octet), "o" octets
_SM_TLVS: Final = {
    "deliver_sm": {
        0x001E: ("receipted_message_id", "s", 0),
        0x0427: ("message_state", "i", 1),
        0x0423: ("network_error_code", "o", 0),
        0x0424: ("message_payload", "o", 0),
        0x020C: ("sar_msg_ref_num", "i", 2),
        0x020E: ("sar_total_segments", "i", 1),
        0x020F: ("sar_segment_seqnum", "i", 1),
    },
    "submit_sm": {
        0x0424: ("message_payload", "o", 0),
        0x020C: ("sar_msg_ref_num", "i", 2),
        0x020E: ("sar_total_segments", "i", 1),
        0x020F: ("sar_segment_seqnum", "i", 1),
    },
}
_SM_PARAMS: Final = {
    name: tuple(cls.params)
    for name, cls in (("submit_sm", command.SubmitSM), ("deliver_sm", command.DeliverSM))
}
# The TLVs built directly, per command, in smpplib's order: (name, tag, kind, size) as in _SM_TLVS
_SM_TLV_BUILD: Final = {
    name: tuple(
        (field, tag, kind, size)
        for field in cls.params_order
        for tag, (known, kind, size) in _SM_TLVS[name].items()
        if known == field
    )
    for name, cls in (("submit_sm", command.SubmitSM), ("deliver_sm", command.DeliverSM))
}
_SM_BUILD_KEYS: Final = {
    name: _SM_KEYS | {field for field, _, _, _ in tlvs} for name, tlvs in _SM_TLV_BUILD.items()
}
_SM_NAMES: Final = {SUBMIT_SM: "submit_sm", DELIVER_SM: "deliver_sm"}
_TLV_HEAD: Final = struct.Struct(">HH")
_STRING_TLV_MAX: Final = 65  # receipted_message_id's ``max`` in smpplib


class ShortMessage:
    """A parsed ``submit_sm``/``deliver_sm``: smpplib's attribute names, values and defaults
    (C-octet strings as bytes, absent TLVs ``None``)."""

    def __init__(self, name: str, length: int, status: int, sequence: int, values: dict[str, Any]) -> None:
        self.__dict__.update(dict.fromkeys(_SM_PARAMS[name]))
        self.__dict__.update(values)
        self.command = name
        self.length = length
        self.status = status
        self.sequence = sequence


def _build_sm(command_id: int, sequence: int, status: int, fields: dict[str, Any]) -> bytes | None:
    """smpplib's bytes for a PDU of mandatory fields and the TLVs of :data:`_SM_TLVS` (a
    receipt's, a long message's), or ``None`` (let smpplib build it)."""
    cmd = _SM_NAMES[command_id]
    if not _SM_BUILD_KEYS[cmd].issuperset(fields):
        return None
    out = bytearray()
    for name, kind, size in _SM_FIELDS:
        value = fields.get(name)
        if kind == "i":
            if value is None or value is False:
                out.append(0)
            elif value is True:
                out.append(1)
            elif type(value) is int and 0 <= value <= 255:
                out.append(value)
            else:
                return None
        elif value is None or value == "":
            out.append(0)
        elif type(value) is str and value.isascii():
            out += value[: size - 1].encode("ascii")
            out.append(0)
        else:
            return None
    message = fields.get("short_message")
    if message is None or message == b"":
        out.append(0)
    elif type(message) is bytes and len(message) <= 255:
        if fields.get("message_payload"):
            return None  # smpplib refuses both
        out.append(len(message))
        out += message
    else:
        return None
    for field, tag, kind, size in _SM_TLV_BUILD[cmd]:
        value = fields.get(field)
        if value is None:
            continue
        if kind == "i":  # written even when 0, as smpplib writes it
            if type(value) is not int or not 0 <= value < 1 << (8 * size):
                return None
            out += _TLV_HEAD.pack(tag, size)
            out += value.to_bytes(size, "big")
        elif kind == "s":  # a C-octet string; smpplib writes none for an empty one
            if type(value) is not str or not value.isascii():
                return None
            if len(value) > _STRING_TLV_MAX:
                value = value[: _STRING_TLV_MAX - 1]
            if value:
                out += _TLV_HEAD.pack(tag, len(value) + 1)
                out += value.encode("ascii")
                out.append(0)
        else:  # octets; none when empty
            if type(value) is not bytes or len(value) > 0xFFFF:
                return None
            if value:
                out += _TLV_HEAD.pack(tag, len(value))
                out += value
    return HEADER.pack(16 + len(out), command_id, status, sequence) + bytes(out)


def _parse_sm(raw: bytes) -> ShortMessage | None:
    """smpplib's reading of a ``submit_sm``/``deliver_sm``, or ``None`` (let smpplib read it:
    a TLV not in :data:`_SM_TLVS`, a string without its NUL, a body cut short, …)."""
    length, _, status, sequence = HEADER.unpack_from(raw)
    if length != len(raw):
        return None
    name = _SM_ID_BYTES[raw[4:8]]
    values: dict[str, Any] = {}
    pos, end = 16, len(raw)
    for field, kind, size in _SM_FIELDS:
        if pos >= end:
            return None
        if kind == "i":
            values[field] = raw[pos]
            pos += 1
        else:
            nul = raw.find(b"\x00", pos, pos + size)
            if nul < 0:
                return None
            values[field] = raw[pos:nul]
            pos = nul + 1
    if pos >= end:
        return None
    sm_length = values["sm_length"] = raw[pos]
    pos += 1
    if pos == end:  # smpplib stops at the body's end: no short_message (None), even if empty
        return None if sm_length else ShortMessage(name, length, status, sequence, values)
    if pos + sm_length > end:
        return None
    values["short_message"] = raw[pos : pos + sm_length]
    pos += sm_length
    tlvs = _SM_TLVS[name]
    while pos < end:
        if end - pos < 4:
            return None
        tag = int.from_bytes(raw[pos : pos + 2], "big")
        size = int.from_bytes(raw[pos + 2 : pos + 4], "big")
        pos += 4
        known = tlvs.get(tag)
        if known is None or pos + size > end:
            return None
        field, kind, want = known
        if kind == "i":
            if size != want:
                return None
            values[field] = int.from_bytes(raw[pos : pos + size], "big")
        elif kind == "s":
            if size < 1:
                return None
            values[field] = raw[pos : pos + size - 1]
        else:
            values[field] = raw[pos : pos + size]
        pos += size
    return ShortMessage(name, length, status, sequence, values)


def text_field(value: object) -> str:
    """smpplib returns C-strings as bytes after parsing and str when built locally."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def split_frames(buf: bytearray) -> list[bytes]:
    """Cut complete PDUs off the front of ``buf`` (in place); raise ``FramingError`` on garbage."""
    frames: list[bytes] = []
    pos = 0
    size = len(buf)
    while size - pos >= 4:
        length = int.from_bytes(buf[pos : pos + 4], "big")
        if length < 16 or length > MAX_PDU:
            del buf[:pos]
            raise FramingError(f"invalid command_length {length}")
        if size - pos < length:
            break
        frames.append(bytes(buf[pos : pos + length]))
        pos += length
    if pos:
        del buf[:pos]
    return frames


class Sequence:
    """SMPP sequence numbers: 1..0x7FFFFFFF, wrapping."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def next(self) -> int:
        self._value = self._value + 1 if self._value < MAX_SEQUENCE else 1
        return self._value
