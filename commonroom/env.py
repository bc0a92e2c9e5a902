"""Typed readers for configuration from the environment.

Each helper fails fast: a value that cannot be used stops start-up with
ImproperlyConfigured and a sentence naming the variable, instead of letting a
typo surface later as a confusing runtime error.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no or on/off, not {value!r}.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}.")
    return number


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = (os.environ.get(name) or "").strip() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(sorted(choices))}, not {value!r}.")
    return value


def origins(name: str) -> list[str]:
    """CSRF_TRUSTED_ORIGINS-style list: scheme and host, such as https://school.example.org."""
    values = env_list(name, [])
    for origin in values:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ImproperlyConfigured(
                f"{name} must be a comma-separated list of origins such as "
                f"'https://school.example.org', not {origin!r}."
            )
    return values


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(name: str, default: str | None, *, schemes: set[str]) -> str | None:
    """A URL whose scheme is one of `schemes`; an empty value means the default."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    value = value.strip()
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with one of {allowed} (for example {sorted(schemes)[0]}://...), "
            f"not {value!r}."
        )
    return value


def hosts(name: str, default: list[str]) -> list[str]:
    """ALLOWED_HOSTS-style list: bare host names, no scheme, port or path."""
    values = env_list(name, default)
    for host in values:
        if "/" in host or " " in host or (host.count(":") == 1 and not host.startswith("[")):
            raise ImproperlyConfigured(
                f"{name} must be a comma-separated list of host names such as "
                f"'school.example.org,localhost' (no scheme, port or path), not {host!r}."
            )
    return values
