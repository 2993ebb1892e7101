"""Password hashing (Argon2id via pwdlib) and high-entropy token helpers."""

from __future__ import annotations

import hashlib
import secrets
from functools import lru_cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from tessera.settings import get_settings

MIN_PASSWORD_LENGTH = 10


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    s = get_settings()
    return PasswordHash(
        (
            Argon2Hasher(
                time_cost=s.argon2_time_cost,
                memory_cost=s.argon2_memory_cost,
                parallelism=s.argon2_parallelism,
            ),
        )
    )


def reset_hasher() -> None:
    _hasher.cache_clear()


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    if not hashed:
        # Spend comparable time so unknown users cannot be told apart by timing.
        _hasher().hash(password)
        return False
    try:
        return _hasher().verify(password, hashed)
    except Exception:
        return False


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
