"""History: GET /api/v1/rooms/<slug>/messages/ with keyset pagination on seq."""

import pytest
from django.utils import timezone

from chat import services
from chat.models import Message, Room, RoomBan
from tests.api.conftest import token_client

URL = "/api/v1/rooms/lobby/messages/"


def fill(room: Room, author, count: int, *, body=lambda i: f"message {i}") -> None:
    """``count`` messages with seqs 1..count, stored in bulk (as an import would)."""
    Message.objects.bulk_create(
        Message(room=room, author=author, seq=i, body=body(i), client_id=f"bulk-{room.pk}-{i}")
        for i in range(1, count + 1)
    )
    Room.objects.filter(pk=room.pk).update(seq=count)


def page(client, **params) -> dict:
    response = client.get(URL, params)
    assert response.status_code == 200, response.json()
    return response.json()


def seqs(body) -> list[int]:
    return [m["seq"] for m in body["results"]]


# --- walking ----------------------------------------------------------------------------


@pytest.fixture
def thousand(room, user):
    fill(room, user, 1000)
    return room


def test_walking_backwards_with_before_visits_every_message_once_in_order(ann, thousand):
    body = page(ann)
    assert seqs(body) == list(range(951, 1001))
    assert body["has_more_before"] is True and body["has_more_after"] is False
    seen = seqs(body)
    while body["has_more_before"]:
        body = page(ann, before=body["results"][0]["seq"])
        assert body["has_more_after"] is True
        seen = seqs(body) + seen
    assert seen == list(range(1, 1001))
    assert seqs(body) == list(range(1, 51)) and body["has_more_before"] is False


def test_walking_forwards_with_after_visits_every_message_once_in_order(ann, thousand):
    body = page(ann, after=0, limit=200)
    assert seqs(body) == list(range(1, 201))
    assert body["has_more_before"] is False and body["has_more_after"] is True
    seen = seqs(body)
    while body["has_more_after"]:
        body = page(ann, after=body["results"][-1]["seq"], limit=200)
        assert body["has_more_before"] is True
        seen += seqs(body)
    assert seen == list(range(1, 1001))
    assert seqs(body) == list(range(801, 1001)) and body["has_more_after"] is False


def test_flags_at_the_exact_ends(ann, thousand):
    # A page that ends exactly at the first or last message has nothing more on that side.
    assert page(ann, before=51, limit=50)["has_more_before"] is False
    assert page(ann, before=52, limit=50)["has_more_before"] is True
    assert page(ann, after=950, limit=50)["has_more_after"] is False
    assert page(ann, after=949, limit=50)["has_more_after"] is True
    # Beyond either end: empty, with everything on the other side.
    assert page(ann, before=1) == {"results": [], "has_more_before": False, "has_more_after": True}
    assert page(ann, after=1000) == {"results": [], "has_more_before": True, "has_more_after": False}
    beyond_the_top = page(ann, before=1001, limit=200)
    assert seqs(beyond_the_top) == list(range(801, 1001))
    assert beyond_the_top["has_more_after"] is False and beyond_the_top["has_more_before"] is True


def test_empty_room_has_no_results_and_no_more_either_way(ann, room):
    expected = {"results": [], "has_more_before": False, "has_more_after": False}
    assert page(ann) == expected
    assert page(ann, before=10) == expected
    assert page(ann, after=0) == expected


def test_seqs_taken_by_edits_and_deletions_do_not_break_the_walk(ann, user, room, settings):
    """Edits and deletions take seqs too; pages follow message seqs and show current state."""
    settings.CHAT_POST_RATE = "0"
    ids = [services.message_post(room=room, author=user, body=f"m{i}", client_id=f"c{i}")[0].pk for i in range(7)]
    services.message_edit(message_id=ids[2], user=user, body="edited")
    services.message_delete(message_id=ids[4], user=user)
    walked, body = [], page(ann, limit=3)
    walked[:0] = body["results"]
    while body["has_more_before"]:
        body = page(ann, limit=3, before=body["results"][0]["seq"])
        walked[:0] = body["results"]
    assert [m["id"] for m in walked] == ids
    assert [m["body"] for m in walked] == ["m0", "m1", "edited", "m3", "", "m5", "m6"]
    assert [m["deleted"] for m in walked] == [False] * 4 + [True] + [False] * 2
    assert page(ann, after=7)["results"] == []  # seqs 8 and 9 are the edit and the deletion


def test_results_are_messages_in_the_one_shape(ann, user, room):
    message, _ = services.message_post(room=room, author=user, body="hi", client_id="c1")
    from chat.protocol import message_payload

    assert page(ann)["results"] == [message_payload(Message.objects.select_related("room", "author").get(pk=message.pk))]


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"before": 5, "after": 1},
        {"limit": 0},
        {"limit": 201},
        {"limit": "ten"},
        {"limit": "5.0"},
        {"limit": " 5"},
        {"limit": ""},
        {"before": -1},
        {"after": "x"},
        {"before": str(2**63)},
        {"q": "x" * 201},
    ],
)
def test_bad_parameters_are_a_400_invalid(ann, room, params):
    response = ann.get(URL, params)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_limit_bounds_are_accepted(ann, room, user):
    fill(room, user, 250)
    assert len(page(ann, limit=1)["results"]) == 1
    assert len(page(ann, limit=200)["results"]) == 200
    assert len(page(ann)["results"]) == 50


# --- search ---------------------------------------------------------------------------


@pytest.fixture
def chatter(room, user, settings):
    settings.CHAT_POST_RATE = "0"
    bodies = [
        "Deploy the release tonight",  # 1
        "lunch?",  # 2
        "the RELEASE notes are up",  # 3
        "release party at five",  # 4 (deleted below)
        "Release day is fun",  # 5
        "nothing to see",  # 6
    ]
    ids = [services.message_post(room=room, author=user, body=b, client_id=f"q{i}")[0].pk for i, b in enumerate(bodies)]
    services.message_delete(message_id=ids[3], user=user)
    return ids


def test_search_matches_words_case_insensitively_and_never_deleted_ones(ann, chatter):
    body = page(ann, q="release")
    assert [m["body"] for m in body["results"]] == [
        "Deploy the release tonight", "the RELEASE notes are up", "Release day is fun"
    ]


def test_search_needs_every_word(ann, chatter):
    assert [m["body"] for m in page(ann, q="release NOTES")["results"]] == ["the RELEASE notes are up"]
    assert page(ann, q="release banana")["results"] == []
    assert page(ann, q="!!!")["results"] == []


def test_search_pages_and_flags_count_matches_only(ann, chatter):
    last = page(ann, q="release", limit=1)
    assert [m["body"] for m in last["results"]] == ["Release day is fun"]
    assert last["has_more_before"] is True and last["has_more_after"] is False
    middle = page(ann, q="release", limit=1, before=last["results"][0]["seq"])
    assert [m["body"] for m in middle["results"]] == ["the RELEASE notes are up"]
    first = page(ann, q="release", limit=1, before=middle["results"][0]["seq"])
    assert [m["body"] for m in first["results"]] == ["Deploy the release tonight"]
    assert first["has_more_before"] is False and first["has_more_after"] is True
    # Forwards from the first match: non-matches in between are not counted.
    after = page(ann, q="release", limit=2, after=first["results"][0]["seq"])
    assert [m["body"] for m in after["results"]] == ["the RELEASE notes are up", "Release day is fun"]
    assert after["has_more_after"] is False and after["has_more_before"] is True


def test_empty_search_is_no_filter(ann, chatter):
    assert len(page(ann, q="")["results"]) == 6


# --- access ---------------------------------------------------------------------------


def test_history_of_a_private_room_is_404_to_non_members(bob, user, secret):
    services.message_post(room=secret, author=user, body="psst", client_id="p1")
    response = bob.get("/api/v1/rooms/secret/messages/")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert bob.get("/api/v1/rooms/secret/messages/", {"q": "psst"}).status_code == 404


def test_history_of_a_public_room_is_open_to_any_user(bob, user, room):
    services.message_post(room=room, author=user, body="hello", client_id="c1")
    assert [m["body"] for m in page(bob)["results"]] == ["hello"]


def test_history_is_403_for_a_user_banned_from_the_room(bob, other, room):
    RoomBan.objects.create(room=room, user=other, until=timezone.now() + timezone.timedelta(hours=1))
    response = bob.get(URL)
    assert response.status_code == 403 and response.json()["code"] == "forbidden"


def test_history_unauthenticated_is_401(anon, room):
    assert anon.get(URL).status_code == 401


def test_reads_are_throttled_per_user_with_retry_after(ann, other, room, monkeypatch):
    from chat.api.throttling import ReadRateThrottle

    monkeypatch.setattr(ReadRateThrottle, "rate", "3/min", raising=False)
    for _ in range(3):
        assert ann.get(URL).status_code == 200
    response = ann.get(URL)
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    # Per user: another user still reads; writes are not counted here.
    assert token_client(other).get(URL).status_code == 200
    assert ann.post(URL, {"body": "still", "client_id": "w1"}, format="json").status_code == 201
