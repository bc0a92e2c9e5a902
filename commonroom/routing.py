"""Websocket routes. The messaging consumer is added here by the messaging app."""

from typing import Any

websocket_urlpatterns: list[Any] = []
