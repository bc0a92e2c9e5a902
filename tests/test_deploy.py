"""`manage.py check --deploy --fail-level WARNING` passes with the production settings; the project's
own checks catch a socket route without an origin check, an in-memory channel layer and DEBUG."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import manage_check

ROOT = Path(__file__).resolve().parent.parent

# The production environment (docs/operations.md, "Production settings"): DEBUG unset, behind a TLS proxy.
PRODUCTION = {
    "SECRET_KEY": "k" * 20 + "production-like-secret-key-for-the-check-only",
    "ALLOWED_HOSTS": "school.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://school.example.org",
    "DATABASE_URL": "postgres://commonroom@db.internal:5432/commonroom",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "BEHIND_TLS_PROXY": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def check_deploy(**variables: str) -> subprocess.CompletedProcess[str]:
    return manage_check("--deploy", "--fail-level", "WARNING", **variables)


def test_the_production_settings_pass_the_deployment_checks() -> None:
    done = check_deploy(**PRODUCTION)
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        ({"REDIS_URL": ""}, "commonroom.W001"),
        ({"DEBUG": "true"}, "commonroom.E002"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SECURE_COOKIES": "false"}, "security.W012"),
    ],
)
def test_a_weaker_setting_fails_them(change: dict[str, str], finding: str) -> None:
    done = check_deploy(**{**PRODUCTION, **change})
    assert done.returncode != 0
    assert finding in done.stderr


def test_a_socket_route_without_an_origin_check_is_an_error(monkeypatch: Any) -> None:
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter

    from commonroom import checks, routing

    assert checks.socket_checks_origin() == []
    monkeypatch.setattr(routing, "websocket_application", AuthMiddlewareStack(URLRouter(routing.websocket_urlpatterns)))
    assert [message.id for message in checks.socket_checks_origin()] == ["commonroom.E001"]
