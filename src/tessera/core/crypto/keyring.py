"""Master keys and the per-tenant keyring.

Envelope encryption: each tenant has data keys (one active version, older versions kept for
decryption until rotation has re-encrypted every row) and one blind-index key; all are random
256-bit keys stored wrapped by a master key (AES-GCM, tenant id + purpose + version as AAD).
The master key comes from ``TESSERA_MASTER_KEY`` (base64) or ``keys/master.key`` in the data
dir; previous master keys (``keys/master-<id>.key``) stay usable for unwrapping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.engine import Connection

from tessera.core.crypto.models import TenantKey
from tessera.core.db.hooks import register_begin_hook

KEY_TTL_SECONDS = 60.0


class KeyError_(RuntimeError):
    """A key needed to decrypt is not available."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"tessera-master-id" + key).hexdigest()[:16]


@dataclass
class MasterKeys:
    current: bytes
    previous: dict[str, bytes] = field(default_factory=dict)

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def by_id(self, kid: str) -> bytes:
        if kid == self.current_id:
            return self.current
        try:
            return self.previous[kid]
        except KeyError:
            raise KeyError_(f"master key {kid} is not available") from None

    @classmethod
    def load(cls, keys_dir: Path, env_value: str | None) -> MasterKeys:
        keys_dir.mkdir(parents=True, exist_ok=True)
        previous: dict[str, bytes] = {}
        for p in keys_dir.glob("master-*.key"):
            k = base64.b64decode(p.read_text().strip())
            previous[key_id(k)] = k
        if env_value:
            current = base64.b64decode(env_value)
        else:
            path = keys_dir / "master.key"
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode())
            current = base64.b64decode(path.read_text().strip())
        if len(current) != 32:
            raise ValueError("the master key must be 32 bytes (base64-encoded)")
        previous.pop(key_id(current), None)
        return cls(current=current, previous=previous)


def _aad(tenant_id: uuid.UUID, purpose: str, version: int) -> bytes:
    return tenant_id.bytes + f"|{purpose}|{version}".encode()


def wrap(master: bytes, tenant_id: uuid.UUID, purpose: str, version: int, key: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(master).encrypt(nonce, key, _aad(tenant_id, purpose, version))


def unwrap(master: bytes, tenant_id: uuid.UUID, purpose: str, version: int, blob: bytes) -> bytes:
    return AESGCM(master).decrypt(blob[:12], blob[12:], _aad(tenant_id, purpose, version))


@dataclass
class TenantKeys:
    active_version: int
    data: dict[int, AESGCM]
    index_key: bytes
    loaded_at: float


class Keyring:
    """In-process cache of unwrapped tenant keys, filled at the start of each transaction."""

    def __init__(self, masters: MasterKeys) -> None:
        self.masters = masters
        self._tenants: dict[uuid.UUID, TenantKeys] = {}
        self._lock = threading.Lock()

    def new_tenant_keys(self, tenant_id: uuid.UUID) -> list[TenantKey]:
        """Fresh wrapped keys for a new tenant (caller adds them to the session)."""
        data_key = AESGCM.generate_key(bit_length=256)
        index_key = os.urandom(32)
        rows = [
            self._row(tenant_id, "data", 1, data_key),
            self._row(tenant_id, "index", 1, index_key),
        ]
        self._tenants[tenant_id] = TenantKeys(1, {1: AESGCM(data_key)}, index_key, time.monotonic())
        return rows

    def new_data_key(self, tenant_id: uuid.UUID, version: int) -> TenantKey:
        return self._row(tenant_id, "data", version, AESGCM.generate_key(bit_length=256))

    def _row(self, tenant_id: uuid.UUID, purpose: str, version: int, key: bytes) -> TenantKey:
        return TenantKey(
            tenant_id=tenant_id,
            purpose=purpose,
            version=version,
            wrapped=wrap(self.masters.current, tenant_id, purpose, version, key),
            master_key_id=self.masters.current_id,
            active=True,
        )

    def rewrap(self, row: TenantKey) -> None:
        key = unwrap(
            self.masters.by_id(row.master_key_id), row.tenant_id, row.purpose, row.version, row.wrapped
        )
        row.wrapped = wrap(self.masters.current, row.tenant_id, row.purpose, row.version, key)
        row.master_key_id = self.masters.current_id

    def forget(self, tenant_id: uuid.UUID | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._tenants.clear()
            else:
                self._tenants.pop(tenant_id, None)

    def ensure_loaded(self, connection: Connection, tenant_id: uuid.UUID) -> None:
        cached = self._tenants.get(tenant_id)
        if cached is not None and time.monotonic() - cached.loaded_at < KEY_TTL_SECONDS:
            return
        t = TenantKey.__table__
        rows = connection.execute(
            select(t.c.purpose, t.c.version, t.c.wrapped, t.c.master_key_id, t.c.active).where(
                t.c.tenant_id == tenant_id
            )
        ).all()
        if not rows:
            return
        data: dict[int, AESGCM] = {}
        active = 0
        index_key = b""
        for purpose, version, wrapped_key, kid, is_active in rows:
            raw = unwrap(self.masters.by_id(kid), tenant_id, purpose, version, wrapped_key)
            if purpose == "data":
                data[version] = AESGCM(raw)
                if is_active and version > active:
                    active = version
            else:
                index_key = raw
        with self._lock:
            self._tenants[tenant_id] = TenantKeys(active, data, index_key, time.monotonic())

    def keys_for(self, tenant_id: uuid.UUID) -> TenantKeys:
        keys = self._tenants.get(tenant_id)
        if keys is None:
            raise KeyError_(f"keys of tenant {tenant_id} are not loaded")
        return keys

    def encrypt(self, tenant_id: uuid.UUID, plaintext: str) -> str:
        keys = self.keys_for(tenant_id)
        nonce = os.urandom(12)
        ct = keys.data[keys.active_version].encrypt(nonce, plaintext.encode(), tenant_id.bytes)
        return f"v{keys.active_version}.{base64.b64encode(nonce + ct).decode()}"

    def decrypt(self, tenant_id: uuid.UUID, token: str) -> str:
        keys = self.keys_for(tenant_id)
        head, _, body = token.partition(".")
        version = int(head[1:])
        aes = keys.data.get(version)
        if aes is None:
            raise KeyError_(f"data key version {version} of tenant {tenant_id} is not available")
        blob = base64.b64decode(body)
        return aes.decrypt(blob[:12], blob[12:], tenant_id.bytes).decode()

    def blind_index(self, tenant_id: uuid.UUID, kind: str, normalised: str) -> str:
        keys = self.keys_for(tenant_id)
        mac = hmac.new(keys.index_key, f"{kind}:{normalised}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def sealer(self, tenant_id: uuid.UUID) -> Sealer:
        """A :class:`Sealer` with the tenant's current keys, for bulk work (imports)."""
        return Sealer(tenant_id, self.keys_for(tenant_id))


_NONCES = re.compile(b".{12}", re.DOTALL)  # 12-byte pieces of a random draw


class Sealer:
    """Encryption and blind indexes for many values of one tenant, in the same formats as
    :meth:`Keyring.encrypt` and :meth:`Keyring.blind_index` (readable by either).

    Faster per value than the keyring: the AES-GCM object, the AAD and the version prefix are
    bound once and the random 96-bit nonces are drawn from the OS in blocks (still one fresh
    random nonce per value). Not shared between threads; short-lived (one batch).
    """

    _BLOCK = 12 * 2048

    def __init__(self, tenant_id: uuid.UUID, keys: TenantKeys) -> None:
        self._aad = tenant_id.bytes
        self._aes = keys.data[keys.active_version]
        self._prefix = f"v{keys.active_version}."
        # HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once: each
        # index then costs two state copies instead of keying OpenSSL's HMAC again (~2.5x).
        key = keys.index_key if len(keys.index_key) <= 64 else hashlib.sha256(keys.index_key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._kinds: dict[str, Any] = {}
        self._nonces = b""
        self._pos = 0

    def encrypt(self, plaintext: str) -> str:
        pos = self._pos
        if pos + 12 > len(self._nonces):
            self._nonces, pos = os.urandom(self._BLOCK), 0
        nonce = self._nonces[pos : pos + 12]
        self._pos = pos + 12
        ct = self._aes.encrypt(nonce, plaintext.encode(), self._aad)
        return self._prefix + base64.b64encode(nonce + ct).decode()

    def encrypt_many(self, plaintexts: Sequence[str]) -> list[str]:
        """:meth:`encrypt` of each value (one OS draw for all the nonces, names bound once)."""
        # the nonces cut from one draw by a regex (in C), then one comprehension
        nonces = _NONCES.findall(os.urandom(12 * len(plaintexts)))
        seal, aad, prefix, b64 = self._aes.encrypt, self._aad, self._prefix, binascii.b2a_base64
        return [
            prefix + b64(nonce + seal(nonce, plaintext.encode(), aad), newline=False).decode()
            for nonce, plaintext in zip(nonces, plaintexts, strict=True)
        ]

    def blind_index(self, kind: str, normalised: str) -> str:
        start = self._kinds.get(kind)
        if start is None:  # the inner state after "<kind>:", kept per kind
            start = self._kinds[kind] = self._inner.copy()
            start.update(f"{kind}:".encode())
        inner = start.copy()
        inner.update(normalised.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:16].hex()


_keyring: Keyring | None = None


def init_keyring(masters: MasterKeys) -> Keyring:
    global _keyring
    _keyring = Keyring(masters)
    register_begin_hook(_on_begin)
    return _keyring


def get_keyring() -> Keyring:
    if _keyring is None:
        raise RuntimeError("keyring not initialised")
    return _keyring


def _on_begin(connection: Connection, tenant_id: uuid.UUID) -> None:
    if _keyring is not None:
        _keyring.ensure_loaded(connection, tenant_id)
