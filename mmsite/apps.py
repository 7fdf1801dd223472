from django.apps import AppConfig


class MmsiteConfig(AppConfig):
    name = "mmsite"
    verbose_name = "Platform"

    def ready(self) -> None:
        from mmsite.api import schema  # noqa: F401 - registers OpenAPI extensions
