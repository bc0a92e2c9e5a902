"""Websocket routes."""

from messaging.routing import websocket_urlpatterns

__all__ = ["websocket_urlpatterns"]
