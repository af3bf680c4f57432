"""A TCP proxy the fault tests can cut: ``python -m tests.faults.tcpproxy PORT TARGET_HOST TARGET_PORT``.

SIGUSR1 cuts it: every open connection is reset and the listening socket closed, so new
connections are refused (the database is "unreachable"). SIGHUP freezes it: connections
stay open and new ones are accepted, but nothing is passed on in either direction (the
database "hangs", as a stopped backend or a black-holed network path looks to a client);
what arrives meanwhile is held and passed on after the thaw, as TCP would deliver it.
SIGUSR2 listens again and thaws. It serves loopback only and exits on SIGTERM, or by itself
after --lifetime seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import struct


class Proxy:
    def __init__(self, port: int, target: tuple[str, int]):
        self.port = port
        self.target = target
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def listen(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # RST, as a network failure or a crashed server looks to the client.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.writers.clear()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await self.flowing.wait()
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                self.writers.discard(dst)
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("target_host")
    parser.add_argument("target_port", type=int)
    parser.add_argument("--lifetime", type=float, default=1800)
    args = parser.parse_args()
    proxy = Proxy(args.port, (args.target_host, args.target_port))
    await proxy.listen()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(proxy.cut()))
    loop.add_signal_handler(signal.SIGHUP, proxy.flowing.clear)
    loop.add_signal_handler(signal.SIGUSR2, lambda: (proxy.flowing.set(), loop.create_task(proxy.listen())))
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), args.lifetime)
    except asyncio.TimeoutError:
        pass


if __name__ == "__main__":
    asyncio.run(main())
