from django.apps import AppConfig


class McnSiteConfig(AppConfig):
    """The project itself, as an app only for its site-wide management commands (backup, restore); no models."""

    name = "mcn_site"
    label = "mcn_site"
    verbose_name = "Operations"

    def ready(self) -> None:
        from mcn_site import checks  # noqa: F401 - registers the start-up checks
