from django.apps import AppConfig


class FactoryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "factory"
    verbose_name = "Factory"

    def ready(self) -> None:
        # Imported for what they register: the system checks, and the runner of tts jobs (CosyVoice).
        from factory import checks, tts  # noqa: F401
