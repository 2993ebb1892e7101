"""The import's bulk sealer writes what the keyring reads: the same blind indexes (HMAC-SHA256
from precomputed inner/outer states) and ciphertexts the keyring decrypts."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import time
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tessera.core.crypto.keyring import Keyring, MasterKeys, Sealer, TenantKeys


@pytest.mark.parametrize("key_len", [16, 32, 64, 65, 100])
def test_sealer_blind_index_is_hmac_sha256(key_len: int) -> None:
    rnd = random.Random(key_len)
    tid = uuid.uuid4()
    keys = TenantKeys(
        1, {1: AESGCM(AESGCM.generate_key(bit_length=256))}, os.urandom(key_len), time.monotonic()
    )
    sealer = Sealer(tid, keys)
    for _ in range(200):
        kind = rnd.choice(["phone", "email", "wechat_openid"])
        value = "".join(rnd.choice("+0123456789abc@.中文") for _ in range(rnd.randint(0, 40)))
        want = hmac.new(keys.index_key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]
        assert sealer.blind_index(kind, value) == want


def test_sealer_matches_the_keyring() -> None:
    tid = uuid.uuid4()
    keyring = Keyring(MasterKeys(current=os.urandom(32)))
    keyring.new_tenant_keys(tid)
    sealer = keyring.sealer(tid)
    for value in ("+8613800138000", "a@example.com", "1990-01-01", "上海市"):
        assert sealer.blind_index("phone", value) == keyring.blind_index(tid, "phone", value)
        assert keyring.decrypt(tid, sealer.encrypt(value)) == value


def test_encrypt_many_is_encrypt_of_each_value() -> None:
    tid = uuid.uuid4()
    keyring = Keyring(MasterKeys(current=os.urandom(32)))
    keyring.new_tenant_keys(tid)
    values = ["+8613800138000", "", "a@example.com", "上海市"] * 50
    sealed = keyring.sealer(tid).encrypt_many(values)
    assert [keyring.decrypt(tid, s) for s in sealed] == values
    assert len(set(sealed)) == len(values)  # a fresh nonce each
    assert keyring.sealer(tid).encrypt_many([]) == []
