"""`/healthz` reports the database and the channel layer."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthy(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}


def test_a_broken_channel_layer_makes_it_unhealthy(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        async def new_channel(self, prefix: str = "") -> str:
            raise ConnectionError("redis is down")

    monkeypatch.setattr("commonroom.health.get_channel_layer", Broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "ok", "channel_layer": "error"}


def test_a_broken_database_makes_it_unhealthy(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connection

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("database is down")

    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "error"


@pytest.mark.redis
def test_healthy_with_redis(client: Client) -> None:
    from django.conf import settings

    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    response = client.get("/healthz")
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}


def test_the_front_door_asks_to_sign_in(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"
