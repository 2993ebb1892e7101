"""Errors of the contacts context (stable codes)."""

from __future__ import annotations

from tessera.core.http.errors import Conflict, InvalidInput, NotFound


class ContactNotFound(NotFound):
    """The contact does not exist."""

    code = "contact.not_found"


class AccountNotFound(NotFound):
    """The account does not exist."""

    code = "account.not_found"


class SegmentNotFound(NotFound):
    """The segment does not exist."""

    code = "segment.not_found"


class TagNotFound(NotFound):
    """The tag does not exist."""

    code = "tag.not_found"


class FieldNotFound(NotFound):
    """The field definition does not exist."""

    code = "field.not_found"


class ImportNotFound(NotFound):
    """The import or export job does not exist."""

    code = "import.not_found"


class DuplicateIdentity(Conflict):
    """A contact with this phone, email or channel id already exists."""

    code = "contact.duplicate_identity"


class DuplicateField(Conflict):
    """A field with this key already exists."""

    code = "field.duplicate"


class InvalidAttribute(InvalidInput):
    """A custom attribute value is not valid."""

    code = "contact.invalid_attribute"


class InvalidEmail(InvalidInput):
    """The email address is not valid."""

    code = "email.invalid"


class InvalidSegmentRule(InvalidInput):
    """The segment rule is not valid."""

    code = "segment.invalid_rule"


class ImportStateError(Conflict):
    """The import is not in a state that allows this."""

    code = "import.invalid_state"
