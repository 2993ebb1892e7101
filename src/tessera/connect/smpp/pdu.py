"""Thin, typed layer over smpplib's PDU codec shared by the simulator and the ESME.

smpplib (``smpplib.smpp`` / ``smpplib.command``) builds and parses every PDU that has a body.
PDUs that are only a header (``enquire_link``, ``*_resp`` with an empty or C-string body) are
packed with ``struct`` directly: they are the hot path and carry nothing a codec could get wrong.

Two smpplib quirks handled here: passing ``sequence=``/``status=`` to its constructors is ignored
(the attributes already hold a value), so both are assigned after construction; and parsing needs
``sequence=0`` so it does not ask a client object for a sequence number.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from smpplib import consts, smpp  # type: ignore[import-untyped]
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
    """Generate a PDU with smpplib's codec."""
    pdu = smpp.make_pdu(command_name, client=None, sequence=sequence, **fields)
    pdu.sequence = sequence
    pdu.status = status
    data: bytes = pdu.generate()
    return data


def parse(raw: bytes) -> Any:
    """Parse a PDU with smpplib's codec (unknown TLVs are skipped, not fatal)."""
    return smpp.parse_pdu(raw, client=None, sequence=0, allow_unknown_opt_params=True)


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
