"""Disclosures and detection: what students actually write is caught, a cry for help is withheld from
the class and answered, and ordinary chat (traps included) stays quiet.

The corpus test measures screening on the held-back part of the labelled corpus (tests/data/screening/
heldout), which nothing was tuned on; its floors are where screening stands today, so a regression
fails (docs/safeguarding.md keeps the figures and the targets).
"""

from __future__ import annotations

import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django_scopes import scopes_disabled

from classes.models import Enrollment, User
from classes.services import enroll
from messaging import services
from messaging.models import Message, Room
from moderation import evaluation, learned, review
from moderation.models import Case, ModerationSettings
from moderation.screening import Action, screen_text
from tests.conftest import SchoolPeople, make_school

CORPUS = Path(__file__).resolve().parent / "data" / "screening"

# Where screening stands on the held-back corpus (recall 0.63, self-harm 0.56, abuse 0.80, 22.8 false
# alarms per 1,000 ordinary messages when this was written): floors a little under, so that a regression
# fails. The targets are higher (recall 0.95, self-harm and abuse 1.00, at most 10 per 1,000).
FLOORS = {"recall": 0.60, "self_harm": 0.52, "abuse_disclosure": 0.77, "false_alarms_per_1000": 26.0}


def test_screening_on_the_held_back_corpus() -> None:
    samples = evaluation.read_corpus([CORPUS / "heldout"])
    assert len(samples) >= 1000
    report = evaluation.evaluate(samples)
    assert report.recall() >= FLOORS["recall"], evaluation.table(report)
    assert report.recall("self_harm") >= FLOORS["self_harm"], evaluation.table(report)
    assert report.recall("abuse_disclosure") >= FLOORS["abuse_disclosure"], evaluation.table(report)
    assert report.false_alarms_per_1000() <= FLOORS["false_alarms_per_1000"], evaluation.table(report)


def test_the_corpus_is_big_enough_and_apart() -> None:
    """At least 80 messages per harmful category and 400 ordinary ones (150 traps), and nothing of the
    held-back part is in the development part."""
    dev = evaluation.read_corpus([CORPUS / "dev"])
    held = evaluation.read_corpus([CORPUS / "heldout"])
    counts: dict[str, int] = {}
    for sample in [*dev, *held]:
        counts[sample.category] = counts.get(sample.category, 0) + 1
    harmful = {key: n for key, n in counts.items() if key not in evaluation.ORDINARY}
    assert len(harmful) == 10
    assert min(harmful.values()) >= 80, harmful
    assert counts["ordinary"] + counts["trap"] >= 400
    assert counts["trap"] >= 150
    assert not {s.text for s in dev} & {s.text for s in held}


@pytest.mark.parametrize(
    ("text", "category", "severity"),
    [
        ("i want to unalive myself", "self_harm", 4),
        ("kms", "self_harm", 4),
        ("i'm going to end it tonight", "self_harm", 4),
        ("i don't want to be here anymore", "self_harm", 4),
        ("i want to kill myself", "self_harm", 4),
        ("he touches me and says its our secret", "abuse_disclosure", 4),
        ("my stepdad hits me when mum is at work", "abuse_disclosure", 4),
        ("ur so ugly and fat nobody likes u", "bullying", 2),
        ("kys", "bullying", 3),  # telling someone to die: severe, withheld
        ("meet at the gates at 4 to sort out that kid", "violence", 3),
        ("im bringing a knife to school tomorrow", "violence", 4),
    ],
)
def test_what_students_write_is_caught(text: str, category: str, severity: int) -> None:
    result = screen_text(text)
    assert category in result.categories, result.as_dict()
    assert result.severity >= severity
    assert result.action == (Action.FLAG if severity == 2 else Action.HOLD)


@pytest.mark.parametrize(
    "text",
    [
        "this homework is killing me",
        "i'm dead 😂",
        "i never said i wanted to die",
        "i don't want to die in the bleep test lol",
        "my mum is going to kill me when she sees my report",
        "in english we're reading a novel where the main character self-harms",
        "in history we learned about the genocide in rwanda",
        "pshe lesson on consent today was actually useful",
        "meet me in the library at lunch to finish the poster",
        "we got absolutely destroyed 5-0",
    ],
)
def test_benign_traps_stay_quiet(text: str) -> None:
    result = screen_text(text)
    assert result.action == Action.ALLOW, result.as_dict()


def test_a_disclosure_spread_over_messages_is_caught_and_says_which() -> None:
    context = ["idk anymore", "everything is just too much"]
    alone = screen_text("i just want to go to sleep and never wake up", spans=False)
    assert "self_harm" in alone.categories  # on its own too
    split = screen_text("jump off the bridge", spans=False, context=["im going to"])
    assert "self_harm" in split.categories
    assert any(match.in_context for match in split.matches)
    assert not screen_text("jump off the bridge", spans=False).categories
    assert not screen_text("im going to", spans=False).categories
    quiet = screen_text("anyway whats the homework", spans=False, context=[*context, "i want to die"])
    assert quiet.action == Action.ALLOW  # what the earlier messages said was screened with them


def test_every_finding_shows_its_words() -> None:
    for text in ("i want to unalive myself", "gave my xbox to my cousin, i wont need it after friday"):
        result = screen_text(text)
        assert result.matches
        assert all(match.text.strip() for match in result.matches)


# -- what happens to a disclosure ----------------------------------------------------------------------------


@pytest.fixture
def people(db: Any) -> SchoolPeople:
    people = make_school("Disclosure School", "d", open_class_rooms=True)
    with scopes_disabled():
        ModerationSettings.objects.create(
            school=people.school, help_sources="Childline: 0800 1111\nSamaritans: 116 123"
        )
    return people


def class_room(people: SchoolPeople) -> Room:
    with scopes_disabled():
        return Room.objects.get(school_class=people.school_class)


def classmate(people: SchoolPeople) -> User:
    with scopes_disabled():
        user = User.objects.create_user("d.classmate", password="pw", school=people.school, role=User.Role.STUDENT)
        enroll(actor=None, school_class=people.school_class, user=user, role=Enrollment.Role.STUDENT)
    return user


def test_a_cry_for_help_is_withheld_answered_and_goes_to_the_lead(people: SchoolPeople) -> None:
    room, other = class_room(people), classmate(people)
    sent = services.send_message(
        user=people.student, room_id=room.pk, client_id=uuid.uuid4(), body="i want to unalive myself"
    ).message
    assert (sent.state, sent.withheld) == (Message.State.HELD, True)
    mine = services.serialize(sent, people.student)
    assert mine["note"].startswith("A trusted adult at school will check in with you soon.")
    assert "Childline: 0800 1111 · Samaritans: 116 123" in mine["note"]
    theirs = services.sync(user=other, room_id=room.pk, after=0)
    assert sent.pk not in [m["id"] for m in theirs.messages]
    again = services.sync(user=people.student, room_id=room.pk, after=0)
    assert next(m for m in again.messages if m["id"] == sent.pk)["note"] == mine["note"]
    with scopes_disabled():
        case = Case.objects.get(message=sent)
    assert (case.severity, case.level) == (4, 3)  # straight to the safeguarding lead, never the class teacher
    assert "self_harm" in case.categories


def test_an_abuse_disclosure_about_staff_goes_past_the_staff(people: SchoolPeople) -> None:
    room = class_room(people)
    sent = services.send_message(
        user=people.student,
        room_id=room.pk,
        client_id=uuid.uuid4(),
        body="sir keeps touching me and says its our secret",
    ).message
    with scopes_disabled():
        case = Case.objects.get(message=sent)
    assert case.staff_conduct
    assert case.severity == 4
    from moderation import access

    assert people.teacher.pk not in access.audience(case)
    assert people.safeguarding_lead.pk in access.audience(case)


def test_severe_bullying_is_withheld_from_the_room(people: SchoolPeople) -> None:
    room, other = class_room(people), classmate(people)
    sent = services.send_message(user=people.student, room_id=room.pk, client_id=uuid.uuid4(), body="just kys").message
    assert sent.withheld
    assert "note" not in services.serialize(sent, people.student)  # bullying is not answered as a cry for help
    assert sent.pk not in [m["id"] for m in services.sync(user=other, room_id=room.pk, after=0).messages]


def test_an_ordinary_message_after_a_disclosure_is_not_held(people: SchoolPeople) -> None:
    room = class_room(people)
    services.send_message(user=people.student, room_id=room.pk, client_id=uuid.uuid4(), body="i want to die")
    later = services.send_message(
        user=people.student, room_id=room.pk, client_id=uuid.uuid4(), body="anyway did anyone do question 3"
    ).message
    assert later.state == Message.State.VISIBLE


def test_review_search_finds_what_screening_finds(people: SchoolPeople) -> None:
    room = class_room(people)
    for body in ("gonna k1ll it at the concert", "KIIILL the lights", "ordinary words"):
        services.send_message(user=people.teacher, room_id=room.pk, client_id=uuid.uuid4(), body=body)
    reason = review.check_reason("concern", "")
    filters = review.filters_from({"text": "kill"})
    found = review.search(people.safeguarding_lead, reason, filters)
    assert sorted(message.body for message, _ in found.rows) == ["KIIILL the lights", "gonna k1ll it at the concert"]


# -- measuring and retraining ----------------------------------------------------------------------------------


def test_the_screen_command_evaluates_a_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "tiny.csv"
    corpus.write_text(
        "category,thread,text\nself_harm,,i want to kill myself\nordinary,,page 12 please\n"
        "trap,,this homework is killing me\npart,t1,im going to\nself_harm,t1,jump off the bridge\n",
        encoding="utf-8",
    )
    out = StringIO()
    call_command("screen", evaluate=[corpus], stdout=out)
    table = out.getvalue()
    assert "self_harm                2/2     1.000" in table
    assert "false alarms per 1,000 ordinary messages: 0.0" in table
    out = StringIO()
    call_command("screen", evaluate=[corpus], json=True, stdout=out)
    assert '"recall": 1.0' in out.getvalue()


def test_the_model_retrains_from_a_corpus(tmp_path: Path) -> None:
    samples = evaluation.read_corpus([CORPUS / "dev"])[::8]
    texts = [" ".join([*s.context, s.text]) for s in samples]
    labels = [s.category if s.harmful else learned.ORDINARY for s in samples]
    target = tmp_path / "model.npz"
    chosen = learned.train(texts, labels, target)
    assert 0.5 <= chosen["threshold"] < 1.0
    with target.open("rb") as handle:
        model = learned.load(handle)
    assert set(model.classes) == set(labels)
    assert model.find("page 12 please") == []


def test_the_grammar_refuses_what_it_cannot_read() -> None:
    from moderation import intent

    rules, _ = intent.parse("@me: i | im\n@act: die\n@negation: not\nself_harm!: @me ~2 want to ~1 @act -negated\n")
    assert [(rule.category, rule.severe, rule.negated) for rule in rules] == [("self_harm", True, True)]
    with pytest.raises(ValueError, match="no alternatives"):
        intent.parse("@me: i\nself_harm: @me die | @me dead\n")
    with pytest.raises(ValueError, match="no slot"):
        intent.parse("self_harm: @nobody die\n")
