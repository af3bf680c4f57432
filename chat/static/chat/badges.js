// The live room list: unread badges and the order of the rooms (most recent activity
// first), kept current over the page's one socket, never by polling.
//
// The server renders the list with each room's unread count and seq. The socket then joins
// every room the user is a member of with `since` = that seq, so the replay and the live
// events that follow count exactly what arrived after the page was rendered
// (docs/decisions.md, "The live room list"). A `read` frame (another tab read a room, or the
// server announcing a room the user was just added to) asks GET /api/v1/rooms/ once for the
// counts it cannot derive, and rooms new to the page are added and joined.

import { fetchRooms } from "./api.js";
import { labelDirectRooms, roomUrl } from "./dm.js";
import { h } from "./render.js";

const DM_PREFIX = "dm-";

function setBadge(item, count) {
  const badge = item.querySelector(".badge");
  if (!badge) return;
  badge.dataset.count = String(count);
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

function itemAttrs(room, extra = {}) {
  return { "data-room": room.slug, "data-seq": String(room.seq ?? 0), "data-member": room.role ? "true" : null, ...extra };
}

/** A sidebar entry like templates/chat/_room_nav_item.html. */
function navItem(room) {
  return h("li", itemAttrs(room),
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
  return h("li", itemAttrs(room, { class: "room-card" }),
    h("a", { href: roomUrl(room.slug) },
      h("span", { class: "room-card-icon", "aria-hidden": "true" }, icon(room)),
      h("span", { class: "room-card-text" },
        label(room, "room-card-name"),
        h("span", { class: "room-card-meta" }, room.topic ? `${kind} · ${room.topic}` : kind)),
      h("span", { class: "badge", hidden: "" })));
}

/** Show a room's new name (and, on a home-page card, its topic) in its list entry. */
function retitle(item, { name, topic }) {
  for (const node of item.querySelectorAll(".room-label, .room-card-name")) node.textContent = name;
  const meta = item.querySelector(".room-card-meta");
  if (meta) {
    const kind = meta.textContent.split("·")[0].trim();
    meta.textContent = topic ? `${kind} · ${topic}` : kind;
  }
}

export class RoomList {
  /** `current`: the room on screen (room.js shows it; it never has a badge here). */
  constructor({ socket, me, current = null }) {
    Object.assign(this, { socket, me, current });
    this.running = null;
    this.again = false;
  }

  items() {
    return new Map([...document.querySelectorAll("[data-room]")].map((item) => [item.dataset.room, item]));
  }

  /** Join every room of the user's list but the current one (room.js joins that). */
  start() {
    labelDirectRooms(this.me);
    for (const [slug, item] of this.items()) {
      if (slug !== this.current && item.dataset.member === "true") this.socket.join(slug, Number(item.dataset.seq) || 0);
    }
    addEventListener("online", () => this.refresh());
  }

  /** A frame from the socket. True when it was about a room in the list only (not the one on screen). */
  onFrame(frame) {
    const item = frame.room ? this.items().get(frame.room) : null;
    switch (frame.type) {
      case "message":
        if (!item) return frame.room !== this.current;
        this.#moveUp(item);
        if (frame.room !== this.current && frame.message.author?.username !== this.me) {
          setBadge(item, (Number(item.querySelector(".badge")?.dataset.count) || 0) + 1);
        }
        break;
      case "joined":
        if (frame.room !== this.current && frame.resync) this.refresh();
        break;
      case "read":
        // Our read position moved in another tab, or a room was just added for us.
        if (frame.room !== this.current || !item) this.refresh();
        break;
      case "kicked": // the room on screen too: the page says so (room.js), the list drops it
        if (item?.closest(".sidebar, .room-cards")) item.remove();
        break;
      case "room.updated": // a new name or topic (a direct room's label is the other person's name)
        if (item && !frame.room.startsWith(DM_PREFIX)) retitle(item, frame);
        break;
      default:
        break;
    }
    return frame.room !== undefined && frame.room !== this.current;
  }

  /** Counts from GET /api/v1/rooms/ (one request, however many asked meanwhile). */
  async refresh() {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.#fill();
    await this.running;
    this.running = null;
    if (this.again) {
      this.again = false;
      this.refresh();
    }
  }

  async #fill() {
    let rooms;
    try {
      rooms = await fetchRooms();
    } catch {
      return;
    }
    const items = this.items();
    for (const room of rooms) {
      let item = items.get(room.slug);
      if (!item && room.role) {
        item = this.#add(room);
        if (item) this.socket.join(room.slug, room.seq);
      } else if (item && room.role && item.dataset.member !== "true") {
        item.dataset.member = "true";
        if (room.slug !== this.current) this.socket.join(room.slug, room.seq);
      }
      if (item) setBadge(item, room.slug === this.current ? 0 : Number(room.unread) || 0);
    }
  }

  #add(room) {
    const dm = room.slug.startsWith(DM_PREFIX);
    const list = document.querySelector(`.sidebar .room-nav[data-kind="${dm ? "dms" : "rooms"}"]`);
    let item;
    if (list) {
      item = navItem(room);
      list.prepend(item);
    } else {
      const cards = document.querySelector(".room-cards");
      if (!cards) return null;
      item = card(room);
      cards.prepend(item);
      document.querySelector(".home .empty")?.remove();
    }
    labelDirectRooms(this.me, item);
    return item;
  }

  // Most recent activity first; an entry holding the focus stays put (moving it would drop it).
  #moveUp(item) {
    const list = item.parentElement;
    if (!list || list.firstElementChild === item || item.contains(document.activeElement)) return;
    list.prepend(item);
  }
}
