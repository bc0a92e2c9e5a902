from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from classes.signals import roster_changed  # noqa: PLC0415  (apps must be loaded first)
        from messaging.rooms import on_roster_changed  # noqa: PLC0415

        roster_changed.connect(on_roster_changed, dispatch_uid="messaging.sync_rooms")

        from messaging.live import publish_to_room  # noqa: PLC0415
        from messaging.services import subscribe  # noqa: PLC0415

        subscribe(publish_to_room)
