"""Two browser tabs hold a conversation through a real daphne server (Chromium driven by Playwright)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import CHROMIUM, SchoolPeople, make_school
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


@pytest.fixture
def browser(servers: list[int], people: SchoolPeople) -> Iterator[Browser]:
    """Started after the database fixtures and stopped before their teardown: Playwright's event loop
    must not be running while Django touches the database in this thread."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def people() -> SchoolPeople:
    people = make_school("Browser School", "w")
    people.school.class_rooms_start_open = True
    people.school.save()
    # The server runs the real settings: hash the passwords with its hasher, not the tests' fast one.
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"]):
        for user in (people.student, people.teacher):
            user.set_password("pw")
            user.save(update_fields=["password"])
    return people


def sign_in(browser: Browser, base: str, username: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.wait_for_selector("#connection:has-text('connected')")
    return page


def test_two_tabs_talk(browser: Browser, servers: list[int], people: SchoolPeople) -> None:
    base = f"http://127.0.0.1:{servers[0]}"
    student = sign_in(browser, base, people.student.username)
    teacher = sign_in(browser, base, people.teacher.username)
    room = people.school_class.title
    for page in (student, teacher):
        page.get_by_role("button", name=room).click()
    student.fill("#body", "<b>Hello</b> miss")
    student.click("#composer button")
    teacher.wait_for_selector("#messages li:has-text('Hello')")
    line = teacher.locator("#messages li").last
    assert line.inner_text() == "S Test: <b>Hello</b> miss".replace("S Test", people.student.full_name)
    assert line.locator("b").count() == 0  # text, never HTML
    teacher.fill("#body", "Hello! Page 12.")
    teacher.click("#composer button")
    student.wait_for_selector("#messages li:has-text('Page 12')")
    assert student.locator("#messages li").last.inner_text() == f"{people.teacher.full_name} (staff): Hello! Page 12."
