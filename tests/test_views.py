"""The HTML pages' own routes (chat/views.py): the favicon and the room page's permalink."""

import pytest
from django.test import Client

from chat import services
from tests.factories import make_room

pytestmark = pytest.mark.django_db


def test_favicon_ico_redirects_to_the_svg_icon_that_every_page_links(client: Client, user, general):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/chat/favicon.svg"
    client.force_login(user)
    assert '<link rel="icon" href="/static/chat/favicon.svg" type="image/svg+xml">' in client.get("/").content.decode()


def test_a_permalink_tells_the_page_the_message_s_seq_and_ignores_other_rooms_ids(client: Client, user, other, general):
    message = services.message_post(room=general, author=other, body="the plan", client_id="p1")[0]
    client.force_login(user)
    page = client.get(f"/rooms/general/?m={message.pk}").content.decode()
    assert f'data-focus-id="{message.pk}" data-focus-seq="{message.seq}"' in page
    elsewhere = services.message_post(room=make_room(owner=other, slug="elsewhere"), author=other, body="x", client_id="p2")[0]
    for bad in (str(elsewhere.pk), "999999", "abc", "-1", "9" * 40):
        assert 'data-focus-id="" data-focus-seq=""' in client.get(f"/rooms/general/?m={bad}").content.decode()
