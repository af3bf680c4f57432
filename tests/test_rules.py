"""chat.rules.RoomAccess: one answer per door and role to "may this caller do this"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from chat import rules
from chat.models import Membership, Message, Mute, RoomBan
from chat.protocol import ChatError
from chat.rules import Door, Role
from tests.factories import make_room, make_user


def _staff(username="staff"):
    user = make_user(username, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="moderate", content_type__app_label="chat"))
    return user


def _access(user, room, door=Door.API) -> rules.RoomAccess:
    return rules.room_access(user=user, room=room, door=door)


def _rights(access: rules.RoomAccess) -> tuple:
    return (access.visible, access.can_join, access.can_post, access.can_moderate, access.can_grant_moderator)


@pytest.fixture
def lobby(db, user):
    return make_room(owner=user, slug="lobby")


@pytest.fixture
def secret(db, user):
    return make_room(owner=user, slug="secret", private=True)


def test_each_role_has_its_rights(user, other, lobby):
    """Owner: everything; room moderator: all but granting moderator; member: read and post;
    a passer-by in a public room: read and post too (joining makes them a member)."""
    moderator, member = make_user("mod"), make_user("member")
    Membership.objects.create(room=lobby, user=moderator, role=Role.MODERATOR)
    Membership.objects.create(room=lobby, user=member)
    assert _rights(_access(user, lobby)) == (True, True, True, True, True)
    assert _rights(_access(moderator, lobby)) == (True, True, True, True, False)
    assert _rights(_access(member, lobby)) == (True, True, True, False, False)
    assert _rights(_access(other, lobby)) == (True, True, True, False, False)
    assert _access(user, lobby).role is Role.OWNER and _access(other, lobby).role is None


def test_staff_moderate_every_room_but_see_private_rooms_only_in_the_admin(user, secret):
    staff = _staff()
    for door in (Door.SOCKET, Door.API):
        assert _rights(_access(staff, secret, door)) == (False, False, False, False, False)
    assert _rights(_access(staff, secret, Door.ADMIN)) == (True, True, True, True, True)
    # The admin widens nothing for others.
    outsider = make_user("outsider")
    assert _rights(_access(outsider, secret, Door.ADMIN)) == (False, False, False, False, False)


def test_a_ban_takes_every_right_even_a_moderators(user, other, lobby):
    Membership.objects.create(room=lobby, user=other, role=Role.MODERATOR)
    RoomBan.objects.create(room=lobby, user=other)
    assert _rights(_access(other, lobby)) == (True, False, False, False, False)
    with pytest.raises(ChatError) as refused:
        rules.check_moderate(_access(other, lobby))
    assert refused.value.code == "forbidden"


def test_a_mute_stops_posting_only(user, other, lobby):
    Mute.objects.create(room=lobby, user=other)
    assert _rights(_access(other, lobby)) == (True, True, False, False, False)
    with pytest.raises(ChatError) as refused:
        rules.check_post(_access(other, lobby))
    assert refused.value.code == "muted"


def test_an_expired_ban_or_mute_no_longer_counts(user, other, lobby):
    past = timezone.now() - timedelta(minutes=1)
    RoomBan.objects.create(room=lobby, user=other, until=past)
    Mute.objects.create(room=lobby, user=other, until=past)
    assert _rights(_access(other, lobby)) == (True, True, True, False, False)


def test_a_locked_room_lets_only_its_moderators_post(user, other, lobby):
    lobby.locked = True
    lobby.save(update_fields=["locked"])
    assert _access(user, lobby).can_post and not _access(other, lobby).can_post
    with pytest.raises(ChatError) as refused:
        rules.check_post(_access(other, lobby))
    assert refused.value.code == "room_locked"


def test_delete_says_who_deletes(user, other, lobby):
    message = Message.objects.create(room=lobby, author=other, seq=1, body="hi", client_id="c")
    assert rules.check_delete(_access(other, lobby), message, other) == "author"
    assert rules.check_delete(_access(user, lobby), message, user) == "moderator"
    passer_by = make_user("passer")
    with pytest.raises(ChatError) as refused:
        rules.check_delete(_access(passer_by, lobby), message, passer_by)
    assert refused.value.code == "forbidden"


def test_many_at_once_match_one_at_a_time(user, other, lobby, secret):
    """room_access_many (the group commit's one query) answers as room_access does, per door."""
    staff = _staff()
    Mute.objects.create(room=lobby, user=other)
    keys = {(room.pk, who, door) for room in (lobby, secret) for who in (user, other, staff) for door in Door}
    many = rules.room_access_many(keys)
    assert len(many) == len(keys)
    for room_id, who, door in keys:
        one = rules.room_access(user=who, room_id=room_id, door=door)
        assert many[room_id, who.pk, door] == one


def test_no_room_is_no_access(user):
    assert rules.room_access(user=user, slug="nowhere", door=Door.API) is None
    assert rules.room_access_many({(424242, user, Door.API)}) == {}
    with pytest.raises(ChatError) as refused:
        rules.check_visible(None)
    assert refused.value.code == "not_found"
