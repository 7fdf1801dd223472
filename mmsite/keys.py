"""API keys shared by every family: a public prefix plus the SHA-256 of the whole key.

The key is shown once at creation and cannot be recovered. Keys are 256-bit random, so a fast hash
is as safe as a slow one and keeps authentication cheap. Subclasses set ``SCHEME`` (the key reads
``<scheme>_<prefix>_<secret>``), add their owner foreign key and their own ``Meta``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import models
from django.utils import timezone

LAST_USED_RESOLUTION = timedelta(minutes=1)


class HashedKeyQuerySet(models.QuerySet):
    def active(self) -> HashedKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class HashedApiKey(models.Model):
    PREFIX_LEN = 10
    SCHEME = ""

    name = models.CharField(max_length=128, blank=True, default="")
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = HashedKeyQuerySet.as_manager()

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def hash_key(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def parse_prefix(cls, raw_key: str) -> str | None:
        """``<scheme>_<prefix>_<secret>`` -> prefix, or None when the shape is wrong."""
        parts = raw_key.split("_", 2)
        if len(parts) != 3 or parts[0] != cls.SCHEME or len(parts[1]) != cls.PREFIX_LEN or not parts[2]:
            return None
        return parts[1]

    @classmethod
    def generate(cls) -> tuple[str, str, str]:
        """Return ``(raw_key, prefix, key_hash)`` for a new key."""
        prefix = secrets.token_hex(cls.PREFIX_LEN // 2)
        raw = f"{cls.SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
        return raw, prefix, cls.hash_key(raw)

    @classmethod
    def resolve(cls, raw_key: str | None, *, select_related: tuple[str, ...] = ()):
        """The active key ``raw_key`` is, or None if missing, malformed, unknown or revoked.

        Compares the hash in constant time and records ``last_used_at`` at most once a minute per key.
        """
        if not raw_key:
            return None
        raw_key = raw_key.strip()
        prefix = cls.parse_prefix(raw_key)
        if prefix is None:
            return None
        key = cls.objects.active().select_related(*select_related).filter(prefix=prefix).first()
        if key is None or not hmac.compare_digest(key.key_hash, cls.hash_key(raw_key)):
            return None
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            cls.objects.filter(pk=key.pk).update(last_used_at=now)
        return key
