from django.apps import AppConfig


class BrokersConfig(AppConfig):
    name = "brokers"
    verbose_name = "White-label brokerage"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (fill webhooks on exchanges.signals.trades_committed)
