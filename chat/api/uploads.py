"""The two doors of attachments (PROTOCOL.md 8): ``POST /api/v1/rooms/<slug>/uploads/`` and
``GET /files/<id>/`` (and ``/files/<id>/thumbnail/``).

Both are async Django views, not DRF views: Django runs every sync view and every database
call of a process on one thread, and neither the parse of a 25 MiB multipart body, nor a
storage write, nor Pillow (up to 1.6 s for a 48 MP image: bench/thumbnails.py) may hold it.
So parsing and storage run on threads of their own (sync_to_async, not thread-sensitive),
thumbnails on the thumbnail pool (chat.files.inspection.ainspect_upload), and only the
database calls on the database thread (sync_to_async, thread-sensitive: the thread of sync
views, whose connections Django closes at the end of the request as for any view). They authenticate as the API does (a token,
or the session with its CSRF token for the upload) and answer errors in the API's shape
(chat.api.errors). The body cap of the upload URL is chat/limits.py's (CHAT_MAX_UPLOAD); the
upload handler (chat/files/uploadhandler.py) caps the file bytes exactly.
"""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files.storage import default_storage
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication, get_authorization_header

from .. import protocol, rules, selectors, services
from ..files.content import clean_name, content_disposition
from ..files.inspection import ainspect_upload
from ..files.responses import SECURITY_HEADERS, file_response
from ..files.storage import delete_stored, store_upload
from ..protocol import ChatError
from ..services import attachments
from .authentication import TokenAuthentication
from .errors import exception_handler

log = logging.getLogger(__name__)


def _error_response(exc: Exception) -> JsonResponse:
    """The API's error answer for ``exc`` (chat.api.errors), as a plain Django response."""
    answer = exception_handler(exc, {})
    response = JsonResponse(answer.data, status=answer.status_code)
    for header, value in answer.items():
        if header.lower() != "content-type":
            response[header] = value
    response["X-Content-Type-Options"] = "nosniff"
    return response


async def _caller(request: HttpRequest):
    """The authenticated user: `Authorization: Token`, else the session; raise NotAuthenticated.

    A token is checked on the database thread; the session's user is loaded there too.
    """
    if get_authorization_header(request).split(b" ", 1)[0].lower() == b"token":
        user, _token = await sync_to_async(TokenAuthentication().authenticate)(request)
        return user
    user = await request.auser()
    if not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    return user


def _parse(request: HttpRequest):
    """Parse the multipart body (every file to a temporary file, capped); return ``file``."""
    try:
        return request.FILES.get("file")
    except MultiPartParserError:
        raise ChatError(protocol.INVALID, "The body must be multipart/form-data with a field `file`.") from None


@csrf_exempt  # checked below, after the body is parsed off the database thread (session only)
async def upload_view(request: HttpRequest, slug: str) -> HttpResponse:
    """POST: store the multipart field ``file`` for the caller in the room; 201 ATTACHMENT."""
    stored = uploaded = None
    try:
        if request.method != "POST":
            refused = _error_response(exceptions.MethodNotAllowed(request.method))
            refused["Allow"] = "POST"
            return refused
        user = await _caller(request)
        if not services.SLUG_RE.fullmatch(slug):
            raise ChatError(protocol.NOT_FOUND, "No such room.")
        # Who may upload, and the rate, are asked before a byte of the body is parsed.
        access = await sync_to_async(attachments.upload_check)(user=user, slug=slug)
        if not (request.content_type or "").startswith("multipart/form-data"):
            raise ChatError(protocol.INVALID, "The body must be multipart/form-data with a field `file`.")
        uploaded = await sync_to_async(_parse, thread_sensitive=False)(request)
        if not get_authorization_header(request):
            SessionAuthentication().enforce_csrf(request)  # reads the parsed form; no I/O
        if uploaded is None:
            raise ChatError(protocol.INVALID, "Send the file as the multipart field `file`.")
        inspection = await ainspect_upload(uploaded)
        stored = await sync_to_async(store_upload, thread_sensitive=False)(uploaded, inspection)
        attachment = await sync_to_async(attachments.upload_create)(
            user=user, room_id=access.room.pk, name=clean_name(uploaded.name), size=uploaded.size,
            file=stored.file, inspection=inspection, thumbnail=stored.thumbnail,
        )
        stored = None  # recorded: the files are the attachment's now
    except Exception as exc:  # a refusal, the database, the storage …: nothing stays stored
        return _error_response(exc)
    finally:
        if stored is not None:
            await sync_to_async(delete_stored, thread_sensitive=False)(stored)
        if uploaded is not None:
            uploaded.close()  # its temporary file, if it was not moved into the storage
    return JsonResponse(protocol.attachment_payload(attachment), status=201)


def _visible(*, user, attachment_id: str):
    """The attachment if ``user`` may fetch it now, else raise not_found."""
    attachment = selectors.attachment_get(attachment_id=attachment_id)
    if attachment is None:
        raise ChatError(protocol.NOT_FOUND, "No such file.")
    access = rules.room_access(user=user, room_id=attachment.room_id, door=rules.Door.API)
    rules.check_file(access, attachment, user)
    return attachment


def _not_found() -> HttpResponse:
    response = _error_response(ChatError(protocol.NOT_FOUND, "No such file."))
    for header, value in SECURITY_HEADERS.items():
        response[header] = value
    return response


async def file_view(request: HttpRequest, attachment_id: str, thumbnail: bool = False) -> HttpResponseBase:
    """GET/HEAD: the file (or its thumbnail) to a caller who may see it now; 404 to anyone else.

    The check runs on every request (the answer is ``private, no-cache``: a browser
    revalidates, so a removed member's next view is refused). Behind nginx
    (CHAT_FILES_ACCEL) the bytes go by X-Accel-Redirect; on an object store without local
    paths (S3), by a redirect to a signed URL that expires.
    """
    if request.method not in ("GET", "HEAD"):
        refused = _error_response(exceptions.MethodNotAllowed(request.method))
        refused["Allow"] = "GET, HEAD"
        return refused
    try:
        user = await _caller(request)
        attachment = await sync_to_async(_visible)(user=user, attachment_id=attachment_id)
    except (ChatError, exceptions.APIException):
        return _not_found()  # unauthenticated too: nothing says whether the file exists
    if thumbnail:
        if not attachment.thumbnail:
            return _not_found()
        path, content_type = attachment.thumbnail, attachment.thumbnail_type
        name, etag = f"thumbnail-{attachment.pk}.{content_type.rsplit('/', 1)[-1]}", f'"{attachment.pk}-t"'
    else:
        path, content_type = attachment.file, attachment.content_type
        name, etag = attachment.name, f'"{attachment.pk}"'
    try:
        default_storage.path(path)
    except NotImplementedError:
        return await sync_to_async(_signed_redirect, thread_sensitive=False)(path, name, content_type)
    size = attachment.size if not thumbnail else await sync_to_async(default_storage.size, thread_sensitive=False)(path)
    return file_response(
        request,
        open_file=lambda: default_storage.open(path, "rb"),
        storage_path=path,
        size=size,
        name=name,
        content_type=content_type,
        etag=etag,
        accel_prefix=settings.CHAT_FILES_ACCEL or None,
    )


def _signed_redirect(path: str, name: str, content_type: str) -> HttpResponse:
    """A redirect to the object store's signed URL (django-storages: expires after
    CHAT_S3_URL_EXPIRE seconds), which makes the store answer with our type and disposition."""
    url = default_storage.url(
        path,
        parameters={
            "ResponseContentType": content_type,
            "ResponseContentDisposition": content_disposition(name, content_type),
        },
    )
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


async def thumbnail_view(request: HttpRequest, attachment_id: str) -> HttpResponseBase:
    """See file_view()."""
    return await file_view(request, attachment_id, thumbnail=True)

