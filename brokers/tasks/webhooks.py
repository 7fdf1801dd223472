"""Webhook delivery from the outbox."""
