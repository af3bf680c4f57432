// The connection's state on the page: a banner while connecting or offline (with the
// seconds until the next attempt and a "Retry now" button), and body[data-connection]
// ("connecting" | "live" | "offline") that the header's dot shows at all times. Once the
// page has said something final in the same banner (the room is gone), `quiet` keeps it.

import { h } from "./render.js";

const TICK_MS = 250;

export class ConnectionBanner {
  /** banner: the page's role=status element; retry(): start the next attempt now. */
  constructor({ banner, retry }) {
    Object.assign(this, { banner, retry });
    this.timer = null;
    this.quiet = false; // true: only body[data-connection] follows the status, the banner stays
  }

  /** Show `status` from ChatSocket.onStatus; false for a status this banner doesn't own. */
  show(status, detail = {}) {
    this.#stopCountdown();
    if (!["connecting", "reconnecting", "offline", "live"].includes(status)) return false;
    document.body.dataset.connection = status === "reconnecting" ? "connecting" : status;
    if (this.quiet) return true;
    if (status === "live") {
      this.banner.hidden = true;
      return true;
    }
    this.banner.hidden = false;
    this.banner.dataset.tone = status === "connecting" ? "info" : "warn";
    if (status === "offline") this.#countdown(detail.retryAt ?? Date.now());
    else this.banner.replaceChildren(status === "connecting" ? "Connecting…" : "Reconnecting…");
    return true;
  }

  #countdown(retryAt) {
    // The seconds change every tick; only the first sentence is worth announcing again.
    const seconds = h("span", { class: "countdown", "aria-hidden": "true" });
    const button = h("button", { type: "button", class: "link-button", id: "retry-now" }, "Retry now");
    button.addEventListener("click", () => this.retry());
    this.banner.replaceChildren("Offline. Reconnecting in ", seconds, "… ", button);
    const tick = () => {
      seconds.textContent = `${Math.max(1, Math.ceil((retryAt - Date.now()) / 1000))} s`;
    };
    tick();
    this.timer = setInterval(tick, TICK_MS);
  }

  #stopCountdown() {
    clearInterval(this.timer);
    this.timer = null;
  }
}
