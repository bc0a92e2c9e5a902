"""The ASGI application: HTTP through Django, websockets through the router.

The origin validator wraps the session/auth stack, which wraps the router, so
a socket from a foreign page is refused before anything reads its session.
"""

import gc
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "commonroom.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs Django set up first)

from commonroom.routing import websocket_application  # noqa: E402
from moderation import clock, profanity  # noqa: E402

profanity.load()  # the model loads with the server (about 1.4 s), not on the first message

# Everything loaded so far (Django, the apps, the screening model) lives as long as the process: moved
# out of the collector's reach, it is not walked again by every full collection, which with thousands
# of sockets open otherwise stalls the server for a few hundred milliseconds (docs/performance.md).
gc.freeze()

router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_application,
    }
)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The router, with the case clock started in the server's event loop on its first connection."""
    clock.ensure_started()
    await router(scope, receive, send)
