"""``manage.py create_client NAME``: make sure a client exists and give it a new API key.

The key is printed alone on the last line so that scripts can take it with ``tail -n 1``
(``bin/run`` does). Running it again keeps the one client and adds another key.
"""

from __future__ import annotations

import re

from django.core.management.base import BaseCommand, CommandError

from trading.services.clients import api_key_create, client_get_or_create

# The client part and the bookmaker part: the bookmaker is a slug (Bookmaker.name is a SlugField).
PART = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def validate_client_name(name: str) -> str:
    """``vertex`` or ``demo:vertex``: one or two lower-case slugs separated by one colon."""
    name = name.strip()
    parts = name.split(":")
    if not name or len(parts) > 2 or not all(PART.match(p) for p in parts):
        raise CommandError(
            f"Bad client name {name!r}: use 'bookmaker' (e.g. vertex) or 'client:bookmaker' (e.g. demo:vertex), "
            "each part lower-case letters, digits, '-' or '_', starting with a letter or digit, at most 63 characters."
        )
    return name


class Command(BaseCommand):
    help = "Create the client NAME if absent ('vertex' or 'demo:vertex') and print a new API key on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="client name: 'bookmaker' or 'client:bookmaker'")
        parser.add_argument("--display-name", default="", help="display name for a new client")
        parser.add_argument("--key-name", default="create_client", help="label stored with the new key")

    def handle(self, *args, name: str, display_name: str, key_name: str, **options) -> None:
        name = validate_client_name(name)
        try:
            client, created = client_get_or_create(name=name, display_name=display_name)
        except ValueError as exc:
            raise CommandError(f"Bad client name {name!r}: {exc}") from exc
        self.stdout.write(
            f"client {client.name} {'created' if created else 'exists'} (hedges on {client.bookmaker_code})"
        )
        key, raw = api_key_create(client=client, name=key_name)
        self.stdout.write(f"new API key mm_{key.prefix}_… (shown once, store it now):")
        self.stdout.write(raw)
