"""Errors of the messaging pipeline (stable codes)."""

from __future__ import annotations

from tessera.core.http.errors import Conflict, InvalidInput, NotFound


class MessageNotFound(NotFound):
    """The message does not exist."""

    code = "message.not_found"


class ChannelNotFound(NotFound):
    """The channel does not exist."""

    code = "channel.not_found"


class LinkNotFound(NotFound):
    """The link does not exist."""

    code = "link.not_found"


class RouteNotFound(NotFound):
    """The route does not exist."""

    code = "route.not_found"


class TemplateNotFound(NotFound):
    """The template does not exist."""

    code = "template.not_found"


class SignatureNotFound(NotFound):
    """The signature does not exist."""

    code = "signature.not_found"


class MessageInvalid(InvalidInput):
    """The message is not valid."""

    code = "message.invalid"

    def __init__(self, message: str, *, field: str, rule: str) -> None:
        super().__init__(message, field=field, rule=rule)


class TemplateStateConflict(Conflict):
    """The template is not in a state that allows this."""

    code = "template.state_conflict"


class DuplicateSignature(Conflict):
    """This signature already exists."""

    code = "signature.duplicate"


class MessageRefused(MessageInvalid):
    """The compliance check refused the message (a subclass per reason, each with its code)."""

    code = "message.refused"


class RecipientOptedOut(MessageRefused):
    """The recipient opted out of this channel."""

    code = "message.recipient_opted_out"


class RecipientBlocked(MessageRefused):
    """The recipient is on a block list."""

    code = "message.recipient_blocked"


class RecipientEmptyNumber(MessageRefused):
    """The number is not in service (empty-number list)."""

    code = "message.recipient_empty_number"


class BlockedWord(MessageRefused):
    """The message contains a blocked word."""

    code = "message.blocked_word"


class FrequencyCapped(MessageRefused):
    """The recipient reached the frequency cap for marketing messages."""

    code = "message.frequency_capped"


REFUSALS: dict[str, type[MessageRefused]] = {
    c.code: c
    for c in (RecipientOptedOut, RecipientBlocked, RecipientEmptyNumber, BlockedWord, FrequencyCapped)
}
