from django.apps import AppConfig


class ModerationConfig(AppConfig):
    name = "moderation"
    verbose_name = "Moderation"

    def ready(self) -> None:
        from django.db.models.signals import post_save  # noqa: PLC0415  (apps must be loaded first)

        from messaging.signals import message_reported, message_screened  # noqa: PLC0415
        from moderation.cases import on_message_reported, on_message_screened  # noqa: PLC0415
        from moderation.models import ScreeningRule  # noqa: PLC0415
        from moderation.rules import on_rule_saved  # noqa: PLC0415

        message_screened.connect(on_message_screened, dispatch_uid="moderation.screened")
        message_reported.connect(on_message_reported, dispatch_uid="moderation.reported")
        post_save.connect(on_rule_saved, sender=ScreeningRule, dispatch_uid="moderation.rule_saved")

        from classes.signals import adult_added_by_hand  # noqa: PLC0415
        from moderation.notices import on_adult_added_by_hand  # noqa: PLC0415

        adult_added_by_hand.connect(on_adult_added_by_hand, dispatch_uid="moderation.adult_added_by_hand")

        from audit.looks import looked, seen  # noqa: PLC0415
        from moderation.review import on_looked, on_seen  # noqa: PLC0415

        # Every reading from outside a conversation (a room, the audit log) is kept as an AccessRecord.
        looked.connect(on_looked, dispatch_uid="moderation.looked")
        seen.connect(on_seen, dispatch_uid="moderation.seen")
