// Notifications on the page: the bell with the inbox (newest first, live), the unread-mention
// badge of each room in the sidebar, the tab title's count, and the browser's Notification
// API for a mention or a DM while the tab is hidden (permission asked on a click only).
//
// room.js hands it every socket frame (onFrame) and each read position it sends (read);
// everything else is here. The inbox comes from GET /api/v1/notifications/, the badges from
// the `mentions` of GET /api/v1/rooms/; `notification` frames keep both live.

import { h } from "./render.js";

const INBOX_LIMIT = 30;
const TITLE_PREFIX = /^\(@\d+\) /;

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(value.join("="));
  }
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

async function getJSON(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
  return response.json();
}

function markRead(body) {
  return fetch("/api/v1/notifications/read/", {
    method: "POST",
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(body),
  }).catch(() => null);
}

export function messageUrl(notification) {
  return `/rooms/${encodeURIComponent(notification.room)}/#message-${notification.message.id}`;
}

function describe(n) {
  const who = n.message.author.username;
  if (n.kind === "dm") return `${who} sent you a message`;
  if (n.kind === "reply") return `${who} replied in ${n.room}`;
  if (n.kind === "room") return `${who} notified everyone in ${n.room}`;
  return `${who} mentioned you in ${n.room}`;
}

export class Notifications {
  constructor({ slug = null, me = document.body.dataset.username ?? "" } = {}) {
    Object.assign(this, { slug, me });
    this.items = new Map(); // id → NOTIFICATION, as the server last said
    this.build();
    this.keepTitle();
    this.load();
    document.addEventListener("visibilitychange", () => !document.hidden && this.load());
  }

  // -- the bell and its panel --

  build() {
    this.count = h("span", { class: "bell-count", hidden: "" });
    this.bell = h("button", {
      type: "button", class: "bell icon-button", id: "bell", "aria-expanded": "false", "aria-controls": "inbox",
      "aria-label": "Notifications",
    }, h("span", { "aria-hidden": "true" }, "🔔"), this.count);
    this.list = h("ul", { class: "inbox-list", "aria-label": "Notifications, newest first" });
    this.empty = h("p", { class: "inbox-empty" }, "Nothing yet: mentions and direct messages show up here.");
    this.allRead = h("button", { type: "button", class: "link-button" }, "Mark all read");
    this.permission = h("button", { type: "button", class: "link-button", hidden: "" }, "Desktop notifications");
    this.panel = h("section", { class: "inbox", id: "inbox", hidden: "", "aria-label": "Notifications" },
      h("div", { class: "inbox-head" }, h("h2", { class: "inbox-title" }, "Notifications"), this.permission, this.allRead),
      this.list, this.empty);
    const anchor = document.querySelector(".topbar .account") ?? document.querySelector(".topbar");
    anchor?.prepend(this.bell);
    (document.querySelector(".topbar") ?? document.body).append(this.panel);
    this.bell.addEventListener("click", () => this.toggle());
    this.allRead.addEventListener("click", () => this.readAll());
    this.permission.addEventListener("click", () => this.askPermission());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.panel.hidden) {
        this.toggle(false);
        this.bell.focus();
      }
    });
    document.addEventListener("click", (event) => {
      if (!this.panel.hidden && !this.panel.contains(event.target) && !this.bell.contains(event.target)) this.toggle(false);
    });
    this.showPermissionButton();
  }

  toggle(open = this.panel.hidden) {
    this.panel.hidden = !open;
    this.bell.setAttribute("aria-expanded", String(open));
    if (open) this.load();
  }

  showPermissionButton() {
    this.permission.hidden = !("Notification" in window) || Notification.permission !== "default";
  }

  /** Asked on a click only, never on load. */
  async askPermission() {
    if (!("Notification" in window)) return;
    try {
      await Notification.requestPermission();
    } finally {
      this.showPermissionButton();
    }
  }

  // -- state --

  async load() {
    let page, rooms;
    try {
      [page, rooms] = await Promise.all([
        getJSON(`/api/v1/notifications/?limit=${INBOX_LIMIT}`),
        getJSON("/api/v1/rooms/"),
      ]);
    } catch {
      return; // best effort: the page works without it
    }
    this.items = new Map(page.results.map((n) => [n.id, n]));
    this.mentions = new Map(rooms.map((r) => [r.slug, Number(r.mentions) || 0]));
    this.render();
  }

  unread() {
    let count = 0;
    for (const n of this.items.values()) if (!n.read) count += 1;
    // The inbox holds the newest only; the room counts hold every unread one.
    const rooms = this.mentions ? [...this.mentions.values()].reduce((a, b) => a + b, 0) : 0;
    return Math.max(count, rooms);
  }

  render() {
    const items = [...this.items.values()].sort((a, b) => b.id - a.id).slice(0, INBOX_LIMIT);
    this.list.replaceChildren(...items.map((n) => this.row(n)));
    this.empty.hidden = items.length > 0;
    const unread = this.unread();
    this.count.hidden = unread === 0;
    this.count.textContent = unread > 99 ? "99+" : String(unread);
    this.bell.setAttribute("aria-label", unread ? `Notifications, ${unread} unread` : "Notifications");
    for (const item of document.querySelectorAll("[data-room]")) {
      const count = this.mentions?.get(item.dataset.room) ?? 0;
      let badge = item.querySelector(".mention-badge");
      if (!badge) {
        badge = h("span", { class: "mention-badge", hidden: "" });
        (item.querySelector("a") ?? item).append(badge);
      }
      badge.hidden = count === 0;
      badge.replaceChildren(`@${count}`, h("span", { class: "visually-hidden" }, ` unread mention${count === 1 ? "" : "s"}`));
    }
    this.applyTitle();
  }

  row(n) {
    const link = h("a", { href: messageUrl(n), class: "inbox-link" },
      h("span", { class: "inbox-what" }, describe(n)),
      h("span", { class: "inbox-body" }, n.message.deleted ? "(deleted)" : n.message.body));
    link.addEventListener("click", (event) => this.open(n, event));
    return h("li", { class: `inbox-item${n.read ? "" : " unread"}`, "data-notification": String(n.id) }, link);
  }

  open(n, event) {
    this.setRead([n.id]);
    markRead({ ids: [n.id] });
    if (n.room === this.slug) {
      // This room: jump to the message instead of reloading.
      event.preventDefault();
      this.toggle(false);
      history.replaceState(null, "", `#message-${n.message.id}`);
      jumpToMessage(n.message.id);
    }
  }

  setRead(ids) {
    for (const id of ids) {
      const n = this.items.get(id);
      if (n && !n.read) {
        n.read = true;
        if (this.mentions?.has(n.room)) this.mentions.set(n.room, Math.max(0, this.mentions.get(n.room) - 1));
      }
    }
    this.render();
  }

  readAll() {
    markRead({ all: true });
    for (const n of this.items.values()) n.read = true;
    if (this.mentions) for (const slug of this.mentions.keys()) this.mentions.set(slug, 0);
    this.render();
  }

  /** The page moved its read position in `room` to `seq`: those notifications are read now. */
  read(room, seq) {
    let changed = false;
    for (const n of this.items.values()) {
      if (n.room === room && !n.read && n.message.seq <= seq) {
        n.read = true;
        changed = true;
      }
    }
    if (this.mentions?.get(room)) {
      // The room's count may hold ones older than the inbox: ask again, once the server
      // has had the `read` frame (it travels on the socket, the question over HTTP).
      this.mentions.set(room, 0);
      this.render();
      setTimeout(() => this.load(), 600);
    } else if (changed) {
      this.render();
    }
  }

  // -- frames --

  onFrame(frame) {
    if (frame.type === "notification") this.arrived(frame.notification);
    else if (frame.type === "read") this.read(frame.room, frame.seq);
  }

  arrived(n) {
    if (this.items.has(n.id)) return;
    this.items.set(n.id, n);
    if (!n.read) {
      this.mentions ??= new Map();
      this.mentions.set(n.room, (this.mentions.get(n.room) ?? 0) + 1);
    }
    this.render();
    if (document.hidden && (n.kind === "mention" || n.kind === "dm")) this.notifyDesktop(n);
  }

  notifyDesktop(n) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const shown = new Notification(describe(n), { body: n.message.body.slice(0, 200), tag: `chat-${n.id}` });
      shown.onclick = () => {
        window.focus();
        location.assign(messageUrl(n));
      };
    } catch {
      // Some browsers allow notifications from a service worker only.
    }
  }

  // -- the tab title: "(@N) " before whatever the page shows --

  applyTitle() {
    const unread = this.unread();
    const bare = document.title.replace(TITLE_PREFIX, "");
    const wanted = unread ? `(@${unread}) ${bare}` : bare;
    if (document.title !== wanted) document.title = wanted;
  }

  keepTitle() {
    const title = document.querySelector("title");
    if (title) new MutationObserver(() => this.applyTitle()).observe(title, { childList: true, characterData: true, subtree: true });
  }
}

/** Scroll the message `id` into view and flash it, once it is on the page. */
export function jumpToMessage(id, { tries = 40 } = {}) {
  const node = document.querySelector(`#messages [data-id="${CSS.escape(String(id))}"]`);
  if (!node) {
    if (tries > 0) setTimeout(() => jumpToMessage(id, { tries: tries - 1 }), 150);
    return;
  }
  node.scrollIntoView({ block: "center" });
  node.classList.add("flash");
  setTimeout(() => node.classList.remove("flash"), 2000);
}

/** On load: a `#message-<id>` in the address (a link from the inbox or an email) jumps there. */
export function jumpFromHash() {
  const match = /^#message-(\d+)$/.exec(location.hash);
  if (match) jumpToMessage(Number(match[1]));
}
