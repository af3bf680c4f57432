"""HTML pages and the health check."""

import asyncio

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.csrf import csrf_exempt

from . import protocol, rules, selectors, services
from .backends import ChatModelBackend
from .forms import ProfileForm, SignupForm
from .models import UserPreferences


@login_required
def home(request):
    rooms = selectors.rooms_for_sidebar(user=request.user)
    return render(request, "chat/home.html", {"rooms": rooms})


@login_required
def room(request, slug):
    """The room page. ``?m=<id>`` opens it at that message (a permalink); an unknown id is ignored."""
    access = rules.room_access(user=request.user, slug=slug, door=rules.Door.API)
    if access is None or not access.visible:
        raise Http404("No such room.")
    rooms = list(selectors.rooms_for_sidebar(user=request.user))
    current = next((r for r in rooms if r.pk == access.room.pk), None)
    focus_id = request.GET.get("m", "")
    focus_seq = selectors.message_seq(room=access.room, message_id=int(focus_id)) if focus_id.isdecimal() and len(focus_id) < 19 else None
    # The page learns the caller's rights here (the menu offers moderation only to moderators).
    context = {
        "room": access.room,
        "access": access,
        "rooms": rooms,
        "read_seq": current.read_seq if current is not None else None,
        "focus": {"id": int(focus_id), "seq": focus_seq} if focus_seq is not None else None,
        "max_upload": settings.CHAT_MAX_UPLOAD,
    }
    return render(request, "chat/room.html", context)


def favicon(request):
    """Browsers ask for /favicon.ico whatever the page links: send them to the SVG icon."""
    return redirect(static("chat/favicon.svg"), permanent=True)


@csrf_exempt  # the signed token is the credential (and mail clients' one-click POST has no CSRF token)
def unsubscribe(request, token):
    """The link in every digest email: GET asks, POST turns the user's email notifications
    off, with no login (the token is signed for that user, services.unsubscribe_token())."""
    user_id = services.unsubscribe_user_id(token)
    user = get_user_model().objects.filter(pk=user_id).first() if user_id is not None else None
    done = False
    if user is not None and request.method == "POST":
        services.preferences_update(user_id=user.pk, email_notifications=False)
        done = True
    context = {"valid": user is not None, "done": done, "username": user.username if user else ""}
    return render(request, "chat/unsubscribe.html", context, status=200 if user is not None else 400)


@login_required
def settings_page(request):
    """The user's display name (services.profile_update), on a page of its own."""
    form = ProfileForm(request.POST or None, initial={"name": request.user.first_name})
    saved = False
    if request.method == "POST" and form.is_valid():
        try:
            services.profile_update(user=request.user, name=form.cleaned_data["name"])
        except protocol.ChatError as error:
            form.add_error("name", str(error))
        else:
            saved = True
            form = ProfileForm(initial={"name": request.user.first_name})
    return render(request, "chat/settings.html", {"form": form, "saved": saved}, status=400 if form.errors else 200)


@login_required
def user_card(request, username):
    """What the page's user card shows of an active user: {"username", "name", "timezone"}
    (the display name and the IANA time zone their browser reported; "" for none)."""
    user = get_user_model().objects.filter(username=username, is_active=True).only("username", "first_name").first()
    if user is None:
        raise Http404
    zone = UserPreferences.objects.filter(user=user).values_list("timezone", flat=True).first() or ""
    return JsonResponse({"username": user.username, "name": user.first_name, "timezone": zone})


USER_NAMES_MAX = 100  # usernames per /users/names/ request (the page asks per batch of authors)


@login_required
def user_names(request):
    """The display names of the active users among ``?u=<username>`` (repeated, at most 100):
    {"names": {"ann": "Ann Lee", "bob": ""}} ("" for none; unknown or inactive users are left
    out). For the message headers: MESSAGE's author carries no display name."""
    usernames = set(request.GET.getlist("u"))
    if len(usernames) > USER_NAMES_MAX or any(len(u) > 150 or not protocol.text_storable(u) for u in usernames):
        return JsonResponse({"code": protocol.INVALID, "detail": f"At most {USER_NAMES_MAX} usernames of at most 150 characters."},
                            status=400)
    users = get_user_model().objects.filter(username__in=usernames, is_active=True).values_list("username", "first_name")
    return JsonResponse({"names": dict(users)})


def signup(request):
    """Create an account and log it in through the project's backend (the one that checks
    site bans), so the new session is checked like every other one."""
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend=f"{ChatModelBackend.__module__}.{ChatModelBackend.__qualname__}")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


async def _layer_check() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, protocol.health_check_message())
    await layer.receive(channel)


HEALTH_TIMEOUT = 2.0  # seconds for each check; both run at once


def _db_check() -> None:
    """SELECT 1 on a fresh connection of this worker thread, closed afterwards, so a
    persistent connection that went stale cannot hide an outage or hang the check."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


async def _check(coro) -> str:
    try:
        await asyncio.wait_for(coro, HEALTH_TIMEOUT)
        return "ok"
    except asyncio.TimeoutError:
        return "error: timeout"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"


async def healthz(request):
    """200 {"db": "ok", "channel_layer": "ok"}, or 503 naming what failed, within HEALTH_TIMEOUT."""
    db, layer = await asyncio.gather(
        # Not thread-sensitive: a check stuck on a dead connection must not block other requests.
        _check(sync_to_async(_db_check, thread_sensitive=False)()),
        _check(_layer_check()),
    )
    status = {"db": db, "channel_layer": layer}
    ok = all(v == "ok" for v in status.values())
    return JsonResponse(status, status=200 if ok else 503)
