"""``manage.py create_broker NAME [--parent NAME] [--scopes …|--all-scopes] [--tenant-code CODE] [--wallet ADDRESS]``

Makes sure the broker exists (created under ``--parent`` when absent) and gives it a new API key,
printed alone on the last line so that scripts can take it with ``tail -n 1``. ``--tenant-code``
sets the SSO tenant code and, when the broker has no SSO secret yet (or with ``--new-sso-secret``),
prints a new one once. ``--webhook-url`` sets the webhook endpoint and prints its secret once.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from brokers.choices import ALL_SCOPES
from brokers.errors import BrokerError
from brokers.models import Broker
from brokers.services import brokers as services


class Command(BaseCommand):
    help = "Create the broker NAME if absent and print a new API key alone on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--parent", default=None, help="name of the parent broker (a sub-broker)")
        scopes = parser.add_mutually_exclusive_group()
        scopes.add_argument("--scopes", nargs="+", default=None, help=f"any of: {' '.join(ALL_SCOPES)}")
        scopes.add_argument("--all-scopes", action="store_true")
        parser.add_argument("--tenant-code", default=None, help="SSO tenant code (JWT tenant_code)")
        parser.add_argument("--new-sso-secret", action="store_true", help="replace the SSO secret")
        parser.add_argument("--wallet", default=None, help="bound wallet address (0x…)")
        parser.add_argument("--logout-redirect-url", default=None)
        parser.add_argument("--webhook-url", default=None, help="webhook endpoint; its secret is printed once")
        parser.add_argument("--key-name", default="create_broker")

    def handle(self, *args, name, parent, scopes, all_scopes, tenant_code, new_sso_secret, wallet, **options):
        if not scopes and not all_scopes:
            raise CommandError("give --scopes … or --all-scopes")
        chosen = list(ALL_SCOPES) if all_scopes else [s for part in scopes for s in part.split(",") if s]
        try:
            parent_broker = None
            if parent:
                parent_broker = Broker.objects.filter(name=parent).first()
                if parent_broker is None:
                    raise CommandError(f"no broker named {parent!r}")
            broker, created = services.broker_get_or_create(name=name, parent=parent_broker)
            if not created and parent_broker is not None and broker.parent_id != parent_broker.pk:
                raise CommandError(f"broker {name!r} exists under another parent")
            services.broker_update(
                broker=broker,
                tenant_code=tenant_code,
                wallet_address=wallet,
                logout_redirect_url=options["logout_redirect_url"],
            )
            self.stdout.write(f"broker {broker.name} {'created' if created else 'exists'} (id {broker.pk})")
            if broker.tenant_code and (new_sso_secret or not broker.sso_secret_encrypted):
                secret = services.broker_sso_secret_set(broker=broker)
                self.stdout.write(f"SSO tenant_code {broker.tenant_code}, HS256 secret (shown once): {secret}")
            if options["webhook_url"]:
                self._webhook(broker, options["webhook_url"])
            key, raw = services.broker_key_create(broker=broker, scopes=chosen, name=options["key_name"])
        except BrokerError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"new API key bk_{key.prefix}_… scopes {' '.join(key.scopes)} (shown once, store it now):")
        self.stdout.write(raw)

    def _webhook(self, broker, url: str) -> None:
        try:
            from brokers.services.webhooks import webhook_endpoint_set
        except ImportError as exc:
            raise CommandError("webhooks are not available in this build") from exc
        secret = webhook_endpoint_set(broker=broker, url=url)
        self.stdout.write(f"webhook {url}, signing secret (shown once): {secret}")
