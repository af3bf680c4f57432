// Who is online in the room and who is typing.
//
// The header's "N online" button opens the people panel: a right-hand column on wide
// screens (open unless the reader closed it), a drop-down sheet on narrow ones. Each
// name in it has a "Message" button for a direct conversation.

import { messageButton } from "./dm.js";
import { avatar, h } from "./render.js";

const TYPING_SHOWN_MS = 6000;
const WIDE = matchMedia("(min-width: 1000px)");
const PREF_KEY = "chat.people";

function storedPref() {
  try {
    return localStorage.getItem(PREF_KEY);
  } catch {
    return null;
  }
}

function storePref(value) {
  try {
    localStorage.setItem(PREF_KEY, value);
  } catch {
    // private mode: the choice lasts for this page only
  }
}

export class Presence {
  /** `container` is the toggle button; its aria-controls names the people panel. */
  /** `dmWith`: in a direct message, the other person, whose state the header shows instead of a count. */
  constructor({ count, container, typing, me, dmWith = null }) {
    Object.assign(this, { countEl: count, toggle: container, typingEl: typing, me, dmWith });
    this.panel = document.getElementById(container.getAttribute("aria-controls") ?? "");
    this.list = this.panel?.querySelector(".people-list");
    this.note = this.panel?.querySelector(".people-note");
    this.panelCount = this.panel?.querySelector(".people-count");
    this.status = this.panel?.querySelector(".people-error");
    this.online = new Set();
    this.rows = new Map(); // username → <li> in the panel
    this.typing = new Map(); // username → timeout id
    this.known = false;
    if (this.panel) this.#setupPanel();
  }

  isOnline(username) {
    return this.known && this.online.has(username);
  }

  set(usernames) {
    this.online = new Set(usernames);
    this.known = true;
    this.#renderOnline();
  }

  update(username, online) {
    if (online) this.online.add(username);
    else {
      this.online.delete(username);
      this.stoppedTyping(username);
    }
    this.#renderOnline();
  }

  /** The socket is down: the list is no longer trustworthy. */
  unknown() {
    this.known = false;
    this.#renderOnline();
    for (const user of [...this.typing.keys()]) this.stoppedTyping(user);
  }

  startedTyping(username) {
    if (username === this.me) return;
    clearTimeout(this.typing.get(username));
    this.typing.set(username, setTimeout(() => this.stoppedTyping(username), TYPING_SHOWN_MS));
    this.#renderTyping();
  }

  stoppedTyping(username) {
    if (!this.typing.has(username)) return;
    clearTimeout(this.typing.get(username));
    this.typing.delete(username);
    this.#renderTyping();
  }

  // --- the panel ---

  #setupPanel() {
    this.open = WIDE.matches && storedPref() !== "closed";
    this.#applyOpen();
    this.toggle.addEventListener("click", () => {
      this.open = !this.open;
      if (WIDE.matches) storePref(this.open ? "open" : "closed");
      this.#applyOpen();
      if (this.open && !WIDE.matches) this.panel.focus(); // Tab goes on to its buttons
    });
    this.panel.querySelector(".people-close")?.addEventListener("click", () => this.#close({ focus: true }));
    WIDE.addEventListener("change", () => {
      this.open = WIDE.matches && storedPref() !== "closed";
      this.#applyOpen();
    });
    // As a drop-down sheet it goes away like a menu: Escape, or a click elsewhere.
    document.addEventListener("keydown", (event) => {
      const inside = this.panel.contains(document.activeElement) || this.toggle === document.activeElement;
      if (event.key === "Escape" && this.open && !WIDE.matches && inside) {
        this.#close({ focus: true });
      }
    });
    document.addEventListener("pointerdown", (event) => {
      if (this.open && !WIDE.matches && !this.panel.contains(event.target) && !this.toggle.contains(event.target)) {
        this.#close();
      }
    });
  }

  #close({ focus = false } = {}) {
    this.open = false;
    if (WIDE.matches) storePref("closed");
    this.#applyOpen();
    if (focus) this.toggle.focus();
  }

  #applyOpen() {
    this.panel.hidden = !this.open;
    this.toggle.setAttribute("aria-expanded", String(this.open));
  }

  #renderOnline() {
    const someone = this.dmWith ? this.online.has(this.dmWith) : this.online.size > 0;
    this.toggle.classList.toggle("has-online", this.known && someone);
    if (!this.known) {
      this.countEl.textContent = "…";
      if (this.panelCount) this.panelCount.textContent = "";
      this.list?.replaceChildren();
      this.rows.clear();
      if (this.note) this.note.textContent = "Connecting…";
      return;
    }
    // You first, then everyone else alphabetically.
    const others = [...this.online].filter((name) => name !== this.me).sort((a, b) => a.localeCompare(b));
    const names = this.online.has(this.me) ? [this.me, ...others] : others;
    this.countEl.textContent = `${names.length} online`;
    // A DM: whether the other person has the chat open anywhere (they join all their rooms).
    if (this.dmWith) this.countEl.textContent = `${this.dmWith} is ${this.online.has(this.dmWith) ? "online" : "offline"}`;
    if (!this.list) return;
    this.panelCount.textContent = String(names.length);
    this.note.textContent = others.length ? "" : this.dmWith ? `${this.dmWith} is offline.` : "Nobody else is here right now.";
    // Move as little as possible: a focused "Message" button must stay focused.
    let cursor = this.list.firstElementChild;
    for (const name of names) {
      let row = this.rows.get(name);
      if (!row) this.rows.set(name, (row = this.#person(name)));
      if (row === cursor) cursor = cursor.nextElementSibling;
      else this.list.insertBefore(row, cursor);
    }
    for (const [name, row] of this.rows) {
      if (!this.online.has(name)) {
        row.remove();
        this.rows.delete(name);
      }
    }
  }

  #person(name) {
    const mine = name === this.me;
    return h("li", { class: "person", "data-user": name },
      avatar(name, "avatar avatar-xs"),
      h("span", { class: "person-name" }, name, mine ? h("span", { class: "person-you" }, " (you)") : null),
      mine ? null : messageButton(name, { status: this.status }));
  }

  #renderTyping() {
    const names = [...this.typing.keys()];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    this.typingEl.textContent = text;
  }
}
