"""Configuration comes from the environment; a wrong value stops start-up with a sentence naming the variable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from commonroom import env
from tests.conftest import manage_check

ROOT = Path(__file__).resolve().parent.parent


def start(**variables: str) -> subprocess.CompletedProcess[str]:
    """Run `manage.py check` with exactly these settings variables."""
    return manage_check(**variables)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"DEBUG": "0"}, "SECRET_KEY must be set when DEBUG is off"),
        ({"DEBUG": "maybe"}, "DEBUG must be one of"),
        ({"DEBUG": "1", "DATABASE_URL": "mysql://root@localhost/x"}, "DATABASE_URL must be a URL starting with"),
        ({"DEBUG": "1", "REDIS_URL": "http://localhost:6379"}, "REDIS_URL must be a URL starting with"),
        ({"DEBUG": "1", "ALLOWED_HOSTS": "https://school.example.org"}, "ALLOWED_HOSTS must be a comma-separated list"),
        ({"DEBUG": "1", "DATABASE_CONN_MAX_AGE": "soon"}, "DATABASE_CONN_MAX_AGE must be a whole number"),
        ({"DEBUG": "1", "LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of CRITICAL, DEBUG, ERROR, INFO, WARNING"),
        (
            {"DEBUG": "1", "CSRF_TRUSTED_ORIGINS": "school.example.org"},
            "CSRF_TRUSTED_ORIGINS must be a comma-separated list of origins",
        ),
    ],
    ids=[
        "secret-key",
        "debug",
        "database-url",
        "redis-url",
        "allowed-hosts",
        "conn-max-age",
        "log-level",
        "csrf-origins",
    ],
)
def test_a_wrong_value_stops_start_up(variables: dict[str, str], message: str) -> None:
    result = start(**variables)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_embedded_default_starts(tmp_path: Path) -> None:
    result = start(DEBUG="1", COMMONROOM_DATA_DIR=str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data").is_dir()  # made for the SQLite file


def test_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    monkeypatch.setenv("X_INT", "-3")
    assert env.env_bool("X_BOOL") is True
    monkeypatch.setenv("X_EMPTY", "")
    assert env.env_bool("X_EMPTY", default=True) is True  # set but empty: the default, not "off"
    assert env.env_list("X_LIST", []) == ["a", "b", "c"]
    with pytest.raises(ImproperlyConfigured, match="X_INT must be at least 0"):
        env.env_int("X_INT", 1, minimum=0)
    assert env.env_url("X_MISSING", None, schemes={"redis"}) is None
    assert env.hosts("X_MISSING", ["localhost"]) == ["localhost"]


@pytest.mark.redis
async def test_an_idle_socket_outlives_the_redis_read_timeout() -> None:
    """A consumer waits on the channel layer for as long as its room is quiet. redis-py 8 times a
    read out after 5 s unless told otherwise, which would drop every socket idle that long."""
    import asyncio

    from channels_redis.pubsub import RedisPubSubChannelLayer
    from django.conf import settings

    # A layer of its own, configured as the real one.
    layer = RedisPubSubChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])
    try:
        channel = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(7)  # nothing comes for longer than the read timeout; nothing breaks
        assert not waiting.done()
        await layer.send(channel, {"type": "still.here"})
        assert await asyncio.wait_for(waiting, timeout=5) == {"type": "still.here"}
        await layer.send(channel, {"type": "still.here"})
        assert await asyncio.wait_for(layer.receive(channel), timeout=5) == {"type": "still.here"}
    finally:
        await layer.flush()
