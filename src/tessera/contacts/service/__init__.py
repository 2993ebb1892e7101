"""Public service interface of the contacts context (what other contexts call).

- ``find_contact_by_phone(session, raw)`` / ``find_contact_by_identity(session, kind, raw)``
- ``consent_status(session, contact_id, channel)`` / ``consent_for_identity(session, kind, raw, channel)``
- ``set_consent(session, contact_id, channel, status, source)`` (e.g. STOP keywords)
- ``register_timeline_source(name, fn)`` — add items to the contact timeline
- ``record_event(session, EventIn)``, ``resolve_merged(session, id)``,
  ``segment_member_ids(session, segment_id)``, ``count_matching(session, rules)``
"""

from tessera.contacts.service.contacts import (
    consent_for_identity,
    consent_status,
    create_contact,
    find_contact_by_identity,
    find_contact_by_phone,
    get_contact,
    set_consent,
)
from tessera.contacts.service.events import record_event, register_timeline_source, unregister_timeline_source
from tessera.contacts.service.merge import merge_contacts, resolve_merged
from tessera.contacts.service.segments import count_matching, segment_member_ids

__all__ = [
    "consent_for_identity",
    "consent_status",
    "count_matching",
    "create_contact",
    "find_contact_by_identity",
    "find_contact_by_phone",
    "get_contact",
    "merge_contacts",
    "record_event",
    "register_timeline_source",
    "resolve_merged",
    "segment_member_ids",
    "set_consent",
    "unregister_timeline_source",
]
