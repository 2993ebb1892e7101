"""Errors of the compliance engine (stable codes)."""

from __future__ import annotations

from tessera.core.http.errors import Conflict, InvalidInput, NotFound


class WordNotFound(NotFound):
    """The word does not exist."""

    code = "compliance.word_not_found"


class EntryNotFound(NotFound):
    """The list entry does not exist."""

    code = "compliance.entry_not_found"


class OptOutNotFound(NotFound):
    """The opt-out does not exist."""

    code = "compliance.opt_out_not_found"


class ReviewNotFound(NotFound):
    """The review does not exist."""

    code = "compliance.review_not_found"


class DuplicateWord(Conflict):
    """This word is already on the list."""

    code = "compliance.duplicate_word"


class DuplicateEntry(Conflict):
    """This address is already on the list."""

    code = "compliance.duplicate_entry"


class ReviewDecided(Conflict):
    """The review has already been decided."""

    code = "compliance.review_decided"


class ComplianceInvalid(InvalidInput):
    """The compliance request is not valid."""

    code = "compliance.invalid"

    def __init__(self, message: str, *, field: str, rule: str) -> None:
        super().__init__(message, field=field, rule=rule)
