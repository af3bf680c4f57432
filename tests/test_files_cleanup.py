"""chat/files/cleanup.py and manage.py cleanup_files: what nobody may fetch any more is removed,
record and files; what may still be posted, seen or restored stays."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from chat import protocol, services
from chat.files.cleanup import files_cleanup
from chat.files.storage import ORIGINALS, THUMBNAILS, storage_name
from chat.models import Attachment
from tests.factories import make_room, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    settings.CHAT_DELETED_FILE_DAYS = 30
    settings.CHAT_POST_RATE = "0"


def stored_upload(*, user, room, age: timedelta = timedelta(0)) -> Attachment:
    file = default_storage.save(storage_name(ORIGINALS), ContentFile(b"%PDF-1.7 data"))
    thumb = default_storage.save(storage_name(THUMBNAILS), ContentFile(b"RIFF....WEBP"))
    upload = Attachment.objects.create(uploader=user, room=room, name="a.pdf", size=13, file=file,
                                       content_type="application/pdf", thumbnail=thumb, thumbnail_type="image/webp")
    Attachment.objects.filter(pk=upload.pk).update(created_at=timezone.now() - age)
    return upload


def exists(upload: Attachment) -> tuple[bool, bool, bool]:
    return (Attachment.objects.filter(pk=upload.pk).exists(), default_storage.exists(upload.file),
            default_storage.exists(upload.thumbnail))


def test_unposted_uploads_older_than_a_day_go_with_their_files(user):
    room = make_room(owner=user)
    old = stored_upload(user=user, room=room, age=timedelta(hours=25))
    young = stored_upload(user=user, room=room, age=timedelta(hours=23))
    posted = stored_upload(user=user, room=room, age=timedelta(days=3))
    services.message_post(room=room, author=user, body="", client_id="c", attachments=[posted.pk])
    removed = files_cleanup()
    assert (removed.unposted, removed.deleted_messages) == (1, 0)
    assert exists(old) == (False, False, False)
    assert exists(young) == exists(posted) == (True, True, True)


def test_a_deleted_messages_files_stay_for_the_restore_window_then_go(user):
    room = make_room(owner=user)
    upload = stored_upload(user=user, room=room)
    message, _ = services.message_post(room=room, author=user, body="x", client_id="c", attachments=[upload.pk])
    services.message_delete(message_id=message.pk, user=user)
    assert files_cleanup(now=timezone.now() + timedelta(days=29)).deleted_messages == 0
    assert exists(upload) == (True, True, True)
    out = StringIO()
    call_command("cleanup_files", stdout=out)  # now: nothing is old enough yet
    assert "Removed 0 unposted uploads and 0 files" in out.getvalue()
    assert files_cleanup(now=timezone.now() + timedelta(days=31)).deleted_messages == 1
    assert exists(upload) == (False, False, False)


def test_a_restored_messages_files_are_kept(user):
    room = make_room(owner=user)
    upload = stored_upload(user=user, room=room)
    message, _ = services.message_post(room=room, author=user, body="x", client_id="c", attachments=[upload.pk])
    services.message_delete(message_id=message.pk, user=user)
    staff = make_user("staff", is_superuser=True, is_staff=True)
    restored = services.message_restore(message_id=message.pk, actor=staff)
    assert [a["id"] for a in protocol.message_payload(restored)["attachments"]] == [upload.pk]
    assert files_cleanup(now=timezone.now() + timedelta(days=60)).deleted_messages == 0
    assert exists(upload) == (True, True, True)
