// Unread counts next to room names, from GET /api/v1/rooms/. Best effort: the page
// works without them.

import { fetchRooms } from "./api.js";

export async function fillUnreadBadges({ skip = null } = {}) {
  let rooms;
  try {
    rooms = await fetchRooms();
  } catch {
    return;
  }
  const items = new Map();
  for (const item of document.querySelectorAll("[data-room]")) items.set(item.dataset.room, item);
  for (const { slug, unread } of rooms) {
    const item = items.get(slug);
    const badge = item?.querySelector(".badge");
    if (!badge) continue;
    const count = slug === skip ? 0 : Number(unread) || 0;
    badge.hidden = count === 0;
    item.classList.toggle("has-unread", count > 0);
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = " unread";
    badge.replaceChildren(count > 99 ? "99+" : String(count), hidden);
  }
}
