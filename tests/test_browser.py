"""The web app in a real browser: Chromium driven by Playwright against live daphne servers.

Each page a test visits is also checked with axe-core: no serious or critical accessibility
violation. A TCP proxy between one browser and its server can cut the connection, to show what a
person sees while the socket is down and that nothing is lost or doubled when it comes back.
With COMMONROOM_SCREENSHOTS set to a folder, the screenshot test saves the main pages there
(`make screenshots` writes docs/screenshots/).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.db import connections, transaction
from django.test import Client, override_settings
from django.utils import timezone
from django_scopes import scopes_disabled
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect, sync_playwright

from classes.models import Enrollment, School, User
from classes.services import enroll
from messaging import services
from messaging.live import tell_user
from messaging.models import Message, Room
from moderation.models import AccessRecord, ModerationSettings
from tests.conftest import CHROMIUM, SchoolPeople, make_school
from tests.servers import Proxy, daphne_processes, database_proxy, the_database_url
from tests.test_e2e import servers

__all__ = ["servers"]  # the fixture, shared with the end-to-end tests

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
TIMEOUT = 15_000  # ms: a generous bound for anything a person waits for, on a loaded CI machine
expect.set_options(timeout=TIMEOUT)
axe = Axe()


@pytest.fixture
def browser(servers: list[int], people: SchoolPeople) -> Iterator[Browser]:
    """Started after the database fixtures and stopped before their teardown: Playwright's event loop
    must not be running while Django touches the database in this thread."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()
        # With Playwright's loop running, Django keeps this thread's connections apart from the usual
        # ones (asgiref's context-aware locals); close them here, or the test database cannot be dropped.
        connections.close_all()


@pytest.fixture
def proxy(servers: list[int]) -> Iterator[Proxy]:
    proxied = Proxy("127.0.0.1", servers[0])
    yield proxied
    proxied.close()


@pytest.fixture
def people() -> SchoolPeople:
    return make_school("Browser School", "w", open_class_rooms=True)


@pytest.fixture
def room(people: SchoolPeople) -> Room:
    with scopes_disabled():
        return Room.objects.get(school_class=people.school_class)


def base(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def signed_in(browser: Browser, port: int, user: Any, viewport: ViewportSize = DESKTOP) -> BrowserContext:
    """A browser context with a session of `user` (the sign-in form itself has its own test)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport=viewport)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base(port)}])
    return context


SCRIPT_ERRORS: list[str] = []


@pytest.fixture(autouse=True)
def database_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    """Playwright's sync API keeps an event loop in this thread, and Django refuses database calls in a
    thread with a running loop. Nothing here runs on that loop concurrently: the tests call Django
    and Playwright in turn, so the check is switched off for these tests only."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


@pytest.fixture(autouse=True)
def no_script_errors() -> Iterator[None]:
    """No page a test opened threw an uncaught JavaScript error (a CSP refusal included)."""
    SCRIPT_ERRORS.clear()
    yield
    assert SCRIPT_ERRORS == []


def open_page(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.on("pageerror", lambda error: SCRIPT_ERRORS.append(f"{url}: {error}"))
    page.on(
        "console",
        lambda message: (
            SCRIPT_ERRORS.append(f"{url}: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    page.goto(url)
    return page


def open_room(context: BrowserContext, port: int, room: Room) -> Page:
    page = open_page(context, f"{base(port)}/rooms/{room.pk}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("#messages")).to_be_attached()
    return page


def accessible(page: Page) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    results = axe.run(page)
    grave = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not grave, "\n".join(f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}" for v in grave)


def post(page: Page, text: str) -> None:
    page.locator("#body").fill(text)
    page.locator("#body").press("Enter")


def lines(page: Page, text: str) -> Any:
    return page.locator("#messages li.message", has_text=text)


def elsewhere(work: Callable[[], object]) -> None:
    """Run `work` in a thread of its own, as another person's request would: publishing live events
    calls the channel layer through async_to_sync, which refuses a thread with a running loop."""

    def run() -> None:
        try:
            work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result()


def say(user: Any, room: Room, *bodies: str) -> None:
    """Post as `user` through the services."""

    def post_all() -> None:
        for body in bodies:
            services.send_message(user=user, room_id=room.pk, client_id=uuid.uuid4(), body=body)

    elsewhere(post_all)


def count_messages(body: str) -> int:
    with scopes_disabled():
        return Message.objects.filter(body=body).count()


def answer_dialog(page: Page, text: str) -> None:
    dialog = page.locator("#dialog")
    expect(dialog).to_be_visible()
    dialog.locator("#dialog-text").fill(text)
    dialog.locator("#dialog-ok").click()
    expect(dialog).to_be_hidden()


def test_two_people_talk_live(browser: Browser, servers: list[int], people: SchoolPeople, room: Room) -> None:
    student_context = signed_in(browser, servers[0], people.student)
    student = open_room(student_context, servers[0], room)
    student_home = open_page(student_context, f"{base(servers[0])}/")
    teacher = open_room(signed_in(browser, servers[1], people.teacher), servers[1], room)  # the other server
    accessible(student)

    post(student, "Is the homework page 12?")
    expect(lines(teacher, "Is the homework page 12?")).to_have_count(1)
    heard = lines(teacher, "Is the homework page 12?")
    expect(heard.locator(".author")).to_have_text(people.student.full_name)
    expect(heard.locator(".badge")).to_have_count(0)
    expect(heard.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))

    post(teacher, "Yes, page 12.")
    reply = lines(student, "Yes, page 12.")
    expect(reply).to_have_count(1)
    expect(reply.locator(".badge")).to_have_text("Teacher")  # staff are marked
    expect(reply.locator(".body")).to_have_text("Yes, page 12.")
    # The student's other tab, on the room list, counts it live.
    expect(student_home.locator(f'li[data-room="{room.pk}"] .unread')).to_have_text("1 unread")
    accessible(teacher)
    accessible(student_home)

    # Editing and removal show as notices; the removed text leaves the page.
    lines(student, "Is the homework").get_by_role("button", name="Edit your message").click()
    answer_dialog(student, "Is the homework page 13?")
    expect(lines(teacher, "page 13?").locator(".edited")).to_have_text("(edited)")
    lines(teacher, "page 13?").get_by_role("button", name=re.compile("^Remove")).click()
    answer_dialog(teacher, "Please check the board")
    for page in (student, teacher):
        expect(page.locator("#messages li.removed .notice")).to_have_text("Removed by staff: Please check the board")
        expect(page.locator("#messages")).not_to_contain_text("page 13?")


def test_a_room_joined_appears_on_the_room_list(
    browser: Browser, servers: list[int], people: SchoolPeople, room: Room
) -> None:
    home = open_page(signed_in(browser, servers[0], people.student), f"{base(servers[0])}/")
    expect(home.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(home.locator(".room-list li")).to_have_count(2)  # the class and the year group

    def join() -> None:
        with scopes_disabled(), transaction.atomic():
            enroll(actor=people.admin, school_class=people.other_class, user=people.student, role="student")

    elsewhere(join)
    joined = home.locator(".room-list a", has_text=people.other_class.title)
    expect(joined).to_have_count(1)
    joined.click()
    expect(home.locator("h1")).to_have_text(people.other_class.title)
    expect(home.locator("#connection")).to_have_attribute("data-state", "connected")


def test_a_script_in_a_message_is_text(browser: Browser, servers: list[int], people: SchoolPeople, room: Room) -> None:
    student = open_room(signed_in(browser, servers[0], people.student), servers[0], room)
    teacher = open_room(signed_in(browser, servers[0], people.teacher), servers[0], room)
    attack = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><b>bold</b>'
    post(student, attack)
    line = lines(teacher, "window.pwned")
    expect(line.locator(".body")).to_have_text(attack)
    assert line.locator("script, img, b").count() == 0
    assert teacher.evaluate("window.pwned") is None
    assert student.evaluate("window.pwned") is None


def test_a_message_sent_while_the_socket_is_down_arrives_once(
    browser: Browser, servers: list[int], proxy: Proxy, people: SchoolPeople, room: Room
) -> None:
    student = open_room(signed_in(browser, proxy.port, people.student), proxy.port, room)
    teacher = open_room(signed_in(browser, servers[1], people.teacher), servers[1], room)
    proxy.cut()
    expect(student.locator("#connection")).to_have_attribute("data-state", re.compile("reconnecting|offline"))
    post(student, "Sent in the tunnel")
    expect(lines(student, "Sent in the tunnel")).to_have_class(re.compile(r"\bpending\b"))
    expect(student.locator("#body")).to_be_focused()  # focus stays in the composer after a send
    proxy.restore()
    expect(student.locator("#connection")).to_have_attribute("data-state", "connected", timeout=45_000)
    expect(lines(teacher, "Sent in the tunnel")).to_have_count(1)
    expect(lines(student, "Sent in the tunnel")).to_have_count(1)
    expect(lines(student, "Sent in the tunnel")).not_to_have_class(re.compile(r"\bpending\b"))
    assert count_messages("Sent in the tunnel") == 1

    # Saved, but the acknowledgement is lost on the way back: the resend after the reconnect
    # carries the same client id, and the server answers with the message it already has.
    proxy.downstream = False
    post(student, "Saved but not acknowledged")
    deadline = time.monotonic() + TIMEOUT / 1000
    while count_messages("Saved but not acknowledged") == 0:
        assert time.monotonic() < deadline, "the message never reached the server"
        time.sleep(0.1)
    expect(lines(student, "Saved but not acknowledged")).to_have_class(re.compile(r"\bpending\b"))
    proxy.cut()
    proxy.restore()
    expect(lines(student, "Saved but not acknowledged")).not_to_have_class(re.compile(r"\bpending\b"), timeout=45_000)
    expect(lines(student, "Saved but not acknowledged")).to_have_count(1)
    expect(lines(teacher, "Saved but not acknowledged")).to_have_count(1)
    assert count_messages("Saved but not acknowledged") == 1

    # And what was said while the socket was down arrives after the reconnect, in order; what was
    # removed meanwhile shows as removed.
    proxy.cut()
    post(teacher, "While you were away 1")
    post(teacher, "While you were away 2")
    expect(lines(teacher, "While you were away 2")).not_to_have_class(re.compile(r"\bpending\b"))
    lines(teacher, "Sent in the tunnel").get_by_role("button", name=re.compile("^Remove")).click()
    answer_dialog(teacher, "Off topic")
    proxy.restore()
    expect(lines(student, "While you were away")).to_have_count(2, timeout=45_000)
    expect(student.locator("#messages li.removed .notice")).to_have_text("Removed by staff: Off topic")
    expect(student.locator("#messages")).not_to_contain_text("Sent in the tunnel")
    texts = student.locator("#messages li.message .body").all_inner_texts()
    assert texts[-2:] == ["While you were away 1", "While you were away 2"]


def test_a_message_sent_while_the_database_is_away_waits_and_is_sent_once(
    tmp_path: Path, browser: Browser, people: SchoolPeople, room: Room
) -> None:
    """The server cannot reach PostgreSQL for a moment: the message waits in the page, saying so, and
    is sent again by itself (with the same client id) once the database is back: saved once."""
    link = database_proxy()
    try:
        with daphne_processes(tmp_path, 1, database_url=the_database_url(link.port)) as [server]:
            student = open_room(signed_in(browser, server.port, people.student), server.port, room)
            # "Connected" shows when the socket opens, before the server has read the rooms: wait for
            # a message to go through, so the cut finds the socket ready.
            post(student, "Before the database goes")
            expect(lines(student, "Before the database goes")).not_to_have_class(re.compile(r"\bpending\b"))
            link.cut()
            post(student, "Said while the database is away")
            line = lines(student, "Said while the database is away")
            expect(line.locator(".state-note")).to_have_text("Waiting for the server; it will be sent when it is back.")
            expect(line).to_have_class(re.compile(r"\bpending\b"))
            assert count_messages("Said while the database is away") == 0
            link.restore()
            expect(line).not_to_have_class(re.compile(r"\bpending\b"), timeout=20_000)
            expect(line).to_have_count(1)
            assert count_messages("Said while the database is away") == 1
    finally:
        link.close()


def test_a_muted_student_sees_why_and_cannot_post(
    browser: Browser, servers: list[int], people: SchoolPeople, room: Room
) -> None:
    student = open_room(signed_in(browser, servers[0], people.student), servers[0], room)
    teacher = open_room(signed_in(browser, servers[1], people.teacher), servers[1], room)
    teacher.get_by_text("Who is in this room").click()
    teacher.get_by_role("button", name=f"Mute {people.student.full_name}").click()
    answer_dialog(teacher, "Off topic three times")
    banner = student.locator("#banner")
    expect(banner).to_have_text("A teacher has muted you in this room: Off topic three times")
    expect(student.locator("#body")).to_be_disabled()
    expect(student.locator("#composer button[type=submit]")).to_be_disabled()
    expect(teacher.locator(f'li[data-person="{people.student.pk}"] .mute-state')).to_contain_text("Off topic")
    accessible(student)
    accessible(teacher)

    # A reload (or a reconnect) keeps it: the server says so in `ready`.
    student.reload()
    expect(student.locator("#banner")).to_have_text("A teacher has muted you in this room: Off topic three times")
    teacher.get_by_role("button", name=f"Unmute {people.student.full_name}").click()
    answer_dialog(teacher, "Thanks for listening")
    expect(student.locator("#banner")).to_be_hidden()
    expect(student.locator("#body")).to_be_enabled()
    post(student, "Sorry, miss")
    expect(lines(teacher, "Sorry, miss")).to_have_count(1)


def test_a_locked_room(browser: Browser, servers: list[int], people: SchoolPeople, room: Room) -> None:
    student = open_room(signed_in(browser, servers[0], people.student), servers[0], room)
    teacher = open_room(signed_in(browser, servers[1], people.teacher), servers[1], room)
    teacher.get_by_role("button", name="Lock the room", exact=True).click()
    answer_dialog(teacher, "Exam in progress")
    for page in (student, teacher):
        expect(page.locator("#banner")).to_have_text("Exam in progress")
        expect(page.locator("#body")).to_be_disabled()
        expect(page.locator("#room-state")).to_have_text("Locked")
    expect(teacher.get_by_role("button", name="Lock the room", exact=True)).to_be_hidden()
    accessible(student)
    teacher.get_by_role("button", name="Unlock the room").click()
    answer_dialog(teacher, "")
    expect(student.locator("#banner")).to_be_hidden()
    expect(student.locator("#body")).to_be_enabled()


def test_quiet_hours(browser: Browser, servers: list[int], people: SchoolPeople, room: Room) -> None:
    local = timezone.localtime(timezone.now(), ZoneInfo(people.school.time_zone))
    start, end = (local - timedelta(hours=1)).time(), (local + timedelta(hours=1)).time()
    with scopes_disabled():
        School.objects.filter(pk=people.school.pk).update(quiet_hours_start=start, quiet_hours_end=end)
    student = open_room(signed_in(browser, servers[0], people.student), servers[0], room)
    expect(student.locator("#banner")).to_have_text(f"Quiet hours: posting opens again at {end:%H:%M}.")
    expect(student.locator("#body")).to_be_disabled()
    expect(student.locator("#room-state")).to_have_text("Quiet hours")
    accessible(student)


def test_the_policy_must_be_accepted_before_posting(
    browser: Browser, servers: list[int], people: SchoolPeople, room: Room
) -> None:
    services.publish_policy(actor=None, school_id=people.school.pk, text="Be kind to everyone here.")
    with scopes_disabled():
        School.objects.filter(pk=people.school.pk).update(sign_in_message="Welcome back to Browser School.")
    # The servers run the real settings: hash with their hasher, not the tests' fast one.
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"]):
        people.student.set_password("correct horse")
        people.student.save(update_fields=["password"])
    context = browser.new_context(viewport=DESKTOP)
    page = open_page(context, f"{base(servers[0])}/login/")
    expect(page.locator(".school-message")).to_have_text("Welcome back to Browser School.")
    accessible(page)
    page.get_by_label("Username").fill(people.student.username)
    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Sign in").click()

    # First visit: the policy.
    expect(page).to_have_url(f"{base(servers[0])}/policy/")
    expect(page.locator(".policy-text")).to_have_text("Be kind to everyone here.")
    accessible(page)
    page.get_by_role("button", name="Not now: only read").click()
    expect(page).to_have_url(f"{base(servers[0])}/")
    expect(page.locator(".banner")).to_contain_text("you cannot post until you accept")
    page.locator(".room-list a", has_text=people.school_class.title).click()
    expect(page.locator("#banner")).to_contain_text("Accept your school's acceptable-use policy before you post.")
    expect(page.locator("#body")).to_be_disabled()

    page.locator("#banner").get_by_role("link", name="Read the policy").click()
    page.get_by_role("button", name="I accept").click()
    expect(page).to_have_url(f"{base(servers[0])}/rooms/{room.pk}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("#body")).to_be_enabled()
    post(page, "I have read it")
    expect(lines(page, "I have read it")).not_to_have_class(re.compile(r"\bpending\b"))

    page.get_by_role("link", name="Profile").click()
    expect(page.locator("main")).to_contain_text("You accepted version 1 on")
    expect(page.locator("main")).to_contain_text(people.school_class.title)
    accessible(page)


def test_another_class_room_cannot_be_opened_by_its_address(
    browser: Browser, servers: list[int], people: SchoolPeople, room: Room
) -> None:
    say(people.teacher, room, "Class secret")
    page = signed_in(browser, servers[0], people.other_student).new_page()
    response = page.goto(f"{base(servers[0])}/rooms/{room.pk}/")
    assert response is not None
    assert response.status == 404
    missing = page.context.new_page().goto(f"{base(servers[0])}/rooms/{room.pk + 1000}/")
    assert missing is not None
    assert missing.status == 404
    assert "Class secret" not in page.content()
    assert people.school_class.title not in page.content()


def test_keyboard_only(browser: Browser, servers: list[int], people: SchoolPeople, room: Room) -> None:
    say(people.teacher, room, "Any questions?")
    page = open_room(signed_in(browser, servers[0], people.student), servers[0], room)
    expect(lines(page, "Any questions?")).to_have_count(1)
    composer = page.get_by_label(f"Message {people.school_class.title}")
    expect(composer).to_have_id("body")  # the composer is labelled

    # Tab goes through the page in reading order: the skip link first, the conversation before the composer.
    visited: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        visited.append(
            page.evaluate("(e => e.id || e.getAttribute('aria-label') || e.textContent.trim())(document.activeElement)")
        )
        if visited[-1] == "Send":
            break
    assert visited[0] == "Skip to content"
    assert visited.index("Report message from " + people.teacher.full_name) < visited.index("body")
    assert visited[-2:] == ["body", "Send"]

    # Typing and Enter send; the focus stays in the composer for the next message.
    composer.focus()
    page.keyboard.type("Can we use calculators?")
    page.keyboard.press("Enter")
    expect(lines(page, "Can we use calculators?")).not_to_have_class(re.compile(r"\bpending\b"))
    expect(composer).to_be_focused()
    expect(composer).to_have_value("")
    page.keyboard.type("Line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    expect(composer).to_have_value("Line one\nline two")

    # A report by keyboard: the dialog takes the focus, Escape gives it back.
    report = lines(page, "Any questions?").get_by_role("button", name="Report message from " + people.teacher.full_name)
    report.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#category")).to_be_focused()
    accessible(page)
    page.keyboard.press("Escape")
    expect(report).to_be_focused()
    page.keyboard.press("Enter")
    page.locator("#category").select_option("bullying")
    page.keyboard.press("Tab")
    expect(page.locator("#dialog-text")).to_be_focused()
    page.keyboard.type("It upset me")
    page.get_by_role("button", name="Send report").press("Enter")
    expect(page.locator("#notice")).to_contain_text("Your report has gone to the staff")


def test_a_school_day_without_a_reload_does_not_grow(
    browser: Browser, servers: list[int], proxy: Proxy, people: SchoolPeople, room: Room
) -> None:
    page = open_room(signed_in(browser, proxy.port, people.student), proxy.port, room)
    devtools = page.context.new_cdp_session(page)
    devtools.send("Performance.enable")

    def measure() -> dict[str, float]:
        devtools.send("HeapProfiler.collectGarbage")
        return {m["name"]: m["value"] for m in devtools.send("Performance.getMetrics")["metrics"]}

    post(page, "Good morning")
    expect(lines(page, "Good morning")).not_to_have_class(re.compile(r"\bpending\b"))
    before = measure()
    for hour in range(8):  # eight lessons: a reconnect each, and a busy room
        proxy.cut()
        expect(page.locator("#connection")).not_to_have_attribute("data-state", "connected")
        proxy.restore()
        expect(page.locator("#connection")).to_have_attribute("data-state", "connected", timeout=45_000)
        say(people.teacher, room, *(f"h{hour} m{n}" for n in range(100)))
        expect(lines(page, f"h{hour} m99")).to_have_count(1)
    after = measure()
    shown = page.locator("#messages li").count()
    assert shown <= 300, f"{shown} messages kept on the page"
    assert after["JSEventListeners"] - before["JSEventListeners"] <= 10, (before, after)
    # Bounded by the lines kept (a line is about fifteen nodes), not by the 800 that came, and no
    # detached nodes pile up.
    assert after["Nodes"] < before["Nodes"] + 300 * 20, (before, after)
    expect(page.get_by_role("button", name="Load older messages")).to_be_visible()


@pytest.mark.parametrize(("label", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_the_main_pages(  # noqa: PLR0917  # pytest passes fixtures as arguments
    browser: Browser, servers: list[int], people: SchoolPeople, room: Room, label: str, viewport: ViewportSize
) -> None:
    """Every main page, at desktop and phone width, is accessible; with COMMONROOM_SCREENSHOTS set, saved."""
    folder = os.environ.get("COMMONROOM_SCREENSHOTS")
    services.publish_policy(actor=None, school_id=people.school.pk, text="Be kind. Keep personal details private.")
    services.accept_policy(user=people.student, version=1)
    say(people.teacher, room, "Good morning! Today: chapter 3.")
    say(people.student, room, "Is the quiz on Friday?")
    say(people.teacher, room, "Yes, Friday, first lesson.")
    say(people.student, room, "Thank you!")
    pages: list[tuple[str, Page]] = []
    login = browser.new_context(viewport=viewport).new_page()
    login.goto(f"{base(servers[0])}/login/")
    pages.append(("sign-in", login))
    student = signed_in(browser, servers[0], people.student, viewport)
    home = open_page(student, f"{base(servers[0])}/")
    expect(home.locator("#connection")).to_have_attribute("data-state", "connected")
    pages.append(("home", home))
    pages.append(("room-student", open_room(student, servers[0], room)))
    teacher_room = open_room(signed_in(browser, servers[0], people.teacher, viewport), servers[0], room)
    pages.append(("room-teacher", teacher_room))
    pages.append(("profile", open_page(student, f"{base(servers[0])}/profile/")))
    pages.append(("policy", open_page(student, f"{base(servers[0])}/policy/")))
    for name, page in pages:
        expect(page.locator("h1")).to_be_visible()
        accessible(page)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"{name}-{label}.png"))


def test_the_case_queue_updates_live_and_alerts_reach_staff_anywhere(
    browser: Browser, servers: list[int], people: SchoolPeople, room: Room
) -> None:
    queue = open_page(signed_in(browser, servers[0], people.moderator), f"{base(servers[0])}/cases/")
    expect(queue.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(queue.locator("#no-cases")).to_be_visible()
    lead_home = open_page(signed_in(browser, servers[1], people.safeguarding_lead), f"{base(servers[1])}/")
    expect(lead_home.locator("#connection")).to_have_attribute("data-state", "connected")
    say(people.student, room, "nobody likes you")
    row = queue.locator("table.cases tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Bullying or harassment")
    expect(row).to_contain_text("Class teachers")
    say(people.student, room, "I want to die")
    # The graver case goes to the top; the safeguarding lead is alerted on whatever page they are on.
    expect(row).to_have_count(1)  # level 3: no longer the moderator's
    alert = lead_home.locator("#alerts .alert-line")
    expect(alert).to_contain_text("Self-harm or suicide risk")
    expect(alert).not_to_contain_text("I want to die")
    alert.get_by_role("link", name="Open the case").click()
    expect(lead_home.locator("li.context-line.subject")).to_contain_text("I want to die")
    accessible(queue)
    accessible(lead_home)


def test_hiding_a_message_from_its_case(browser: Browser, servers: list[int], people: SchoolPeople, room: Room) -> None:
    student = open_room(signed_in(browser, servers[0], people.student), servers[0], room)
    post(student, "nobody likes you")
    expect(student.locator("#messages li.message[data-id]", has_text="nobody likes you")).to_have_count(1)  # saved
    with scopes_disabled():
        case = Message.objects.get(body="nobody likes you").cases.get()
    teacher = open_page(signed_in(browser, servers[1], people.teacher), f"{base(servers[1])}/cases/{case.pk}/")
    expect(teacher.locator("li.context-line.subject")).to_contain_text("nobody likes you")
    accessible(teacher)
    teacher.get_by_role("button", name="Acknowledge").click()
    expect(teacher.locator(".flash")).to_have_text("You have acknowledged the case.")
    teacher.get_by_label("Take action").select_option("hide_message")
    teacher.get_by_label("Reason (required to hide, mute, lock or suspend)").fill("Unkind to a classmate")
    teacher.get_by_role("button", name="Do it").click()
    expect(teacher.locator(".flash")).to_have_text("Done.")
    expect(student.locator("#messages li.message")).to_contain_text("Removed by staff: Unkind to a classmate")
    expect(teacher.locator(".history")).to_contain_text("case.action")


def test_the_review_pages_ask_why_first(browser: Browser, servers: list[int], people: SchoolPeople, room: Room) -> None:
    say(people.student, room, "the bus was late again")
    context = signed_in(browser, servers[0], people.safeguarding_lead)
    page = open_page(context, f"{base(servers[0])}/review/search/?text=bus")
    expect(page.get_by_role("heading", name="Safeguarding review")).to_be_visible()  # the reason comes first
    accessible(page)
    page.get_by_label("Handling a case").check()
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("ol.results li")).to_contain_text("the bus was late again")
    accessible(page)
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Safeguarding dashboard")).to_be_visible()
    accessible(page)


def test_reading_a_room_from_outside_asks_why_first(
    browser: Browser, servers: list[int], people: SchoolPeople, room: Room
) -> None:
    """A moderator who is not a member of the room gives a reason on the room's page, which the client
    gives again on the socket before it loads anything (tests/test_reading_on_record.py has the rest)."""
    say(people.student, room, "the bus was late again")
    page = open_page(signed_in(browser, servers[0], people.moderator), f"{base(servers[0])}/rooms/{room.pk}/")
    expect(page.get_by_role("heading", name=f"Why are you reading {people.school_class.title}?")).to_be_visible()
    accessible(page)
    page.get_by_label("Handling a case").check()
    page.get_by_role("button", name="Read the room").click()
    expect(lines(page, "the bus was late again")).to_have_count(1)
    expect(page.locator("#look")).to_be_hidden()
    say(people.student, room, "and again today")
    expect(lines(page, "and again today")).to_have_count(1)  # live, under the socket's look
    accessible(page)
    with scopes_disabled():
        kinds = set(AccessRecord.objects.filter(reviewer=people.moderator).values_list("kind", flat=True))
    assert kinds == {"room", "room page"}


def test_the_client_asks_why_when_a_member_becomes_an_outside_reader(
    browser: Browser, servers: list[int], people: SchoolPeople, room: Room
) -> None:
    """A moderator who teaches the class reads it as a member; once that enrollment ends, the open page asks
    for a reason (the review pages' categories, in a form of its own) before it shows anything new."""
    with scopes_disabled():
        Enrollment.objects.create(
            school=people.school, school_class=people.school_class, user=people.moderator, role="teacher"
        )
    say(people.student, room, "first")
    page = open_room(signed_in(browser, servers[0], people.moderator), servers[0], room)
    expect(lines(page, "first")).to_have_count(1)
    expect(page.locator("#look")).to_be_hidden()

    def leave() -> None:
        with scopes_disabled(), transaction.atomic():
            Enrollment.objects.filter(user=people.moderator).update(active=False)
        tell_user(people.moderator.pk, "rooms.changed")

    elsewhere(leave)
    form = page.get_by_role("form", name="Why are you reading this room?")
    expect(form).to_be_visible()
    say(people.student, room, "not yet")
    form.get_by_label("Something else (say what)").check()
    form.get_by_role("button", name="Read the room").click()
    expect(form.get_by_role("alert")).to_have_text("Say why you are looking.")
    accessible(page)
    expect(lines(page, "not yet")).to_have_count(0)
    form.get_by_label("In your words").fill("Cover for Ms Test")
    form.get_by_role("button", name="Read the room").click()
    expect(form).to_be_hidden()
    expect(lines(page, "not yet")).to_have_count(1)  # loaded once the socket had the reason
    with scopes_disabled():
        look = AccessRecord.objects.get(reviewer=people.moderator)
    assert (look.kind, look.reason, look.reason_text) == ("room", "other", "Cover for Ms Test")


def test_a_cry_for_help_is_withheld_answered_and_reaches_the_lead(
    browser: Browser, servers: list[int], people: SchoolPeople, room: Room
) -> None:
    """A student writes that they want to end their life: they see their message with Commonroom's answer
    and the school's sources of help; a classmate never sees it; the safeguarding lead is alerted at once."""
    with scopes_disabled():
        ModerationSettings.objects.create(
            school=people.school, help_sources="Childline: 0800 1111\nSamaritans: 116 123"
        )
        classmate = User.objects.create_user(
            "w.classmate", password="pw", school=people.school, role=User.Role.STUDENT, given_name="Cal"
        )

    def join() -> None:  # enrolling publishes live events: in a thread of its own, beside Playwright's loop
        with scopes_disabled(), transaction.atomic():
            enroll(actor=None, school_class=people.school_class, user=classmate, role=Enrollment.Role.STUDENT)

    elsewhere(join)
    lead = open_page(signed_in(browser, servers[1], people.safeguarding_lead), f"{base(servers[1])}/")
    expect(lead.locator("#connection")).to_have_attribute("data-state", "connected")
    theirs = open_room(signed_in(browser, servers[1], classmate), servers[1], room)
    student = open_room(signed_in(browser, servers[0], people.student), servers[0], room)
    post(student, "honestly i want to unalive myself tonight")
    line = lines(student, "unalive myself")
    answer = line.locator(".answer")
    expect(answer).to_contain_text("A trusted adult at school will check in with you soon.")
    expect(answer).to_contain_text("Childline: 0800 1111")
    expect(answer).to_contain_text("Samaritans: 116 123")
    alert = lead.locator("#alerts .alert-line")
    expect(alert).to_contain_text("Self-harm or suicide risk")
    expect(alert).not_to_contain_text("unalive")
    # The classmate sees the student's next, ordinary message, and never the one before it.
    post(student, "anyway what page is the homework on")
    expect(lines(theirs, "what page is the homework on")).to_have_count(1)
    expect(lines(theirs, "unalive")).to_have_count(0)
    accessible(student)
