"""Encryption at rest for credentials (Fernet from ``cryptography``).

The key comes from ``FIELD_ENCRYPTION_KEY`` (a Fernet key, or any string, which is hashed into one);
when unset it is derived from ``SECRET_KEY``. Ciphertext is stored as text; plaintext never is.
"""

import base64
import hashlib
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(key_material: str) -> Fernet:
    digest = hashlib.sha256(("mmsite-field-encryption:" + key_material).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _current() -> Fernet:
    return _fernet(settings.FIELD_ENCRYPTION_KEY or settings.SECRET_KEY)


def encrypt_json(value: Any) -> str:
    return _current().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> Any:
    if not token:
        return None
    try:
        return json.loads(_current().decrypt(token.encode()))
    except InvalidToken as exc:  # wrong key: say so rather than return garbage
        raise ValueError("credentials cannot be decrypted with the configured key") from exc
