"""Moderation over REST: mutes, room bans, reports, and who may do each (PROTOCOL.md 4, 5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from chat import services
from chat.models import Membership, Message, ModerationLog, Mute, Report, Room, RoomBan
from tests.api.conftest import session_client, token_client
from tests.factories import make_room, make_user

ROOM = "/api/v1/rooms/lobby/"


def make_site_moderator(username: str, **extra):
    user = make_user(username, is_staff=True, **extra)
    user.user_permissions.add(Permission.objects.get(codename="moderate", content_type__app_label="chat"))
    return user


# --- the permission walk -------------------------------------------------------------------

ROLES = ["outsider", "member", "staff_without_permission", "moderator", "owner", "staff"]
MODERATES = {"moderator", "owner", "staff"}


@pytest.fixture
def cast(db):
    """A public room `lobby` with its owner, a moderator, a member, a victim (a member with
    a message), staff with and without chat.moderate, and a user who never joined."""
    owner = make_user("owner")
    room = make_room(owner=owner, slug="lobby")
    people = {"owner": owner, "outsider": make_user("outsider"), "staff": make_site_moderator("staff"),
              "staff_without_permission": make_user("plainstaff", is_staff=True)}
    for role in ("moderator", "member", "victim"):
        people[role] = make_user(role)
        Membership.objects.create(room=room, user=people[role], role="moderator" if role == "moderator" else "member")
    message = services.message_post(room=room, author=people["victim"], body="a message", client_id="v1")[0]
    return {"room": room, "message": message, **people}


def _act(cast, action: str, client):
    """Do ``action`` to the victim as ``client``; return the response."""
    victim, message = cast["victim"], cast["message"]
    if action == "lock":
        return client.patch(ROOM, {"locked": True}, format="json")
    if action == "list_mutes":
        return client.get(ROOM + "mutes/")
    if action == "mute":
        return client.post(ROOM + "mutes/", {"username": "victim", "reason": "r"}, format="json")
    if action == "unmute":
        Mute.objects.create(room=cast["room"], user=victim)
        return client.delete(ROOM + "mutes/victim/")
    if action == "list_bans":
        return client.get(ROOM + "bans/")
    if action == "ban":
        return client.post(ROOM + "bans/", {"username": "victim", "reason": "r"}, format="json")
    if action == "unban":
        RoomBan.objects.create(room=cast["room"], user=victim)
        return client.delete(ROOM + "bans/victim/")
    if action == "delete":
        return client.delete(f"/api/v1/messages/{message.pk}/")
    if action == "report":
        return client.post(f"/api/v1/messages/{message.pk}/report/", {"reason": "r"}, format="json")
    raise AssertionError(action)


# action → (status when allowed, what is stored, the log action or None)
ACTIONS = {
    "lock": (200, lambda c: Room.objects.get(slug="lobby").locked, "room.lock"),
    "list_mutes": (200, None, None),
    "mute": (201, lambda c: Mute.objects.filter(user=c["victim"]).exists(), "mute"),
    "unmute": (204, lambda c: not Mute.objects.exists(), "unmute"),
    "list_bans": (200, None, None),
    "ban": (201, lambda c: RoomBan.objects.filter(user=c["victim"]).exists(), "ban"),
    "unban": (204, lambda c: not RoomBan.objects.exists(), "unban"),
    "delete": (204, lambda c: Message.objects.get(pk=c["message"].pk).deleted, "message.delete"),
    "report": (201, lambda c: Report.objects.exists(), None),
}
REFUSAL = {
    "lock": "Only the room's owner and moderators can do that.",
    "list_mutes": "Only the room's owner and moderators can do that.",
    "mute": "Only the room's owner and moderators can do that.",
    "unmute": "Only the room's owner and moderators can do that.",
    "list_bans": "Only the room's owner and moderators can do that.",
    "ban": "Only the room's owner and moderators can do that.",
    "unban": "Only the room's owner and moderators can do that.",
    "delete": "You may not delete this message.",
}


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("role", ROLES)
def test_every_role_against_every_room_action(cast, role, action):
    allowed = action == "report" or role in MODERATES
    status, stored, logged = ACTIONS[action]
    response = _act(cast, action, token_client(cast[role]))
    log = list(ModerationLog.objects.values_list("action", "actor__username"))
    if allowed:
        assert response.status_code == status, response.content
        assert stored is None or stored(cast)
        assert log == ([(logged, cast[role].username)] if logged else [])
    else:
        assert response.status_code == 403
        assert response.json() == {"detail": REFUSAL[action], "code": "forbidden"}
        assert stored is None or not stored(cast)
        assert log == []


@pytest.mark.parametrize("role", ROLES)
def test_every_role_against_the_staff_only_actions(cast, role):
    """Restoring a message, resolving reports and site bans: staff moderators only (the admin's door)."""
    actor = cast[role]
    services.message_delete(message_id=cast["message"].pk, user=cast["victim"])
    report_of = services.message_post(room=cast["room"], author=cast["victim"], body="reported", client_id="v2")[0]
    report = services.message_report(message_id=report_of.pk, reporter=cast["member"], reason="r")[0]
    calls = {
        "restore": (lambda: services.message_restore(message_id=cast["message"].pk, actor=actor),
                    "Only staff moderators restore messages."),
        "dismiss": (lambda: services.report_resolve(report_id=report.pk, actor=actor, hide=False),
                    "Only staff moderators resolve reports."),
        "site_ban": (lambda: services.site_ban_set(actor=actor, user=cast["victim"]),
                     "Only staff moderators ban users from the site."),
    }
    for name, (call, refusal) in calls.items():
        if role == "staff":
            call()
        else:
            with pytest.raises(services.ChatError) as refused:
                call()
            assert (refused.value.code, refused.value.detail) == ("forbidden", refusal), name
    logged = list(ModerationLog.objects.order_by("pk").values_list("action", flat=True))
    assert logged == (["message.restore", "report.dismiss", "site_ban"] if role == "staff" else [])


@pytest.mark.parametrize(
    "actor, target, refusal",
    [
        ("moderator", "owner", "The room's owner cannot be muted or banned."),
        ("staff", "owner", "The room's owner cannot be muted or banned."),
        ("moderator", "moderator2", "Only the room's owner mutes or bans a moderator."),
        ("moderator", "staff", "Staff moderators cannot be muted or banned."),
        ("owner", "owner", "You cannot mute or ban yourself."),
        ("moderator", "moderator", "You cannot mute or ban yourself."),
    ],
)
@pytest.mark.parametrize("kind", ["mutes", "bans"])
def test_who_can_be_muted_or_banned(cast, actor, target, refusal, kind):
    cast["moderator2"] = make_user("moderator2")
    Membership.objects.create(room=cast["room"], user=cast["moderator2"], role="moderator")
    response = token_client(cast[actor]).post(
        ROOM + f"{kind}/", {"username": cast[target].username}, format="json"
    )
    assert response.status_code == 403 and response.json() == {"detail": refusal, "code": "forbidden"}
    assert not Mute.objects.exists() and not RoomBan.objects.exists()


@pytest.mark.parametrize("kind", ["mutes", "bans"])
def test_the_owner_mutes_and_bans_a_moderator(cast, kind):
    response = token_client(cast["owner"]).post(ROOM + f"{kind}/", {"username": "moderator"}, format="json")
    assert response.status_code == 201


def test_a_banned_moderator_moderates_no_more(cast):
    RoomBan.objects.create(room=cast["room"], user=cast["moderator"])
    moderator = token_client(cast["moderator"])
    response = moderator.post(ROOM + "mutes/", {"username": "victim"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert moderator.patch(ROOM, {"locked": True}, format="json").status_code == 403


def test_private_rooms_are_404_to_outsiders_and_to_staff_over_rest(db, user, other):
    """Staff moderate private rooms through the admin; over REST a private room stays hidden."""
    make_room(owner=user, slug="secret", private=True)
    Membership.objects.create(room=Room.objects.get(slug="secret"), user=other)
    staff = make_site_moderator("staff")
    for outsider in (make_user("outsider"), staff):
        response = token_client(outsider).post("/api/v1/rooms/secret/mutes/", {"username": "bob"}, format="json")
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_unauthenticated_is_401(anon, cast):
    assert anon.post(ROOM + "mutes/", {"username": "victim"}, format="json").status_code == 401
    assert anon.delete(ROOM + "bans/victim/").status_code == 401
    assert anon.post(f"/api/v1/messages/{cast['message'].pk}/report/", {}, format="json").status_code == 401


# --- mutes and bans over REST -----------------------------------------------------------------


def test_mute_with_until_and_reason_then_list_and_unmute(cast):
    owner = token_client(cast["owner"])
    until = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    response = owner.post(ROOM + "mutes/", {"username": "victim", "until": until.isoformat(), "reason": "flood"},
                          format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["username"] == "victim" and body["reason"] == "flood" and body["created_by"] == "owner"
    assert body["until"].replace("Z", "+00:00") == until.isoformat()

    # Muting again replaces the time and reason: 200.
    again = owner.post(ROOM + "mutes/", {"username": "victim", "reason": "for ever"}, format="json")
    assert again.status_code == 200 and again.json()["until"] is None and again.json()["reason"] == "for ever"
    assert [m["username"] for m in owner.get(ROOM + "mutes/").json()] == ["victim"]

    # The victim may read, not post.
    victim = token_client(cast["victim"])
    assert victim.get(ROOM + "messages/").status_code == 200
    posted = victim.post(ROOM + "messages/", {"body": "hi", "client_id": "m1"}, format="json")
    assert posted.status_code == 403 and posted.json()["code"] == "muted"
    edited = victim.patch(f"/api/v1/messages/{cast['message'].pk}/", {"body": "edit"}, format="json")
    assert edited.status_code == 403 and edited.json()["code"] == "muted"

    assert owner.delete(ROOM + "mutes/victim/").status_code == 204
    assert victim.post(ROOM + "messages/", {"body": "hi", "client_id": "m1"}, format="json").status_code == 201
    assert owner.delete(ROOM + "mutes/victim/").json() == {"detail": "That user is not muted here.", "code": "not_found"}
    assert list(ModerationLog.objects.order_by("pk").values_list("action", flat=True)) == ["mute", "mute", "unmute"]


def test_an_expired_mute_no_longer_applies(cast):
    Mute.objects.create(room=cast["room"], user=cast["victim"], until=timezone.now() - timedelta(seconds=1))
    victim = token_client(cast["victim"])
    assert victim.post(ROOM + "messages/", {"body": "free", "client_id": "e1"}, format="json").status_code == 201
    assert token_client(cast["owner"]).get(ROOM + "mutes/").json() == []


@pytest.mark.parametrize(
    "data",
    [{}, {"username": "victim", "until": "yesterday"}, {"username": "victim", "until": "2001-01-01T00:00:00Z"},
     {"username": "victim", "reason": "x" * 501}, {"username": 5}],
)
def test_bad_mute_input_is_400(cast, data):
    response = token_client(cast["owner"]).post(ROOM + "mutes/", data, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert not Mute.objects.exists()


def test_muting_no_such_user_is_404(cast):
    response = token_client(cast["owner"]).post(ROOM + "mutes/", {"username": "nobody"}, format="json")
    assert response.status_code == 404


def test_a_room_ban_refuses_history_members_posting_and_join_by_every_door(cast):
    owner = token_client(cast["owner"])
    assert owner.post(ROOM + "bans/", {"username": "victim", "reason": "bye"}, format="json").status_code == 201
    for client in (token_client(cast["victim"]), session_client(cast["victim"])):
        for response in (
            client.get(ROOM + "messages/"),
            client.get(ROOM + "members/"),
            client.post(ROOM + "messages/", {"body": "x", "client_id": "b1"}, format="json"),
            client.post(f"/api/v1/messages/{cast['message'].pk}/report/", {}, format="json"),
        ):
            assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert owner.delete(ROOM + "bans/victim/").status_code == 204
    assert token_client(cast["victim"]).get(ROOM + "messages/").status_code == 200


# --- reports --------------------------------------------------------------------------------


def test_report_is_201_with_its_id_and_queued(cast):
    member = token_client(cast["member"])
    url = f"/api/v1/messages/{cast['message'].pk}/report/"
    response = member.post(url, {"reason": "rude"}, format="json")
    assert response.status_code == 201
    report = Report.objects.get()
    assert response.json() == {"id": report.pk}
    assert (report.reporter, report.reason, report.status) == (cast["member"], "rude", "open")
    # Reporting again while it is open returns the same report.
    again = member.post(url, {"reason": "still rude"}, format="json")
    assert again.status_code == 200 and again.json() == {"id": report.pk}
    # Another user's report is another report; the reason is optional.
    assert token_client(cast["outsider"]).post(url, {}, format="json").status_code == 201
    assert Report.objects.count() == 2


def test_report_refusals(cast, user):
    message_url = f"/api/v1/messages/{cast['message'].pk}/report/"
    own = token_client(cast["victim"]).post(message_url, {}, format="json")
    assert own.status_code == 400 and own.json()["detail"] == "You cannot report your own message."
    assert token_client(cast["member"]).post("/api/v1/messages/999999/report/", {}, format="json").status_code == 404
    services.message_delete(message_id=cast["message"].pk, user=cast["victim"])
    assert token_client(cast["member"]).post(message_url, {}, format="json").status_code == 404
    secret = make_room(owner=user, slug="secret", private=True)
    private = services.message_post(room=secret, author=user, body="psst", client_id="p1")[0]
    hidden = token_client(cast["member"]).post(f"/api/v1/messages/{private.pk}/report/", {}, format="json")
    assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
    assert not Report.objects.exists()


def test_report_with_a_session_needs_csrf(cast):
    client = session_client(cast["member"])
    response = client.post(f"/api/v1/messages/{cast['message'].pk}/report/", {}, format="json")
    assert response.status_code == 403
    assert not Report.objects.exists()


# --- the log --------------------------------------------------------------------------------


def test_the_log_says_who_did_what_to_whom_why_and_when(cast):
    before = timezone.now()
    token_client(cast["moderator"]).post(ROOM + "bans/", {"username": "victim", "reason": "spam links"}, format="json")
    entry = ModerationLog.objects.get()
    assert (entry.actor, entry.action, entry.target_user, entry.room, entry.reason) == (
        cast["moderator"], "ban", cast["victim"], cast["room"], "spam links"
    )
    assert before <= entry.created_at <= timezone.now()
    assert entry.summary == "moderator banned victim in lobby"
    # The entry outlives the people and the room it names.
    cast["victim"].delete()
    cast["room"].delete()
    entry.refresh_from_db()
    assert entry.target_user is None and entry.room is None
    assert entry.summary == "moderator banned victim in lobby"
    with pytest.raises(ValueError):
        entry.save()


def test_removing_a_member_is_logged_leaving_is_not(cast):
    token_client(cast["owner"]).delete(ROOM + "members/member/")
    token_client(cast["victim"]).delete(ROOM + "members/victim/")
    assert list(ModerationLog.objects.values_list("action", "target_user__username")) == [("member.remove", "member")]


def test_renaming_is_not_logged_locking_is(cast):
    owner = token_client(cast["owner"])
    owner.patch(ROOM, {"name": "Lobby"}, format="json")
    owner.patch(ROOM, {"locked": False}, format="json")  # no change: nothing to log
    owner.patch(ROOM, {"locked": True}, format="json")
    assert list(ModerationLog.objects.values_list("action", flat=True)) == ["room.lock"]
