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

# The garbage collector, tuned for a server holding thousands of sockets (docs/performance.md). What is
# loaded by now (Django, the apps, the screening model) lives as long as the process: frozen, it is not
# walked again by every full collection. And young collections run every 50,000 allocations rather
# than 700, so the short-lived objects of a frame die before one runs instead of being promoted: full
# collections, which with 2,000 sockets open stall the server for 250 ms or more, become rare.
gc.freeze()
gc.set_threshold(50_000, 20, 100)

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
