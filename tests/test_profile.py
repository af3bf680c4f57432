"""The display name: services.profile_update, the settings page and the user card's JSON."""

from __future__ import annotations

import pytest
from django.test import Client

from chat import protocol, services
from chat.protocol import ChatError
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_profile_update_trims_and_refuses_what_cannot_be_a_name(user):
    assert services.profile_update(user=user, name="  Ann \t Lee\n") == "Ann Lee"
    user.refresh_from_db()
    assert user.first_name == "Ann Lee" and user.username == "ann"
    for bad in ("x" * 151, "Ann\x00"):
        with pytest.raises(ChatError) as refused:
            services.profile_update(user=user, name=bad)
        assert refused.value.code == protocol.INVALID
    user.refresh_from_db()
    assert user.first_name == "Ann Lee"  # nothing stored on a refused request
    assert services.profile_update(user=user, name="") == ""


def test_the_settings_page_and_the_card_need_a_login_and_show_only_active_users(user, other):
    anonymous = Client()
    assert anonymous.get("/settings/").status_code == 302
    assert anonymous.get("/users/ann/card/").status_code == 302

    client = Client()
    client.force_login(other)
    assert client.post("/settings/", {"name": "Bob B"}).status_code == 200
    assert client.post("/settings/", {"name": "Bob\x00"}).status_code == 400
    other.refresh_from_db()
    assert other.first_name == "Bob B"
    services.profile_update(user=user, name="Ann Lee")
    assert client.get("/users/ann/card/").json() == {"username": "ann", "name": "Ann Lee", "timezone": ""}
    services.preferences_update(user_id=user.pk, timezone="Asia/Tokyo")
    assert client.get("/users/ann/card/").json()["timezone"] == "Asia/Tokyo"
    assert client.get("/users/nobody/card/").status_code == 404
    make_user("gone", is_active=False)
    assert client.get("/users/gone/card/").status_code == 404


def test_user_names_gives_the_display_names_of_active_users_to_logged_in_users(user, other):
    services.profile_update(user=user, name="Ann Lee")
    make_user("gone", first_name="Gone", is_active=False)
    assert Client().get("/users/names/?u=ann").status_code == 302
    client = Client()
    client.force_login(other)
    response = client.get("/users/names/?u=ann&u=bob&u=gone&u=nobody&u=ann")
    assert response.json() == {"names": {"ann": "Ann Lee", "bob": ""}}
    assert client.get("/users/names/").json() == {"names": {}}
    too_many = "&".join(f"u=user{n}" for n in range(101))
    for query in (too_many, "u=a%00b", "u=" + "x" * 151):
        response = client.get(f"/users/names/?{query}")
        assert response.status_code == 400 and response.json()["code"] == "invalid"
