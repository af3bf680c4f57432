"""HTML pages and the health check."""

import asyncio

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.db import connection
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render

from . import rules, selectors


@login_required
def home(request):
    rooms = selectors.rooms_visible_to(user=request.user).order_by("slug")
    return render(request, "chat/home.html", {"rooms": rooms})


@login_required
def room(request, slug):
    access = rules.room_access(user=request.user, slug=slug)
    if access is None or not access.visible:
        raise Http404("No such room.")
    rooms = selectors.rooms_visible_to(user=request.user).order_by("slug")
    return render(request, "chat/room.html", {"room": access.room, "rooms": rooms})


def signup(request):
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


async def _layer_check() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "healthz"})
    await layer.receive(channel)


def healthz(request):
    """200 {"db": "ok", "channel_layer": "ok"}, or 503 naming what failed."""
    status = {}
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        status["db"] = "ok"
    except Exception as exc:
        status["db"] = f"error: {exc.__class__.__name__}"
    try:
        async_to_sync(asyncio.wait_for)(_layer_check(), 2)
        status["channel_layer"] = "ok"
    except Exception as exc:
        status["channel_layer"] = f"error: {exc.__class__.__name__}"
    ok = all(v == "ok" for v in status.values())
    return JsonResponse(status, status=200 if ok else 503)
