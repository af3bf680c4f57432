"""Accessibility: axe-core (axe-playwright-python) finds no serious or critical violation on
the rooms page and the room page (wide, phone, dark) and the admin's report pages, and no page
asks for a missing file."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from chat import services
from tests.browser.conftest import ARTIFACTS, Browsing
from tests.browser.test_keys import PHONE_TALL, seed
from tests.browser.test_page import open_room
from tests.conftest import session_cookie
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

axe = Axe()


def serious(page: Page) -> list[str]:
    """Each serious or critical violation, with the elements it was found on."""
    found = []
    for v in axe.run(page).response["violations"]:
        if v["impact"] in ("serious", "critical"):
            targets = ", ".join(str(node["target"]) for node in v["nodes"][:5])
            found.append(f"{v['impact']} {v['id']}: {v['help']} — {targets}")
    return found


def track_failures(page: Page) -> list[str]:
    failures: list[str] = []
    page.on("response", lambda r: r.status >= 400 and failures.append(f"{r.status} {r.url}"))
    return failures


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_rooms_page_and_the_room_page_have_no_serious_violations(
    browsing: Browsing, general, user, other, ann_cookie, scheme
):
    seed(general, other, ["Morning! The deploy is at 3pm.", "https://example.com/runbook has the steps"])
    seed(general, user, ["Thanks, I'll watch the dashboards"])
    context = browsing.context(session=ann_cookie)
    ann = browsing.page(context)
    ann.emulate_media(color_scheme=scheme)
    failures = track_failures(ann)

    ann.goto("/")
    expect(ann.locator(".room-cards")).to_be_visible()
    assert serious(ann) == []

    open_room(ann)
    expect(ann.locator("#messages .msg")).to_have_count(3)
    assert serious(ann) == []
    # With the menu, the search results and the drawer open too.
    ann.locator("#search-input").fill("deploy")
    ann.locator("#search-input").press("Enter")
    expect(ann.locator("#search-results .search-hit")).to_have_count(1)
    assert serious(ann) == []
    ann.set_viewport_size(PHONE_TALL)
    ann.get_by_role("button", name="Rooms", exact=True).click()
    expect(ann.locator("#rooms-nav")).to_be_visible()
    assert serious(ann) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ann.screenshot(path=ARTIFACTS / f"axe-room-{scheme}.png")

    ann.goto("/favicon.ico")  # browsers ask for it whatever the page links
    assert failures == [], failures
    assert browsing.page_errors == []


def test_the_admins_report_list_and_message_pages_have_no_serious_violations(browsing: Browsing, general, user, other):
    staff = make_user("mod", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="moderate", content_type__app_label="chat"))
    message = services.message_post(room=general, author=other, body="Buy cheap watches at spam.example", client_id="s1")[0]
    services.message_report(message_id=message.pk, reporter=user, reason="spam")
    mod = browsing.page(session=session_cookie(staff))
    failures = track_failures(mod)

    for path, shows in [
        ("/admin/chat/report/", "Buy cheap watches"),
        (f"/admin/chat/message/{message.pk}/change/", "Buy cheap watches"),
        (f"/admin/chat/message/{message.pk}/context/", "This message:"),
    ]:
        mod.goto(path)
        expect(mod.locator("#content")).to_contain_text(shows)
        assert serious(mod) == [], path
    assert failures == [], failures
    assert browsing.page_errors == []


def test_the_settings_page_has_no_serious_violations(browsing: Browsing, user, ann_cookie):
    ann = browsing.page(session=ann_cookie)
    failures = track_failures(ann)
    ann.goto("/settings/")
    ann.get_by_label("Display name").fill("Ann Lee")
    ann.get_by_role("button", name="Save").click()
    expect(ann.get_by_role("status")).to_have_text("Saved.")
    assert serious(ann) == []
    assert failures == [], failures
