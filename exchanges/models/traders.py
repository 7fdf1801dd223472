"""Traders of the house exchange: the profile and its API keys."""

from __future__ import annotations

import secrets

from django.db import models

from mmsite.keys import HashedApiKey, HashedKeyQuerySet


class TraderTier(models.TextChoices):
    """Rate-limit tiers (seed 004 limits are the ``standard`` defaults; market makers get more)."""

    STANDARD = "standard"
    MARKET_MAKER = "market_maker"


class Trader(models.Model):
    """A trader of the house exchange: a Django user with this profile.

    Balances are ledger accounts owned by ``("trader", str(trader.pk))`` (live and paper modes).
    Brokers (the ``brokers`` app) attach traders to themselves with a model of their own, pointing here.
    """

    user = models.OneToOneField("auth.User", on_delete=models.CASCADE, related_name="trader")
    tier = models.CharField(max_length=32, choices=TraderTier.choices, default=TraderTier.STANDARD)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.user.get_username()

    #: DRF reads ``request.user.is_authenticated``; the exchange API authenticates a Trader.
    is_authenticated = True

    @property
    def ledger_owner_id(self) -> str:
        return str(self.pk)


TraderApiKeyQuerySet = HashedKeyQuerySet


class TraderApiKey(HashedApiKey):
    """A trader API key: prefix plus SHA-256 stored, shown once, revocable.

    New keys have the seed's shape ``evt_<64 hex>`` (the seed's SDK refuses any other shape); the
    prefix is the first 10 hex digits. Keys of the earlier shape ``tk_<prefix>_<secret>`` still work.
    """

    SCHEME = "tk"
    SEED_SCHEME = "evt"
    SEED_HEX_LEN = 64

    trader = models.ForeignKey(Trader, on_delete=models.CASCADE, related_name="api_keys")

    class Meta:
        verbose_name = "trader API key"

    def __str__(self) -> str:
        return f"{self.SCHEME}_{self.prefix}… ({self.trader})"

    @classmethod
    def parse_prefix(cls, raw_key: str) -> str | None:
        """``evt_<64 hex>`` or ``tk_<prefix>_<secret>`` -> prefix, or None when the shape is wrong."""
        if raw_key.startswith(cls.SEED_SCHEME + "_"):
            body = raw_key[len(cls.SEED_SCHEME) + 1 :]
            if len(body) != cls.SEED_HEX_LEN or any(c not in "0123456789abcdef" for c in body):
                return None
            return body[: cls.PREFIX_LEN]
        return super().parse_prefix(raw_key)

    @classmethod
    def generate(cls) -> tuple[str, str, str]:
        """Return ``(raw_key, prefix, key_hash)`` for a new key."""
        body = secrets.token_hex(cls.SEED_HEX_LEN // 2)
        raw = f"{cls.SEED_SCHEME}_{body}"
        return raw, body[: cls.PREFIX_LEN], cls.hash_key(raw)
