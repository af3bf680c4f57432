// A small card for a message's author: who they are, whether they're here, and a
// "Message" button for a direct conversation. Opened from the author's name (event
// delegation on the message list, so message rendering needs no wiring).

import { messageButton } from "./dm.js";
import { avatar, h } from "./render.js";
import { localTime } from "./timezone.js";

const GAP_PX = 6;
const EDGE_PX = 8;

export function setupUserCards({ root, me, isOnline = () => false }) {
  if (typeof HTMLElement.prototype.showPopover !== "function") return; // the name stays plain text
  const card = h("div", { class: "user-card", popover: "auto", role: "dialog", "aria-label": "" });
  document.body.append(card);
  let invoker = null;
  let closedAt = 0;
  const names = new Map(); // username → { name, timezone } ("" for none), for this page's life

  const open = (button) => {
    const username = button.dataset.user ?? button.textContent.trim();
    if (!username || username === me) return;
    invoker = button;
    const status = h("p", { class: "user-card-error", role: "alert" });
    const online = isOnline(username);
    card.setAttribute("aria-label", username);
    card.replaceChildren(
      h("div", { class: "user-card-who" },
        avatar(username),
        h("div", {},
          h("p", { class: "user-card-name" }, username),
          h("p", { class: `user-card-state${online ? " is-online" : ""}` },
            h("span", { class: "online-dot", "aria-hidden": "true" }), online ? "Online" : "Offline"))),
      messageButton(username, { text: `Message ${username}`, className: "btn btn-primary btn-block", status }),
      status,
    );
    card.showPopover();
    place(button);
    card.querySelector("button")?.focus();
    showDetails(username);
  };

  // The display name (settings page) and local time come after the card opens: the card is
  // useful without them.
  const showDetails = async (username) => {
    let details = names.get(username);
    if (details === undefined) {
      try {
        const response = await fetch(`/users/${encodeURIComponent(username)}/card/`, { credentials: "same-origin" });
        const data = response.ok ? await response.json() : {};
        details = { name: data.name ?? "", timezone: data.timezone ?? "" };
      } catch {
        return; // offline: the username alone
      }
      names.set(username, details);
    }
    const line = card.querySelector(".user-card-name");
    if (card.getAttribute("aria-label") !== username || !line) return;
    const time = localTime(details.timezone);
    if (time) {
      card.querySelector(".user-card-state")?.after(
        h("p", { class: "user-card-time", title: details.timezone }, `${time} local time`));
    }
    if (details.name) {
      line.textContent = details.name;
      line.after(h("p", { class: "user-card-username" }, `@${username}`));
      card.setAttribute("aria-label", `${details.name} (@${username})`);
    }
  };

  const place = (button) => {
    const at = button.getBoundingClientRect();
    const { width, height } = card.getBoundingClientRect();
    let top = at.bottom + GAP_PX;
    if (top + height > innerHeight - EDGE_PX) top = Math.max(EDGE_PX, at.top - GAP_PX - height);
    const left = Math.min(Math.max(EDGE_PX, at.left), innerWidth - width - EDGE_PX);
    card.style.top = `${top}px`;
    card.style.left = `${Math.max(EDGE_PX, left)}px`;
  };

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button.msg-author");
    if (!button || !root.contains(button)) return;
    // A click on the name of an open card: light dismiss has just closed it; leave it closed.
    if (invoker === button && performance.now() - closedAt < 500) return;
    open(button);
  });
  card.addEventListener("toggle", (event) => {
    if (event.newState !== "closed") return;
    closedAt = performance.now();
    // Escape or a click elsewhere: give focus back unless the reader moved it on purpose.
    if (invoker?.isConnected && (card.contains(document.activeElement) || document.activeElement === document.body)) invoker.focus({ preventScroll: true });
  });
  // A card left behind by a scroll would point at the wrong message.
  document.addEventListener("scroll", (event) => {
    if (card.matches(":popover-open") && !card.contains(event.target)) card.hidePopover();
  }, { capture: true, passive: true });
}
