"""How a Commonroom server process starts: daphne, with its WebSocket limits set here and nowhere else.

    python -m commonroom.serve -b 0.0.0.0 -p 8000 [more daphne options]

`make demo`, the Docker image, the compose file, the end-to-end tests and the load benchmark all start
daphne through this module, so they all run with the same limits. Options given on the command line
come after these and win (the fault tests shorten the keep-alive that way).
"""

from __future__ import annotations

import sys

from daphne.cli import CommandLineInterface

APPLICATION = "commonroom.asgi:application"

# A frame is at most 16,384 characters (`messaging.consumers.MAX_FRAME`), which is at most 64 KiB of
# UTF-8. daphne's own default is 1 MiB: anything larger than our limit is refused by the WebSocket
# layer (close 1009) before the application reads it.
WEBSOCKET_MAX_BYTES = 64 * 1024

# The server pings every socket this often (seconds) and drops one that has not answered the ping
# within the timeout. A client that stops reading stops answering, so this also bounds what the
# server buffers for it: at most a room's traffic over PING_INTERVAL + PING_TIMEOUT seconds.
PING_INTERVAL = 20
PING_TIMEOUT = 30

OPTIONS = [
    "--websocket-max-message-size",
    str(WEBSOCKET_MAX_BYTES),
    "--websocket-max-frame-size",
    str(WEBSOCKET_MAX_BYTES),
    "--ping-interval",
    str(PING_INTERVAL),
    "--ping-timeout",
    str(PING_TIMEOUT),
    # A chat socket stays open as long as its page: no overall time limit (sessions are re-checked instead).
    "--websocket_timeout",
    "-1",
]


def main(argv: list[str] | None = None, application: str = APPLICATION) -> None:
    CommandLineInterface().run([*OPTIONS, *(sys.argv[1:] if argv is None else argv), application])


if __name__ == "__main__":
    main()
