from django.apps import AppConfig


class ExchangesConfig(AppConfig):
    name = "exchanges"
    verbose_name = "Exchanges and venues"
