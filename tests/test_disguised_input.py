"""Input that disguises itself: a message of invisible characters is empty, bidi controls are removed,
and every other text (emoji sequences, right-to-left scripts, combining accents) is kept exactly."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django_scopes import scopes_disabled
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from messaging import services
from messaging.consumers import ChatConsumer
from messaging.models import Message, Room
from messaging.services import MessagingError
from moderation import cases
from moderation.models import Case, CaseNote, Report
from tests.conftest import SchoolPeople, make_school
from tests.test_policy import NOON, class_room, open_room

pytestmark = pytest.mark.django_db

# Written out from the issue and Unicode's tables, not from messaging.text, so the tests check it.
INVISIBLE = [
    "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u034f", "\u180e", "\u2062", "\u2064",
    "\ufe00", "\ufe0e", "\ufe0f", "\u180b", "\U000e0100", "\U000e01ef",  # variation selectors
    "\U000e0001", "\U000e0020", "\U000e0041", "\U000e007f",  # tag characters
    "\u115f", "\u1160", "\u3164", "\uffa0",  # Hangul fillers
    "\u2800",  # Braille blank
    " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x85", "\u00a0", "\u1680", "\u2000", "\u2005", "\u200a", "\u2028",
    "\u2029", "\u202f", "\u205f", "\u3000",
]  # fmt: skip
BIDI = [
    "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",  # embeddings and overrides
    "\u2066", "\u2067", "\u2068", "\u2069",  # isolates
    "\u200e", "\u200f", "\u061c",  # marks
]  # fmt: skip
KEPT = [
    "\U0001f469\u200d\U0001f4bb",  # woman technologist: a ZWJ sequence
    "\u2764\ufe0f",  # red heart with its emoji variation selector
    "1\ufe0f\u20e3",  # keycap one
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # the flag of Scotland (tags)
    "\U0001f44d\U0001f3fd",  # thumbs up with a skin tone
    "مرحبا بالجميع، الواجب في الصفحة ١٢",  # Arabic, with Arabic-Indic digits
    "שלום לכולם, page 12",  # Hebrew with Latin and digits
    "नमस्ते, क्षत्रिय",  # Devanagari with its conjuncts
    "می\u200cخواهم",  # noqa: RUF001  (Persian, where the zero-width non-joiner is spelling)
    "Zoe\u0308 and cafe\u0301",  # combining accents
    "\u0301",  # a combining accent on its own shows
    "\u0600\u0661\u0662",  # an Arabic number sign prints
    "한국어 \u3164ㄱ",  # a Hangul filler beside letters
    "  spaced\u3000out\u00a0 ",  # white space around and inside text is kept
]

WHITE_SPACE = st.sampled_from([chr(code) for code in range(0x3001) if chr(code).isspace()])
# Format characters, but for the ones that print a sign (Unicode's Prepended_Concatenation_Mark).
FORMAT = st.characters(
    categories=["Cf"],
    exclude_characters="\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2\U000110bd\U000110cd",
)
NOTHING_SHOWN = st.text(WHITE_SPACE | FORMAT | st.sampled_from(INVISIBLE + BIDI), min_size=1, max_size=60)
# Letters, digits, punctuation and symbols, except the few that draw nothing.
SHOWN = st.characters(categories=["L", "N", "P", "S"], exclude_characters="\u115f\u1160\u3164\uffa0\u2800")
ANYTHING = st.characters(codec="utf-8", exclude_characters="\x00")


def without_bidi(text: str) -> str:
    return "".join(character for character in text if character not in BIDI)


@pytest.fixture
def room(school_a: SchoolPeople) -> Room:
    return open_room(class_room(school_a))


@pytest.fixture
def quiet(settings: Any) -> None:
    """Screening is not under test here: random text must not be held or refused by it."""
    settings.COMMONROOM_SCREENERS = []


def send(people: SchoolPeople, room: Room, body: Any) -> Message:
    sent = services.send_message(user=people.student, room_id=room.pk, client_id=uuid.uuid4(), body=body, now=NOON)
    return sent.message


def edit(people: SchoolPeople, message: Message, body: Any) -> Message:
    return services.edit_message(user=people.student, message_id=message.pk, body=body, now=NOON)


def code_of(call: Any, *args: Any) -> str:
    with pytest.raises(MessagingError) as caught:
        call(*args)
    return caught.value.code


class TestInvisibleBodies:
    @pytest.mark.parametrize("character", INVISIBLE + BIDI)
    def test_each_invisible_character_alone_is_empty(self, school_a: SchoolPeople, room: Room, character: str) -> None:
        assert code_of(send, school_a, room, character) == "empty_body"
        assert code_of(send, school_a, room, character * 3 + " ") == "empty_body"

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=NOTHING_SHOWN)
    @example(body="\u200b\u200c\u200d\u2060\ufeff\u00ad")
    @example(body="\U000e0100\U000e01ef\U000e0001\U000e007f\u3164\u2800\u180e\u3000")
    @example(body="\u202e\u2066\u200f \u2069\u202c")
    def test_a_body_of_nothing_shown_is_empty_on_send_and_edit(
        self, school_a: SchoolPeople, room: Room, body: str
    ) -> None:
        with scopes_disabled():
            before = Message.objects.filter(room=room).count()
        assert code_of(send, school_a, room, body) == "empty_body"
        with scopes_disabled():
            assert Message.objects.filter(room=room).count() == before
            message = Message.objects.filter(room=room, author=school_a.student).first()
        if message is None:  # the first example; the next ones edit it
            message = send(school_a, room, "something to edit")
        assert code_of(edit, school_a, message, body) == "empty_body"

    def test_an_edit_into_nothing_shown_is_refused(self, school_a: SchoolPeople, room: Room) -> None:
        message = send(school_a, room, "the homework is page 12")
        for body in ["\u200b", "\u2800\u3164", "\u202e\u3000"]:
            assert code_of(edit, school_a, message, body) == "empty_body"
        with scopes_disabled():
            message.refresh_from_db()
        assert message.body == "the homework is page 12"

    def test_nul_is_still_refused(self, school_a: SchoolPeople, room: Room) -> None:
        assert code_of(send, school_a, room, "a\x00b") == "invalid_body"


class TestWhatIsKept:
    @pytest.mark.parametrize("body", KEPT)
    def test_text_of_every_kind_is_stored_exactly(self, school_a: SchoolPeople, room: Room, body: str) -> None:
        message = send(school_a, room, body)
        assert message.body == body
        assert edit(school_a, message, body + "!").body == body + "!"

    @pytest.mark.parametrize(
        ("body", "stored"),
        [
            ("abc\u202egpj.exe", "abcgpj.exe"),  # shown as "abcexe.jpg" with the override
            ("\u202ellik\u202c yes", "llik yes"),
            ("\u2067שלום\u2069 hi", "שלום hi"),  # noqa: RUF001  (Hebrew on purpose)
            ("\u200f1 2", "1 2"),  # a right-to-left mark shows this as "2 1"
            ("\u202a\u202b\u202d\u2066\u2068x\u2069\u202c", "x"),
            ("a\u061cb\u200ec", "abc"),
        ],
    )
    def test_bidi_controls_are_removed(self, school_a: SchoolPeople, room: Room, body: str, stored: str) -> None:
        message = send(school_a, room, body)
        assert message.body == stored
        with scopes_disabled():
            message.refresh_from_db()
        assert message.body == stored
        assert edit(school_a, message, "\u202e" + body).body == stored

    @pytest.mark.usefixtures("quiet")
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        before=st.text(ANYTHING | st.sampled_from(INVISIBLE + BIDI), max_size=40),
        shown=st.text(SHOWN, min_size=1, max_size=40),
        after=st.text(ANYTHING | st.sampled_from(INVISIBLE + BIDI), max_size=40),
    )
    @example(before="\u202e", shown="gpj", after=".exe\u202c")
    @example(before="", shown="\U0001f469", after="\u200d\U0001f4bb")
    def test_text_with_something_shown_is_kept_but_for_bidi_controls(
        self, school_a: SchoolPeople, room: Room, *, before: str, shown: str, after: str
    ) -> None:
        body = before + shown + after
        message = send(school_a, room, body)
        assert message.body == without_bidi(body)
        assert not set(message.body) & set(BIDI)
        assert edit(school_a, message, body).body == without_bidi(body)


class TestReasonsAndNotes:
    def test_a_reason_of_nothing_shown_is_no_reason(self, school_a: SchoolPeople, room: Room) -> None:
        message = send(school_a, room, "hello")
        for reason in ["\u200b", "\u3000\u2800", "\u202e\u202c", "\U000e0041"]:
            with pytest.raises(MessagingError) as caught:
                services.lock_room(user=school_a.teacher, room_id=room.pk, reason=reason, now=NOON)
            assert caught.value.code == "reason_required"
            with pytest.raises(MessagingError) as caught:
                services.remove_message(user=school_a.teacher, message_id=message.pk, reason=reason, now=NOON)
            assert caught.value.code == "reason_required"

    def test_a_reason_loses_its_bidi_controls(self, school_a: SchoolPeople, room: Room) -> None:
        locked = services.lock_room(
            user=school_a.teacher, room_id=room.pk, reason=" \u202eKO \u2067مغلق\u2069 ", now=NOON
        )
        assert locked.locked_reason == "KO مغلق"
        mute = services.mute(
            user=school_a.teacher, room_id=room.pk, student_id=school_a.student.pk, reason="\u200fcalm down", now=NOON
        )
        assert mute.reason == "calm down"

    def test_notes_on_a_case(self, school_a: SchoolPeople, room: Room) -> None:
        message = send(school_a, room, "see you at the bus stop")
        services.report_message(user=school_a.aide, message_id=message.pk, category="other", note="\u202ekool\u202c")
        services.report_message(user=school_a.teacher, message_id=message.pk, category="other", note="\u200b\u2800")
        with scopes_disabled():
            case = Case.objects.get(message=message)
            assert sorted(Report.objects.filter(case=case).values_list("note", flat=True)) == ["", "kool"]
        with pytest.raises(cases.CaseError) as caught:
            cases.add_note(user=school_a.teacher, case_id=case.pk, text="\u3164\u200d")
        assert caught.value.code == "invalid_note"
        note = cases.add_note(user=school_a.teacher, case_id=case.pk, text="\u2066spoke to her\u2069")
        assert note.text == "spoke to her"
        with scopes_disabled():
            assert list(CaseNote.objects.filter(case=case).values_list("text", flat=True)) == ["spoke to her"]
        with pytest.raises(MessagingError) as refused:
            cases.escalate(user=school_a.teacher, case_id=case.pk, reason="\ufeff")
        assert refused.value.code == "reason_required"


@pytest.mark.django_db(transaction=True)
async def test_over_the_socket(close_thread_connections: None) -> None:
    people = await database_sync_to_async(make_school)("Socket Disguise School", "u", open_class_rooms=True)
    room = await database_sync_to_async(lambda: room_of(people))()
    communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/")
    communicator.scope["user"] = people.student
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "ready"

    blank = str(uuid.uuid4())
    await communicator.send_json_to({"type": "send", "room": room, "client_id": blank, "body": "\u200b\u3164\u202e"})
    error = await communicator.receive_json_from()
    assert (error["type"], error["code"], error["client_id"]) == ("error", "empty_body", blank)

    shown = str(uuid.uuid4())
    await communicator.send_json_to({"type": "send", "room": room, "client_id": shown, "body": "abc\u202egpj.exe ❤️"})
    while True:
        frame = await communicator.receive_json_from()
        if frame["type"] == "ack":
            break
    assert frame["client_id"] == shown
    assert frame["message"]["body"] == "abcgpj.exe ❤️"
    await communicator.disconnect()


def room_of(people: SchoolPeople) -> int:
    with scopes_disabled():
        return Room.objects.get(school_class=people.school_class).pk
