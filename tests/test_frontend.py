"""The pages: who sees what, the policy flow, the sign-in message, the profile, and the security headers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.test import Client
from django_scopes import scopes_disabled

from audit.models import AuditEvent
from classes.services import change_school_settings
from messaging import services
from messaging.models import PolicyAcceptance, Room
from tests.conftest import SchoolPeople
from tests.test_policy import NOON, class_room, open_room

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with time_machine.travel(NOON, tick=False):
        yield


@pytest.fixture
def room(school_a: SchoolPeople) -> Room:
    return open_room(class_room(school_a))


def signed_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def sign_in_message(people: SchoolPeople, text: str) -> None:
    with scopes_disabled():
        change_school_settings(actor=people.admin, school=people.school, sign_in_message=text)


def publish(people: SchoolPeople, text: str = "Be kind.") -> int:
    return services.publish_policy(actor=people.admin, school_id=people.school.pk, text=text).version


class TestRoomPage:
    def test_a_member_sees_the_room(self, client: Client, school_a: SchoolPeople, room: Room) -> None:
        response = signed_in(client, school_a.student).get(f"/rooms/{room.pk}/")
        assert response.status_code == 200
        page = response.content.decode()
        assert f'data-room="{room.pk}"' in page
        assert 'data-moderator="false"' in page
        assert "Teacher controls" not in page
        assert school_a.teacher.full_name in page  # who is in the room
        assert 'data-action="mute"' not in page

    def test_the_teacher_sees_controls_and_mutes(self, client: Client, school_a: SchoolPeople, room: Room) -> None:
        services.mute(user=school_a.teacher, room_id=room.pk, student_id=school_a.student.pk, reason="Calm down")
        page = signed_in(client, school_a.teacher).get(f"/rooms/{room.pk}/").content.decode()
        assert "Teacher controls" in page
        assert 'data-moderator="true"' in page
        assert f'data-action="unmute" data-person="{school_a.student.pk}"' in page
        assert "Calm down" in page

    def test_a_muted_student_is_told_why_and_cannot_type(
        self, client: Client, school_a: SchoolPeople, room: Room
    ) -> None:
        services.mute(user=school_a.teacher, room_id=room.pk, student_id=school_a.student.pk, reason="Calm down")
        page = signed_in(client, school_a.student).get(f"/rooms/{room.pk}/").content.decode()
        assert "A teacher has muted you in this room: Calm down" in page
        assert re.search(r'<textarea id="body"[^>]* disabled', page)

    @pytest.mark.parametrize("who", ["other_student", "other_teacher", "admin"])
    def test_someone_outside_the_class_gets_not_found(
        self, client: Client, school_a: SchoolPeople, room: Room, who: str
    ) -> None:
        forbidden = signed_in(client, getattr(school_a, who)).get(f"/rooms/{room.pk}/")
        missing = client.get("/rooms/999999/")
        assert forbidden.status_code == missing.status_code == 404
        assert forbidden.content == missing.content

    def test_another_schools_room_is_not_found(
        self, client: Client, school_a: SchoolPeople, school_b: SchoolPeople, room: Room
    ) -> None:
        assert signed_in(client, school_b.teacher).get(f"/rooms/{room.pk}/").status_code == 404
        assert signed_in(client, school_b.safeguarding_lead).get(f"/rooms/{room.pk}/").status_code == 404

    def test_signed_out_goes_to_sign_in(self, client: Client, room: Room) -> None:
        response = client.get(f"/rooms/{room.pk}/")
        assert response.status_code == 302
        assert response["Location"] == f"/login/?next=/rooms/{room.pk}/"


class TestHome:
    def test_rooms_are_grouped_with_state_and_unread(self, client: Client, school_a: SchoolPeople, room: Room) -> None:
        services.send_message(user=school_a.teacher, room_id=room.pk, client_id="0" * 32, body="Homework", now=NOON)
        page = signed_in(client, school_a.student).get("/").content.decode()
        assert page.index("Class rooms") < page.index(school_a.school_class.title)
        assert page.index("Year group rooms") < page.index(school_a.cohort.name)
        assert school_a.other_class.title not in page
        assert "1 unread" in page
        assert 'data-state="open"' in page

    def test_an_admin_has_no_rooms(self, client: Client, school_a: SchoolPeople, room: Room) -> None:
        page = signed_in(client, school_a.admin).get("/").content.decode()
        assert "You are not in any rooms yet" in page
        assert school_a.school_class.title not in page


class TestPolicy:
    def test_the_first_visit_shows_the_policy(self, client: Client, school_a: SchoolPeople, room: Room) -> None:
        publish(school_a, "No unkindness.")
        signed_in(client, school_a.student)
        response = client.get("/")
        assert response.status_code == 302
        assert response["Location"] == "/policy/"
        page = client.get("/policy/").content.decode()
        assert "No unkindness." in page

    def test_accepting_records_it_and_opens_posting(self, client: Client, school_a: SchoolPeople, room: Room) -> None:
        version = publish(school_a)
        signed_in(client, school_a.student)
        assert services.room_summary(school_a.student, room)["refusal"]["code"] == "policy_not_accepted"
        response = client.post("/policy/", {"version": version, "accept": ""})
        assert response.status_code == 302
        assert response["Location"] == "/"
        with scopes_disabled():
            assert PolicyAcceptance.objects.filter(user=school_a.student, policy__version=version).exists()
            assert AuditEvent.objects.filter(action="policy.accepted", actor=school_a.student).exists()
        assert services.room_summary(school_a.student, room)["refusal"] is None
        assert client.get("/").status_code == 200

    def test_not_now_reads_without_posting(self, client: Client, school_a: SchoolPeople, room: Room) -> None:
        publish(school_a)
        signed_in(client, school_a.student)
        response = client.post("/policy/", {"later": "", "next": f"/rooms/{room.pk}/"})
        assert response["Location"] == f"/rooms/{room.pk}/"
        home = client.get("/").content.decode()
        assert "you cannot post until you accept" in home
        page = client.get(f"/rooms/{room.pk}/").content.decode()
        assert "Accept your school&#x27;s acceptable-use policy before you post." in page
        with scopes_disabled():
            assert not PolicyAcceptance.objects.filter(user=school_a.student).exists()

    def test_an_outdated_version_is_refused(self, client: Client, school_a: SchoolPeople, room: Room) -> None:
        old = publish(school_a, "First.")
        publish(school_a, "Second.")
        page = signed_in(client, school_a.student).post("/policy/", {"version": old, "accept": ""}).content.decode()
        assert "The acceptable-use policy has changed" in page
        assert "Second." in page
        with scopes_disabled():
            assert not PolicyAcceptance.objects.filter(user=school_a.student).exists()

    def test_next_never_leaves_the_site(self, client: Client, school_a: SchoolPeople, room: Room) -> None:
        publish(school_a)
        signed_in(client, school_a.student)
        response = client.post("/policy/", {"later": "", "next": "https://evil.example/"})
        assert response["Location"] == "/"


def test_the_profile(client: Client, school_a: SchoolPeople, room: Room) -> None:
    version = publish(school_a)
    services.accept_policy(user=school_a.student, version=version)
    page = signed_in(client, school_a.student).get("/profile/").content.decode()
    assert school_a.school_class.title in page
    assert school_a.other_class.title not in page
    assert school_a.cohort.name in page
    # The school's local time (London is on GMT in November).
    assert f"You accepted version {version} on" in page
    assert "23 November 2026, 12:00" in page


class TestSignIn:
    def test_the_schools_message(self, client: Client, school_a: SchoolPeople) -> None:
        sign_in_message(school_a, "Be <b>kind</b>.")
        page = client.get(f"/login/?school={school_a.school.pk}").content.decode()
        assert f"Sign in to {school_a.school.name}" in page
        assert "Be &lt;b&gt;kind&lt;/b&gt;." in page  # text, never HTML

    def test_one_school_needs_no_link(self, client: Client, school_a: SchoolPeople) -> None:
        sign_in_message(school_a, "Welcome.")
        assert "Welcome." in client.get("/login/").content.decode()

    def test_several_schools_need_the_link(
        self, client: Client, school_a: SchoolPeople, school_b: SchoolPeople
    ) -> None:
        sign_in_message(school_a, "Welcome to A.")
        assert "Welcome to A." not in client.get("/login/").content.decode()
        assert "Welcome to A." not in client.get(f"/login/?school={school_b.school.pk}").content.decode()

    def test_signing_in_lands_on_the_rooms(self, client: Client, school_a: SchoolPeople, room: Room) -> None:
        response = client.post("/login/", {"username": school_a.student.username, "password": "pw"})
        assert response.status_code == 302
        assert response["Location"] == "/"

    def test_a_wrong_password_is_explained(self, client: Client, school_a: SchoolPeople) -> None:
        response = client.post("/login/", {"username": school_a.student.username, "password": "nope"})
        assert "did not match" in response.content.decode()


@pytest.mark.parametrize("path", ["/login/", "/", "/profile/", "/policy/", "room"])
def test_every_page_forbids_inline_scripts(client: Client, school_a: SchoolPeople, room: Room, path: str) -> None:
    publish(school_a)
    signed_in(client, school_a.student)
    response = client.get(f"/rooms/{room.pk}/" if path == "room" else path)
    policy = dict(
        part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";") if part.strip()
    )
    assert policy["script-src"] == "'self'"
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    # ...and the pages need none: no inline script, no inline handler, no inline style.
    page = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert not re.search(r"\son[a-z]+=", page)
    assert "style=" not in page
