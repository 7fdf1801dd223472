from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_save


def _user_saved(sender, instance, **kwargs) -> None:
    """A deactivated user's exchange tokens and keys stop working in every process within about a second."""
    if not instance.is_active:
        from exchanges.api.authentication import credentials_changed

        credentials_changed()


class ExchangesConfig(AppConfig):
    name = "exchanges"
    verbose_name = "Exchanges and venues"

    def ready(self) -> None:
        post_save.connect(_user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="exchanges.user_deactivated")
