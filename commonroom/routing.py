"""Websocket routes, and the socket application as served: origin-checked before anything reads the
session (a system check, `commonroom.E001`, makes sure it stays so)."""

from __future__ import annotations

from channels.auth import AuthMiddleware
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings

from messaging.consumers import CoolingDownGuard
from messaging.routing import websocket_urlpatterns


def allowed_origins() -> list[str]:
    """The pages that may open the socket. Served over HTTPS (secure cookies, DEBUG off): only the
    site's hosts over https, on its standard port, and the origins in CSRF_TRUSTED_ORIGINS. Otherwise
    (development, plain HTTP on a local network): the site's hosts over either scheme and any port.
    A page of another site, a `null` origin (a sandboxed frame, a file) and no origin never may."""
    hosts = list(settings.ALLOWED_HOSTS) or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    if settings.DEBUG or not getattr(settings, "SESSION_COOKIE_SECURE", False):
        return hosts
    trusted = [origin.replace("://*.", "://.") for origin in settings.CSRF_TRUSTED_ORIGINS]
    return ["*" if host == "*" else f"https://{host}" for host in hosts] + trusted


def socket_application() -> OriginValidator:
    """Channels' AuthMiddlewareStack, with a guard between reading the cookies and reading the session
    that turns away, without a database query, a session just closed for flooding."""
    sessions = SessionMiddleware(AuthMiddleware(URLRouter(websocket_urlpatterns)))
    return OriginValidator(CookieMiddleware(CoolingDownGuard(sessions)), allowed_origins())


websocket_application = socket_application()

__all__ = ["allowed_origins", "socket_application", "websocket_application", "websocket_urlpatterns"]
