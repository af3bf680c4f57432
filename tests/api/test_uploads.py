"""Attachments through REST (PROTOCOL.md 8): uploads, posting them, and /files/ serving only to
those who may see them, as inert as a browser allows."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from chat.models import Attachment, Membership, Message, Mute
from chat.services import attachments as attachment_services
from tests.api.conftest import session_client, token_client
from tests.factories import make_room, make_user

pytestmark = pytest.mark.django_db

HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(document.domain)</script></svg>"
)
GIF_JS = b"GIF89a=1;alert(document.domain);//" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"1 0 obj << >> endobj\n" * 50


def png(width: int = 640, height: int = 480) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG", exif=exif)
    return out.getvalue()


def bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A small PNG whose header claims a canvas of 3.6 gigapixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    settings.CHAT_UPLOAD_RATE = "0"
    settings.CHAT_FILES_ACCEL = ""
    return root


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def upload(client, room, data: bytes, name: str = "file.bin", content_type: str = "application/octet-stream"):
    return client.post(
        f"/api/v1/rooms/{room}/uploads/", {"file": SimpleUploadedFile(name, data, content_type)}, format="multipart"
    )


def content(response) -> bytes:
    async def collect():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)() if response.is_async else b"".join(response.streaming_content)


def post(client, room, *, attachments, body="", client_id="c1"):
    return client.post(
        f"/api/v1/rooms/{room}/messages/", {"body": body, "client_id": client_id, "attachments": attachments}, format="json"
    )


@pytest.fixture
def lobby(user):
    return make_room(owner=user, slug="lobby")


# --- uploading ----------------------------------------------------------------------------


def test_an_image_upload_answers_attachment_with_size_and_a_clean_thumbnail(ann, lobby, media):
    response = upload(ann, "lobby", png(), name="../../etc/cat.png", content_type="text/html")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "name", "size", "content_type", "url", "thumbnail_url", "width", "height"}
    assert (body["name"], body["content_type"], body["width"], body["height"]) == ("cat.png", "image/png", 640, 480)
    assert body["size"] == len(png())
    assert body["url"] == f"/files/{body['id']}/" and body["thumbnail_url"] == f"/files/{body['id']}/thumbnail/"
    files = stored_files(media)
    assert len(files) == 2 and not any("cat" in str(p) or p.suffix for p in files)  # names never from the client
    assert any(p.read_bytes() == png() for p in files)  # the original as uploaded

    thumb = ann.get(body["thumbnail_url"])
    assert thumb.status_code == 200 and thumb["Content-Disposition"].startswith("inline")
    im = Image.open(io.BytesIO(content(thumb)))
    assert max(im.size) <= 400 and im.format in ("WEBP", "JPEG")
    assert not im.getexif()


def test_a_pdf_upload_has_its_type_from_the_bytes_and_no_thumbnail(ann, lobby):
    body = upload(ann, "lobby", PDF, name="plan.txt", content_type="image/png").json()
    assert (body["content_type"], body["thumbnail_url"], body["width"]) == ("application/pdf", None, None)


def test_a_decompression_bomb_is_stored_as_a_plain_file_without_thumbnail(ann, lobby, media):
    response = upload(ann, "lobby", bomb_png(), name="bomb.png")
    assert response.status_code == 201
    body = response.json()
    assert (body["content_type"], body["thumbnail_url"], body["width"]) == ("application/octet-stream", None, None)
    assert len(stored_files(media)) == 1
    assert ann.get("/healthz").status_code == 200  # still serving


def test_an_upload_over_the_cap_is_413_and_nothing_is_stored(ann, lobby, media, settings):
    settings.CHAT_MAX_UPLOAD = 10_000
    response = upload(ann, "lobby", b"x" * 10_001)
    assert (response.status_code, response.json()["code"]) == (413, "too_large")
    assert stored_files(media) == [] and not Attachment.objects.exists()
    assert upload(ann, "lobby", b"x" * 10_000).status_code == 201


def test_uploads_over_the_rate_are_429_with_retry_after_and_stored_nothing(ann, lobby, media, settings):
    settings.CHAT_UPLOAD_RATE = "2/min"
    assert [upload(ann, "lobby", PDF).status_code for _ in range(2)] == [201, 201]
    refused = upload(ann, "lobby", PDF)
    assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited")
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert Attachment.objects.count() == 2 and len(stored_files(media)) == 2


@pytest.mark.parametrize(("value", "expected"), [("20/min", (20, 60)), ("5/30s", (5, 30)), ("100/h", (100, 3600)), ("0", None)])
def test_the_upload_rate_setting_parses(settings, value, expected):
    settings.CHAT_UPLOAD_RATE = value
    rate = attachment_services.upload_rate()
    assert (rate.count, rate.seconds) == expected if expected else rate is None


def test_only_who_may_post_in_the_room_may_upload(ann, bob, user, other, lobby, media):
    secret = make_room(owner=user, slug="secret", private=True)
    assert upload(bob, secret.slug, PDF).status_code == 404
    assert upload(token_client(other), "nosuchroom", PDF).status_code == 404
    assert upload(type(ann)(), "lobby", PDF).status_code == 401
    assert stored_files(media) == []


def test_a_muted_user_cannot_upload(bob, user, other, lobby, media):
    Mute.objects.create(room=lobby, user=other, created_by=user)
    response = upload(bob, "lobby", PDF)
    assert (response.status_code, response.json()["code"]) == (403, "muted")
    assert stored_files(media) == []


def test_a_session_upload_needs_the_csrf_token(user, lobby, media):
    client = session_client(user)
    assert upload(client, "lobby", PDF).status_code == 403
    assert stored_files(media) == []
    client.get("/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/api/v1/rooms/lobby/uploads/", {"file": SimpleUploadedFile("a.pdf", PDF)}, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 201


def test_a_body_without_the_file_field_is_invalid(ann, lobby):
    response = ann.post("/api/v1/rooms/lobby/uploads/", {"other": "x"}, format="multipart")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


# --- serving ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name"), [(HTML, "cat.png"), (SVG, "logo.svg"), (GIF_JS, "anim.gif")], ids=["html-as-png", "svg", "gif-js"]
)
def test_spoofed_types_are_served_as_inert_downloads(ann, lobby, data, name):
    body = upload(ann, "lobby", data, name=name, content_type="image/png").json()
    assert body["content_type"] == "application/octet-stream" and body["thumbnail_url"] is None
    response = ann.get(body["url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in response["Content-Security-Policy"]
    assert content(response) == data


def test_a_raster_image_is_served_inline_with_etag_and_ranges(ann, lobby):
    body = upload(ann, "lobby", png(), name="cat.png").json()
    response = ann.get(body["url"])
    assert response["Content-Disposition"].startswith("inline;") and response["X-Content-Type-Options"] == "nosniff"
    assert response["ETag"] == f'"{body["id"]}"'
    assert ann.get(body["url"], HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304
    part = ann.get(body["url"], HTTP_RANGE="bytes=0-7")
    assert part.status_code == 206 and content(part) == png()[:8]


def _posted(ann, room, data=PDF, name="plan.pdf", client_id="c1"):
    attachment = upload(ann, room, data, name=name).json()
    message = post(ann, room, attachments=[attachment["id"]], client_id=client_id).json()
    return attachment, message


def test_an_unposted_upload_is_served_to_its_uploader_only(ann, bob, lobby, other):
    attachment = upload(ann, "lobby", PDF).json()
    assert ann.get(attachment["url"]).status_code == 200
    assert bob.get(attachment["url"]).status_code == 404


def test_a_posted_file_is_served_to_room_members_and_404_to_everyone_else(ann, bob, user, other, anon):
    secret = make_room(owner=user, slug="secret", private=True)
    attachment, message = _posted(ann, "secret")
    assert message["attachments"] == [attachment]
    for client in (bob, anon):
        response = client.get(attachment["url"])
        assert response.status_code == 404 and response["X-Content-Type-Options"] == "nosniff"
    assert bob.get(attachment["url"] + "thumbnail/").status_code == 404
    Membership.objects.create(room=secret, user=other)
    assert bob.get(attachment["url"]).status_code == 200
    Membership.objects.filter(room=secret, user=other).delete()
    assert bob.get(attachment["url"]).status_code == 404  # checked on every request


def test_a_deleted_messages_files_are_404_except_to_staff(ann, bob, user, lobby):
    attachment, message = _posted(ann, "lobby")
    assert bob.get(attachment["url"]).status_code == 200
    assert ann.delete(f"/api/v1/messages/{message['id']}/").status_code == 204
    staff = make_user("staff", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="moderate", content_type__app_label="chat"))
    assert [c.get(attachment["url"]).status_code for c in (ann, bob, token_client(staff))] == [404, 404, 200]
    history = ann.get("/api/v1/rooms/lobby/messages/").json()["results"]
    assert history[-1]["deleted"] is True and history[-1]["attachments"] == []
    assert Attachment.objects.get(pk=attachment["id"]).hidden_at is not None


# --- posting ------------------------------------------------------------------------------


def test_a_message_may_carry_only_attachments_and_keeps_them_through_an_edit(ann, lobby):
    first = upload(ann, "lobby", png(), name="a.png").json()
    second = upload(ann, "lobby", PDF, name="b.pdf").json()
    response = post(ann, "lobby", attachments=[second["id"], first["id"]], body="  ")
    assert response.status_code == 201, response.content
    message = response.json()
    assert message["body"] == "" and [a["id"] for a in message["attachments"]] == [second["id"], first["id"]]
    edited = ann.patch(f"/api/v1/messages/{message['id']}/", {"body": "here"}, format="json").json()
    assert edited["attachments"] == message["attachments"]
    history = ann.get("/api/v1/rooms/lobby/messages/").json()["results"]
    assert history[-1]["attachments"] == message["attachments"]


def test_an_empty_message_without_attachments_is_still_invalid(ann, lobby):
    assert post(ann, "lobby", attachments=[]).json()["code"] == "invalid"


def test_only_the_callers_own_unposted_uploads_in_that_room_attach(ann, bob, user, other, lobby):
    make_room(owner=user, slug="elsewhere")
    mine = upload(ann, "lobby", PDF).json()["id"]
    bobs = upload(bob, "lobby", PDF).json()["id"]
    elsewhere = upload(ann, "elsewhere", PDF).json()["id"]
    for ids in ([bobs], [elsewhere], ["nosuchupload"], [mine, mine], ["x\x00"]):
        response = post(ann, "lobby", attachments=ids, client_id=f"c-{len(ids)}-{ids[0][:3]}")
        assert (response.status_code, response.json()["code"]) == (400, "invalid"), ids
    assert post(ann, "lobby", attachments=[mine], client_id="ok").status_code == 201
    again = post(ann, "lobby", attachments=[mine], client_id="again")
    assert (again.status_code, again.json()["code"]) == (400, "invalid")  # posted already
    assert Message.objects.filter(room=lobby).count() == 1


def test_at_most_ten_attachments(ann, lobby, settings):
    settings.CHAT_POST_RATE = "0"
    ids = [upload(ann, "lobby", PDF).json()["id"] for _ in range(11)]
    assert post(ann, "lobby", attachments=ids).status_code == 400
    assert post(ann, "lobby", attachments=ids[:10]).status_code == 201


def test_history_loads_attachments_without_a_query_per_message(ann, user, lobby, settings):
    settings.CHAT_POST_RATE = "0"
    for i in range(2):
        _posted(ann, "lobby", client_id=f"a{i}")
    with CaptureQueriesContext(connection) as few:
        assert ann.get("/api/v1/rooms/lobby/messages/").status_code == 200
    for i in range(2, 12):
        _posted(ann, "lobby", client_id=f"a{i}")
    with CaptureQueriesContext(connection) as many:
        results = ann.get("/api/v1/rooms/lobby/messages/").json()["results"]
    assert len(results) == 12 and all(len(m["attachments"]) == 1 for m in results)
    assert len(many.captured_queries) == len(few.captured_queries)
