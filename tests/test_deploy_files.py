"""Attachments behind nginx as deployed (deploy/nginx/chat-files.conf, CHAT_FILES_ACCEL): a real
Daphne worker decides who may fetch a file and answers X-Accel-Redirect; nginx sends the bytes
from its internal location, with the headers that keep a file inert. A non-member gets 404,
and nobody reaches the internal location directly."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image

from bench import uploads_memory
from harness import Nginx, nginx_binary
from tests.conftest import redis_url
from tests.factories import make_room, make_token, make_user
from tests.servers import start_server

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed"),
]


@pytest.fixture
def media_root():
    # nginx's worker runs as another user: the directory must be readable by it (pytest's
    # tmp_path is not), as /srv/chat/media is on a real host.
    root = Path(tempfile.mkdtemp(prefix="chat-media-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def request(url: str, *, token: str | None = None, data: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one HTTP request; an error status is returned, not raised."""
    req = urllib.request.Request(url, data=data, headers={**(headers or {})})
    if token:
        req.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_files_are_sent_by_nginx_to_members_and_404_to_others(tmp_path, media_root):
    ann, bob = make_user("ann"), make_user("bob")
    make_room(owner=ann, slug="secret", private=True)
    ann_token, bob_token = make_token(ann), make_token(bob)
    out = io.BytesIO()
    Image.new("RGB", (800, 600), (10, 120, 200)).save(out, "PNG")
    image = out.getvalue()
    html = b"<html><script>alert(1)</script></html>"
    env = {"CHAT_MEDIA_ROOT": str(media_root), "CHAT_FILES_ACCEL": "/_files/", "CHAT_UPLOAD_RATE": "0"}
    server = start_server(redis_url=redis_url(), log_dir=tmp_path, extra_env=env)
    nginx = Nginx([server], tmp_path, media_root=media_root).start()
    try:
        uploaded = {}
        for name, data in (("cat.png", image), ("page.png", html)):
            body, content_type = multipart(name, data)
            status, _, answer = request(f"{nginx.http}/api/v1/rooms/secret/uploads/", token=ann_token, data=body,
                                        headers={"Content-Type": content_type})
            assert status == 201, answer
            uploaded[name] = json.loads(answer)
        ids = [a["id"] for a in uploaded.values()]
        status, _, answer = request(
            f"{nginx.http}/api/v1/rooms/secret/messages/", token=ann_token,
            data=json.dumps({"body": "", "client_id": "c1", "attachments": ids}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert status == 201, answer

        picture = uploaded["cat.png"]
        status, headers, data = request(nginx.http + picture["url"], token=ann_token)
        assert (status, data) == (200, image)
        assert headers["Content-Type"] == "image/png"
        assert headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in headers["Content-Security-Policy"]
        assert headers["Content-Disposition"].startswith("inline;")
        assert "X-Accel-Redirect" not in headers  # consumed by nginx
        status, headers, data = request(nginx.http + picture["url"], token=ann_token, headers={"Range": "bytes=0-7"})
        assert (status, data, headers["Content-Range"]) == (206, image[:8], f"bytes 0-7/{len(image)}")
        status, headers, data = request(nginx.http + picture["thumbnail_url"], token=ann_token)
        assert status == 200 and max(Image.open(io.BytesIO(data)).size) <= 400

        page = uploaded["page.png"]
        status, headers, data = request(nginx.http + page["url"], token=ann_token)
        assert (status, data, headers["Content-Type"]) == (200, html, "application/octet-stream")
        assert headers["Content-Disposition"].startswith("attachment;")
        assert headers["X-Content-Type-Options"] == "nosniff"

        for url in (picture["url"], picture["thumbnail_url"], page["url"]):
            assert request(nginx.http + url, token=bob_token)[0] == 404
            assert request(nginx.http + url)[0] == 404
        stored = next(p for p in media_root.rglob("*") if p.is_file()).relative_to(media_root)
        assert request(f"{nginx.http}/_files/{stored}", token=ann_token)[0] == 404  # internal only
        assert request(f"{server.http}{picture['url']}", token=ann_token)[1]["X-Accel-Redirect"].startswith("/_files/")
    finally:
        nginx.stop()
        server.stop()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_2_gb_upload_is_413_without_the_server_growing_or_storing(tmp_path, media_root, chunked):
    ann = make_user("ann")
    make_room(owner=ann, slug="bench")
    token = make_token(ann)
    env = {"CHAT_MEDIA_ROOT": str(media_root), "CHAT_UPLOAD_RATE": "0"}
    server = start_server(redis_url=redis_url(), log_dir=tmp_path, extra_env=env)
    try:
        uploads_memory.send_upload(server.port, token, 1000, chunked=False)  # warm
        before = uploads_memory.status_kib(server.pid, "VmHWM")
        result = uploads_memory.send_upload(server.port, token, 2 * 1024**3, chunked=chunked)
        grew_mib = (uploads_memory.status_kib(server.pid, "VmHWM") - before) / 1024
        assert result["status"] == 413
        assert result["sent"] < 64 * 1024**2  # refused near the 25 MiB cap, not after 2 GB
        assert grew_mib < 5, grew_mib
        assert [p for p in media_root.rglob("*") if p.is_file() and p.stat().st_size > 1000] == []
    finally:
        server.stop()
