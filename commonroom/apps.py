from django.apps import AppConfig


class CommonroomConfig(AppConfig):
    """The project itself: its system checks, and closing each HTTP request's database connection."""

    name = "commonroom"
    verbose_name = "Commonroom"

    def ready(self) -> None:
        from django.core.signals import request_finished  # noqa: PLC0415

        from commonroom import checks  # noqa: F401, PLC0415  (registers the checks)
        from commonroom.db import close_request_connections  # noqa: PLC0415

        request_finished.connect(close_request_connections, dispatch_uid="commonroom.close_request_connections")
