"""Column types that make encryption invisible to services."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from tessera.core import context
from tessera.core.crypto.keyring import get_keyring


class EncryptedString(TypeDecorator[str]):
    """A string encrypted with the tenant-in-scope's active data key (AES-GCM, tenant id as AAD).

    Stored as ``v<key version>.<base64(nonce | ciphertext)>``. Reads decrypt with whichever
    key version wrote the value, so rotation can re-encrypt rows gradually.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return get_keyring().encrypt(context.current_tenant_id(), value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return get_keyring().decrypt(context.current_tenant_id(), value)


def blind_index(kind: str, normalised: str) -> str:
    """Keyed HMAC-SHA256 of a normalised value (``phone``/``email``…) for exact lookups."""
    return get_keyring().blind_index(context.current_tenant_id(), kind, normalised)
