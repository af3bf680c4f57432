"""An upload far over CHAT_MAX_UPLOAD against a real server process: refused with 413, the
server's memory does not grow with it, nothing is stored (PROTOCOL.md 8).

Starts the project's server (Daphne, as ./run does, or uvicorn) through the process harness
on a fresh SQLite database, then sends, on raw sockets:

- a 2 GB multipart upload with its Content-Length (refused from the headers),
- a 2 GB multipart upload with chunked transfer encoding (no length: refused once the
  streamed bytes pass the cap),
- an upload just under the cap (stored: 201), for comparison,

each as fast as the server reads, until the server answers or closes. For each: the status,
how many bytes the server took before refusing, the seconds, and the growth of the server
process's resident memory (VmRSS) and of its peak (VmHWM) since the server was idle.

Run:  .venv/bin/python bench/uploads_memory.py [--server daphne|uvicorn|both] [--gigabytes 2]

Measured (2 cores, shared; issue 16):

    server   case                               status  MiB taken      s  RSS +MiB  peak +MiB  files
    daphne   2 GB, Content-Length                  413        3.0   0.01       0.0        0.0      0
    daphne   2 GB, chunked                         413       31.0   0.08       0.0        0.0      0
    daphne   24 MiB, under the cap (stored)        201       24.0   0.99      48.8      289.4      1
    uvicorn  2 GB, Content-Length                  413        3.0   0.01       0.0        0.0      0
    uvicorn  2 GB, chunked                         413       29.0   0.19       1.1        1.1      0
    uvicorn  24 MiB, under the cap (stored)        201       24.0   0.57       1.9        1.9      1

("MiB taken": what the client got into the socket before the 413; the kernel's buffers hold
a few MiB of it.) An oversize upload costs neither server memory. A body within the cap
costs Daphne about 12 times its size in peak memory the first time (a 100 MiB body: 1.2 GB;
later bodies reuse it), before any view runs: a rejected token shows the same peak, and
neither the sending speed nor Daphne's 8 KiB request chunks change it. uvicorn streams it.
Not resolved yet: behind nginx, prefer uvicorn workers (CHAT_SERVER=uvicorn) for uploads.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
import harness  # noqa: E402

MIB = 1024 * 1024
CHUNK = MIB


def status_kib(pid: int, field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def send_upload(port: int, token: str, size: int, *, chunked: bool) -> dict:
    """Stream a multipart upload of ``size`` file bytes; stop when the server answers or closes."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    framing = [f"Content-Length: {len(head) + size + len(tail)}"] if not chunked else ["Transfer-Encoding: chunked"]
    request = "\r\n".join(
        ["POST /api/v1/rooms/bench/uploads/ HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Authorization: Token {token}",
         f"Content-Type: multipart/form-data; boundary={boundary}", *framing, "Connection: close", "", ""]
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    started = time.monotonic()
    sent = 0
    block = b"\x01" * CHUNK

    def frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    answer = b""
    try:
        sock.sendall(request)
        pieces = [head] + [None] * (size // CHUNK) + [tail]
        for piece in pieces:
            data = block if piece is None else piece
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server answered (or closed) before the body ended
            sock.sendall(frame(data))
            sent += len(data)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(30)
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except (ConnectionResetError, TimeoutError, OSError):
        pass
    sock.close()
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return {"status": int(match[1]) if match else None, "sent": sent, "seconds": time.monotonic() - started}


def run(server_name: str, gigabytes: float, workdir: Path) -> list[dict]:
    db = workdir / f"{server_name}.sqlite3"
    media = workdir / f"media-{server_name}"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_SETTINGS_MODULE": "chatproject.settings"}
    setup = subprocess.run(
        [sys.executable, str(BENCH / "project_setup.py"), "--users", "1", "--rooms", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )
    token = json.loads(setup.stdout)["tokens"][0]
    flags = harness.DAPHNE_FLAGS if server_name == "daphne" else harness.UVICORN_FLAGS
    config = harness.Config(
        server_name, flags=list(flags), database_url=f"sqlite:///{db}",
        env={"DJANGO_SETTINGS_MODULE": "chatproject.settings", "CHAT_MEDIA_ROOT": str(media), "CHAT_UPLOAD_RATE": "0",
             "DJANGO_DEBUG": "false", "DJANGO_LOG_LEVEL": "WARNING", "CHAT_TEST_DB_NAME": None},
    )
    process = harness.Process(config, workdir).start().wait_healthy()
    try:
        cap = 25 * MIB
        # Warm up: one small upload, so the first request's imports are not counted.
        send_upload(process.port, token, 1000, chunked=False)
        time.sleep(0.5)
        rss0, hwm0 = status_kib(process.pid, "VmRSS"), status_kib(process.pid, "VmHWM")
        rows = []
        size = int(gigabytes * 1024**3)
        for label, n, chunked in (
            (f"{gigabytes:g} GB, Content-Length", size, False),
            (f"{gigabytes:g} GB, chunked", size, True),
            ("24 MiB, under the cap (stored)", 24 * MIB, False),
        ):
            files_before = sum(1 for p in media.rglob("*") if p.is_file()) if media.exists() else 0
            result = send_upload(process.port, token, n, chunked=chunked)
            time.sleep(0.3)
            files_after = sum(1 for p in media.rglob("*") if p.is_file()) if media.exists() else 0
            rows.append({
                "case": label, **result,
                "rss_mib": (status_kib(process.pid, "VmRSS") - rss0) / 1024,
                "peak_mib": (status_kib(process.pid, "VmHWM") - hwm0) / 1024,
                "stored": files_after - files_before,
                "cap_mib": cap / MIB,
            })
        return rows
    finally:
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("daphne", "uvicorn", "both"), default="both")
    parser.add_argument("--gigabytes", type=float, default=2.0)
    args = parser.parse_args()
    servers = ("daphne", "uvicorn") if args.server == "both" else (args.server,)
    print(f"{'server':8} {'case':34} {'status':>6} {'MiB taken':>10} {'s':>6} {'RSS +MiB':>9} {'peak +MiB':>10} {'files':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in servers:
            for row in run(name, args.gigabytes, Path(tmp)):
                print(f"{name:8} {row['case']:34} {row['status']!s:>6} {row['sent'] / MIB:10.1f} {row['seconds']:6.2f} "
                      f"{row['rss_mib']:9.1f} {row['peak_mib']:10.1f} {row['stored']:6d}")


if __name__ == "__main__":
    main()
