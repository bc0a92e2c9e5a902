from django.apps import AppConfig


class CommonroomConfig(AppConfig):
    """The project itself: its system checks."""

    name = "commonroom"
    verbose_name = "Commonroom"

    def ready(self) -> None:
        from commonroom import checks  # noqa: F401, PLC0415  (registers the checks)
