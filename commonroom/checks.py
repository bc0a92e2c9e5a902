"""The project's own system checks (`manage.py check`, and with `--deploy` the deployment ones)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.security)
def socket_checks_origin(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The socket is authenticated by the session cookie, which a browser also sends from another
    site's page: the route must refuse foreign origins before it reads the session."""
    from channels.security.websocket import OriginValidator  # noqa: PLC0415  (needs the apps loaded)

    from commonroom import routing  # noqa: PLC0415

    if isinstance(routing.websocket_application, OriginValidator):
        return []
    return [
        Error(
            "The socket route does not check the origin of the page that opens it.",
            hint="Wrap it in AllowedHostsOriginValidator (commonroom/routing.py).",
            id="commonroom.E001",
        )
    ]


@register(Tags.security, deploy=True)
def shared_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """In production the channel layer is Redis: the in-memory one reaches only the sockets of its own
    process, so a second daphne process would never hear the first one's messages."""
    backend = str(settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", ""))
    if backend.startswith("channels_redis."):
        return []
    return [
        Warning(
            f"The channel layer is {backend or 'missing'}, not Redis.",
            hint="Set REDIS_URL so that every daphne process shares one channel layer.",
            id="commonroom.W001",
        )
    ]


@register(Tags.security, deploy=True)
def debug_off(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not settings.DEBUG:
        return []
    return [
        Error(
            "DEBUG is on: error pages would show children's messages and the settings to anyone.",
            hint="Unset DEBUG (it is off by default).",
            id="commonroom.E002",
        )
    ]
