from django.apps import AppConfig


class FactoryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "factory"
    verbose_name = "Factory"

    def ready(self) -> None:
        from factory import checks  # noqa: F401 - registers the system checks
