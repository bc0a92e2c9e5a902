"""Websocket routes, and the socket application as served: origin-checked before anything reads the
session (a system check, `commonroom.E001`, makes sure it stays so)."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator

from messaging.routing import websocket_urlpatterns

websocket_application = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))

__all__ = ["websocket_application", "websocket_urlpatterns"]
