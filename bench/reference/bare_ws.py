"""Reference 1, the floor: a bare ``websockets`` broadcast server.

Every text message a client sends goes to every connected client (the sender too), with
``websockets.broadcast``: one encoding, written to each socket without awaiting it. No
framework, no JSON, no authentication, no storage. Compression is off, as in the other servers.

    python bench/reference/bare_ws.py PORT
"""

import asyncio
import sys

from websockets.asyncio.server import broadcast, serve

CLIENTS = set()


async def handler(websocket):
    CLIENTS.add(websocket)
    try:
        async for message in websocket:
            broadcast(CLIENTS, message)
    finally:
        CLIENTS.discard(websocket)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, backlog=1024, max_queue=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
