// Notices (docs/protocol.md, "Notices"): a room's live values (prices, build states …) as a table above
// the messages, one row per key, updated in place; hidden while the room has none.
//
// The server sends the current value of every key right after `joined` (and again after a
// reconnect), then each new value, already conflated. Rows are painted at most once per
// animation frame, so a fast feed costs one layout per frame, not one per notice.
// Everything from the publisher goes into the DOM as text.

import { h } from "./render.js";

function shown(data) {
  if (data !== null && typeof data === "object" && !Array.isArray(data)) {
    return Object.entries(data)
      .map(([name, value]) => `${name}: ${typeof value === "string" ? value : JSON.stringify(value)}`)
      .join("  ·  ");
  }
  return typeof data === "string" ? data : JSON.stringify(data);
}

export class NoticeBoard {
  /** `container` is the (hidden) section holding a table whose tbody gets the rows. */
  constructor({ container, room }) {
    this.container = container;
    this.room = room;
    this.body = container.querySelector("tbody");
    this.count = container.querySelector(".notices-count");
    this.rows = new Map(); // key → <tr>
    this.pending = new Map(); // key → the newest frame not painted yet
    this.painting = false;
  }

  /** Take a frame; true if it was a notice of this room. */
  onFrame(frame) {
    if (frame.type !== "notice" || frame.room !== this.room) return false;
    this.pending.set(frame.key, frame);
    if (!this.painting) {
      this.painting = true;
      requestAnimationFrame(() => this.#paint());
    }
    return true;
  }

  #paint() {
    this.painting = false;
    for (const frame of this.pending.values()) {
      let row = this.rows.get(frame.key);
      if (!row) {
        row = h("tr", { class: "notice-row" }, h("th", { scope: "row", class: "notice-key" }, frame.key),
          h("td", { class: "notice-value" }), h("td", { class: "notice-at" }, h("time")));
        row.dataset.key = frame.key;
        this.rows.set(frame.key, row);
        this.body.append(row);
      }
      row.querySelector(".notice-value").textContent = shown(frame.data);
      const time = row.querySelector("time");
      time.dateTime = frame.at;
      time.textContent = new Date(frame.at).toLocaleTimeString();
      row.classList.remove("notice-fresh");
      void row.offsetWidth; // restart the highlight
      row.classList.add("notice-fresh");
    }
    this.pending.clear();
    this.count.textContent = String(this.rows.size);
    this.container.hidden = this.rows.size === 0;
  }
}
