"""``manage.py create_client NAME``: make sure a client exists and give it a new API key.

The key is printed alone on the last line so that scripts can take it with ``tail -n 1``
(``bin/run`` does). Running it again keeps the one client and adds another key.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from trading.services.clients import api_key_create, client_get_or_create


class Command(BaseCommand):
    help = "Create the client NAME if absent ('vertex' or 'demo:vertex') and print a new API key on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="client name: 'bookmaker' or 'client:bookmaker'")
        parser.add_argument("--display-name", default="", help="display name for a new client")
        parser.add_argument("--key-name", default="create_client", help="label stored with the new key")

    def handle(self, *args, name: str, display_name: str, key_name: str, **options) -> None:
        try:
            client, created = client_get_or_create(name=name, display_name=display_name)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"client {client.name} {'created' if created else 'exists'} (hedges on {client.bookmaker_code})"
        )
        key, raw = api_key_create(client=client, name=key_name)
        self.stdout.write(f"new API key mm_{key.prefix}_… (shown once, store it now):")
        self.stdout.write(raw)
