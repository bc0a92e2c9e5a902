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

        from django.contrib.auth.signals import user_logged_out  # noqa: PLC0415

        from classes.signals import membership_changed, sessions_ended  # noqa: PLC0415
        from messaging.live import on_logged_out, on_membership_changed, on_sessions_ended  # noqa: PLC0415

        membership_changed.connect(on_membership_changed, dispatch_uid="messaging.membership_changed")
        sessions_ended.connect(on_sessions_ended, dispatch_uid="messaging.sessions_ended")
        user_logged_out.connect(on_logged_out, dispatch_uid="messaging.logged_out")

        from classes.signals import owners_changed, school_changed  # noqa: PLC0415
        from messaging.rooms import on_owners_changed, on_people_changed, on_school_changed  # noqa: PLC0415

        # Registered after the sockets' own handlers: a person's sockets re-read their rooms first.
        membership_changed.connect(on_people_changed, dispatch_uid="messaging.states.membership_changed")
        sessions_ended.connect(on_people_changed, dispatch_uid="messaging.states.sessions_ended")
        owners_changed.connect(on_owners_changed, dispatch_uid="messaging.states.owners_changed")
        school_changed.connect(on_school_changed, dispatch_uid="messaging.states.school_changed")
