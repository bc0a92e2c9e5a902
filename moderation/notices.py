"""Telling the safeguarding lead when an adult is placed in a room by hand.

The roster import places adults where the school's information system says they teach. An adult
placed anywhere by hand (an admin form, a provisioning action) is how a bad actor would get into a
room of children, so the school's safeguarding leads are told at once: on screen if they are signed
in (a `notice` frame), by email where they have an address, and on the record (`safeguarding_lead.told`,
in the same transaction as the placement, naming who was told and how).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction

from audit.services import record
from classes.models import StaffRole, User
from messaging import live
from moderation import access
from moderation.cases import email_later


def on_adult_added_by_hand(sender: Any, school_id: int, actor: User, person: User, place: str, **kwargs: Any) -> None:
    leads = [lead for lead in access.staff_with_role(school_id, StaffRole.Role.SAFEGUARDING_LEAD) if lead != actor]
    detail = f"{actor} placed {person} ({person.get_role_display().lower()}) in {place} by hand."
    emails = sorted(lead.email for lead in leads if lead.email)
    record(
        "safeguarding_lead.told",
        school_id=school_id,
        actor=actor,
        target=person,
        target_label=person.username,
        payload={
            "why": "adult_added_by_hand",
            "detail": detail,
            "person": person.username,
            "place": place,
            "told": sorted(lead.username for lead in leads),
            "on_screen": bool(leads),
            "emailed": emails,
        },
    )
    frame = {"type": "notice", "kind": "adult_added_by_hand", "detail": detail}
    transaction.on_commit(partial(live.send_frame, sorted(lead.pk for lead in leads), frame), robust=True)
    if emails:
        body = f"{detail}\n\nIf you did not expect this, check it in Commonroom's admin and audit log."
        transaction.on_commit(partial(email_later, emails, "Commonroom: an adult was added to a room by hand", body))
