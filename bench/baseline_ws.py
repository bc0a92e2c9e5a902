"""Baseline B0 of the load benchmark: a bare `websockets` server that relays to rooms in memory.

No database, no audit, no screening, no channel layer: the least work a relay can do, to compare
Commonroom's cost per delivery with. It speaks the subset of Commonroom's protocol the benchmark uses:
the client names itself and its rooms in the query string (`/ws/?user=7&rooms=3,4`), gets `ready`,
sends `send` frames (answered with `ack`) and receives every room's `message` frames, its own included.
Each frame is serialized once for the whole room.

    .venv/bin/python bench/baseline_ws.py --port 8101
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

rooms: defaultdict[int, set[ServerConnection]] = defaultdict(set)
last_seq: defaultdict[int, int] = defaultdict(int)


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


async def relay(socket: ServerConnection) -> None:
    query = parse_qs(urlsplit(socket.request.path if socket.request else "").query)
    user = int(query.get("user", ["0"])[0])
    joined = [int(room) for room in query.get("rooms", [""])[0].split(",") if room]
    for room in joined:
        rooms[room].add(socket)
    try:
        await socket.send(_dumps({"type": "ready", "rooms": [{"id": room} for room in joined]}))
        async for text in socket:
            frame = json.loads(text)
            room = frame.get("room")
            if frame.get("type") != "send" or room not in joined:
                await socket.send(_dumps({"type": "error", "code": "invalid_frame", "detail": "Not here."}))
                continue
            last_seq[room] += 1
            message = {"room": room, "seq": last_seq[room], "author": {"id": user}, "body": frame.get("body")}
            await socket.send(_dumps({"type": "ack", "client_id": frame.get("client_id"), "message": message}))
            broadcast(rooms[room], _dumps({"type": "message", "message": message}))
    finally:
        for room in joined:
            rooms[room].discard(socket)


async def main(host: str, port: int) -> None:
    async with serve(relay, host, port, compression=None, max_size=64 * 1024) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.host, arguments.port))
