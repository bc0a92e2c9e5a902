"""Signing in: a lockout after repeated wrong passwords (django-axes), Argon2 hashes, and cookies that
stay on HTTPS and out of page scripts in production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import time_machine
from django.contrib.auth.hashers import check_password, identify_hasher, make_password
from django.test import Client, override_settings
from django.utils import timezone

from tests.conftest import SchoolPeople

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]


def sign_in(client: Client, username: str, password: str, address: str = "10.0.0.1") -> Any:
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.fixture(autouse=True)
def lockout_on(settings: Any) -> None:
    """The production sign-in backends (the suite's settings leave the lockout out)."""
    settings.AUTHENTICATION_BACKENDS = PRODUCTION_BACKENDS


class TestLockout:
    def test_five_wrong_passwords_pause_that_username_from_that_address(self, school_a: SchoolPeople) -> None:
        client = Client()
        name = school_a.student.username
        with time_machine.travel(timezone.now(), tick=False) as clock:
            for _ in range(4):
                assert sign_in(client, name, "wrong").status_code == 200  # the form again, with its error
            assert sign_in(client, name, "wrong").status_code == 429
            locked = sign_in(client, name, "pw")  # even the right password, now
            assert locked.status_code == 429
            assert "Signing in is paused" in locked.content.decode()
            assert "_auth_user_id" not in client.session
            # Someone else, or the same person from another network, is not held up.
            assert sign_in(Client(), school_a.other_student.username, "pw").status_code == 302
            assert sign_in(Client(), name, "pw", address="10.0.0.2").status_code == 302
            clock.shift(timedelta(minutes=16))  # the pause ends
            assert sign_in(client, name, "pw").status_code == 302

    def test_a_right_password_clears_the_count(self, school_a: SchoolPeople) -> None:
        client = Client()
        name = school_a.student.username
        for _ in range(4):
            sign_in(client, name, "wrong")
        assert sign_in(client, name, "pw").status_code == 302
        client.logout()
        for _ in range(4):
            assert sign_in(client, name, "wrong").status_code == 200
        assert sign_in(client, name, "pw").status_code == 302

    def test_the_admin_sign_in_is_locked_too(self, school_a: SchoolPeople) -> None:
        client = Client()
        for _ in range(5):
            client.post("/admin/login/", {"username": school_a.admin.username, "password": "no"}, REMOTE_ADDR="1.2.3.4")
        answer = client.post(
            "/admin/login/", {"username": school_a.admin.username, "password": "pw"}, REMOTE_ADDR="1.2.3.4"
        )
        assert answer.status_code == 429


def production_settings(*names: str) -> dict[str, Any]:
    """These settings as the production configuration has them (DEBUG off), read in a fresh process."""
    variables = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    variables |= {"DJANGO_SETTINGS_MODULE": "commonroom.settings", "SECRET_KEY": "x" * 50}
    variables.pop("SECURE_COOKIES", None)
    script = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}, default=str))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=variables, capture_output=True, text=True, timeout=60, check=True
    )
    return cast(dict[str, Any], json.loads(done.stdout))


def test_passwords_are_hashed_with_argon2_in_production() -> None:
    hashers = production_settings("PASSWORD_HASHERS")["PASSWORD_HASHERS"]
    assert hashers[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    with override_settings(PASSWORD_HASHERS=hashers):
        encoded = make_password("correct horse battery staple")
        assert identify_hasher(encoded).algorithm == "argon2"
        assert check_password("correct horse battery staple", encoded)
        # A password stored by the older hasher still signs in (and Django rehashes it on sign-in).
        older = make_password("old one", hasher="pbkdf2_sha256")
        assert check_password("old one", older)


def test_production_cookies_are_secure_and_the_lockout_is_on() -> None:
    found = production_settings(
        "DEBUG",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "SESSION_COOKIE_SAMESITE",
        "AUTHENTICATION_BACKENDS",
    )
    assert found == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "AUTHENTICATION_BACKENDS": PRODUCTION_BACKENDS,
    }
