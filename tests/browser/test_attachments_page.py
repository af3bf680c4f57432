"""Attachments on the page (chat/static/chat/attachments.js) in a real Chromium: a file dropped
on the room uploads with a progress bar and goes with the next message; the other user sees
the thumbnail live and opens the full view; other files show as a card; errors say why."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import Browsing
from tests.browser.test_page import open_room

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def png_b64(width: int = 900, height: int = 600) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 160, 90)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


DROP = """([b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type }));
  return dt;
}"""


def test_an_image_dropped_on_the_room_reaches_the_other_user_as_a_thumbnail(browsing: Browsing, ann_cookie, bob_cookie):
    ann = browsing.page(session=ann_cookie)
    bob = browsing.page(session=bob_cookie)
    open_room(ann)
    open_room(bob)
    files = ann.evaluate_handle(DROP, [png_b64(), "field.png", "image/png"])
    ann.dispatch_event("#chat", "dragenter", {"dataTransfer": files})
    ann.dispatch_event("#chat", "drop", {"dataTransfer": files})
    expect(ann.locator("#uploads .upload.ready")).to_have_count(1)
    expect(ann.locator("#uploads .upload-name")).to_have_text("field.png")
    ann.locator("#composer-input").press("Enter")  # an empty body: the file alone
    expect(ann.locator("#uploads")).to_be_hidden()

    thumb = bob.locator("#messages .msg .msg-image img")
    expect(thumb).to_have_count(1)
    expect(thumb).to_have_attribute("alt", "field.png")
    bob.wait_for_function("() => document.querySelector('#messages .msg-image img').naturalWidth > 0")
    assert bob.evaluate("() => document.querySelector('#messages .msg-image img').naturalWidth") <= 400
    thumb.click()
    viewer = bob.locator("dialog.viewer")
    expect(viewer).to_be_visible()
    bob.wait_for_function("() => document.querySelector('dialog.viewer img').naturalWidth === 900")
    bob.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    assert browsing.page_errors == []


def test_a_file_attached_by_the_button_is_a_card_and_a_too_large_one_says_so(browsing: Browsing, ann_cookie):
    ann = browsing.page(session=ann_cookie)
    open_room(ann)
    ann.locator("#attach-input").set_input_files(
        [{"name": "plan.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7\n" + b"x" * 3000}]
    )
    expect(ann.locator("#uploads .upload.ready")).to_have_count(1)
    ann.locator("#composer-input").fill("the plan")
    ann.locator("#composer-input").press("Enter")
    card = ann.locator("#messages .msg .file-card")
    expect(card).to_have_count(1)
    expect(card.locator(".file-name")).to_have_text("plan.pdf")
    expect(card.locator(".file-info")).to_have_text("3.0 KB · PDF")

    # Over CHAT_MAX_UPLOAD (25 MiB; the page knows it): refused before a byte is sent, and said so.
    ann.evaluate("""() => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(30_000_000)], "huge.bin", { type: "application/octet-stream" }));
      document.getElementById("composer-input").dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true }));
    }""")
    failed = ann.locator("#uploads .upload.failed")
    expect(failed).to_have_count(1)
    expect(failed.locator(".upload-status")).to_contain_text("Too large")
    failed.locator(".upload-cancel").click()
    expect(ann.locator("#uploads")).to_be_hidden()
