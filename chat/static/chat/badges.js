// Unread counts next to room names, from GET /api/v1/rooms/. Best effort: the page
// works without them.
//
// The page's socket joins only the room on screen, so nothing tells it about messages
// elsewhere; the counts are fetched again every POLL_MS while the tab is visible, when
// it comes back into view or regains focus, when the network returns, and when asked
// (a `read` frame from another tab). Rooms that appeared since the page loaded (a
// direct message someone opened with us) are added to the list.

import { fetchRooms } from "./api.js";
import { labelDirectRooms, roomUrl } from "./dm.js";
import { h } from "./render.js";

const POLL_MS = 20_000;
const DM_PREFIX = "dm-";

function setBadge(item, count) {
  const badge = item.querySelector(".badge");
  if (!badge) return;
  badge.hidden = count === 0;
  item.classList.toggle("has-unread", count > 0);
  badge.replaceChildren(count > 99 ? "99+" : String(count), h("span", { class: "visually-hidden" }, " unread"));
}

function icon(room) {
  if (room.slug.startsWith(DM_PREFIX)) return "@";
  if (room.private) return document.querySelector(".icon")?.cloneNode(true) ?? "#";
  return "#";
}

function label(room, className) {
  const dm = room.slug.startsWith(DM_PREFIX);
  return h("span", { class: className, "data-dm-name": dm ? room.name : null }, room.name || room.slug);
}

/** A sidebar entry like templates/chat/_room_nav_item.html. */
function navItem(room) {
  return h("li", { "data-room": room.slug },
    h("a", { href: roomUrl(room.slug) },
      h("span", { class: "room-icon", "aria-hidden": "true" }, icon(room)),
      label(room, "room-label"),
      room.private && !room.slug.startsWith(DM_PREFIX) ? h("span", { class: "visually-hidden" }, " (private)") : null,
      h("span", { class: "badge", hidden: "" })));
}

/** A home-page card like templates/chat/home.html's. */
function card(room) {
  const dm = room.slug.startsWith(DM_PREFIX);
  const kind = dm ? "Direct message" : room.private ? "Private room" : "Public room";
  return h("li", { class: "room-card", "data-room": room.slug },
    h("a", { href: roomUrl(room.slug) },
      h("span", { class: "room-card-icon", "aria-hidden": "true" }, icon(room)),
      h("span", { class: "room-card-text" },
        label(room, "room-card-name"),
        h("span", { class: "room-card-meta" }, room.topic ? `${kind} · ${room.topic}` : kind)),
      h("span", { class: "badge", hidden: "" })));
}

/** Insert `item` into `list` keeping the server's order (by slug). */
function insertSorted(list, item) {
  const slug = item.dataset.room;
  const next = [...list.children].find((li) => (li.dataset.room ?? "") > slug);
  list.insertBefore(item, next ?? null);
}

function addMissing(room, me) {
  const dm = room.slug.startsWith(DM_PREFIX);
  const navLists = document.querySelectorAll(".sidebar .room-nav");
  let item = null;
  if (navLists.length) {
    const list = navLists[dm && navLists.length > 1 ? 1 : 0];
    item = navItem(room);
    insertSorted(list, item);
  } else {
    const cards = document.querySelector(".room-cards");
    if (!cards) return null;
    item = card(room);
    insertSorted(cards, item);
    document.querySelector(".home .empty")?.remove();
  }
  labelDirectRooms(me, item);
  return item;
}

/** Fill every badge once. `skip` is the room on screen, which counts as read. */
export async function fillUnreadBadges({ skip = null, me = document.body.dataset.username ?? "" } = {}) {
  let rooms;
  try {
    rooms = await fetchRooms();
  } catch {
    return;
  }
  const items = new Map();
  for (const item of document.querySelectorAll("[data-room]")) items.set(item.dataset.room, item);
  for (const room of rooms) {
    const count = room.slug === skip ? 0 : Number(room.unread) || 0;
    let item = items.get(room.slug);
    // A room new to this page: show it only when there's something to read, or it's a DM.
    if (!item && (count > 0 || room.slug.startsWith(DM_PREFIX))) item = addMissing(room, me);
    if (item) setBadge(item, count);
  }
}

/** Keep the badges current while the page is open; returns refresh() for "now, please". */
export function watchUnreadBadges({ skip = null } = {}) {
  const me = document.body.dataset.username ?? "";
  labelDirectRooms(me);
  let running = null;
  let again = false;
  const refresh = async () => {
    if (running) {
      again = true; // one more round after this one, however many asked meanwhile
      return;
    }
    running = fillUnreadBadges({ skip, me });
    await running;
    running = null;
    if (again) {
      again = false;
      refresh();
    }
  };
  refresh();
  setInterval(() => !document.hidden && refresh(), POLL_MS);
  document.addEventListener("visibilitychange", () => !document.hidden && refresh());
  addEventListener("focus", refresh);
  addEventListener("online", refresh);
  return refresh;
}
