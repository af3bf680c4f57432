// Direct messages: a "Message" button on a username opens the pair's private room
// (POST /api/v1/dms/ creates it once, whichever side asks first) and goes there.

import { openDirectRoom } from "./api.js";
import { h } from "./render.js";

export function roomUrl(slug) {
  return `/rooms/${encodeURIComponent(slug)}/`;
}

function failure(error, username) {
  if (error.status === 404) return `${username} can't be messaged: no such user.`;
  if (error.status === 401 || error.status === 403) return "Log in again to send direct messages.";
  if (error.status === 0) return "The server can't be reached. Try again in a moment.";
  return "Couldn't open the conversation. Try again.";
}

/**
 * A button that opens the direct messages with `username`. Errors go into `status`
 * (an element the caller places), so the reader is told why nothing happened.
 */
export function messageButton(username, { text = "Message", className = "btn btn-small btn-quiet", status = null } = {}) {
  const button = h("button", { type: "button", class: className, "data-dm": username, "aria-label": `Message ${username}` }, text);
  button.addEventListener("click", async () => {
    if (button.getAttribute("aria-busy") === "true") return;
    button.setAttribute("aria-busy", "true");
    if (status) status.textContent = "";
    try {
      const room = await openDirectRoom(username);
      if (room.slug === document.getElementById("chat")?.dataset.roomSlug) {
        document.getElementById("composer-input")?.focus();
      } else {
        location.assign(roomUrl(room.slug));
      }
    } catch (error) {
      if (status) status.textContent = failure(error, username);
      else console.warn("chat: direct message", error);
    } finally {
      button.removeAttribute("aria-busy");
    }
  });
  return button;
}

/** The other person of a DM room named "ann, bob" (null when `me` is not one of the two). */
export function dmPartner(name, me) {
  const names = name.split(", ");
  if (names.length !== 2 || !names.includes(me)) return null;
  return names[0] === me ? names[1] : names[0];
}

/** In a DM, show the other person's name rather than the room's "ann, bob". */
export function labelDirectRooms(me, root = document) {
  for (const node of root.querySelectorAll("[data-dm-name]")) {
    const names = node.dataset.dmName.split(", ");
    if (names.length !== 2 || !names.includes(me)) continue;
    const other = names[0] === me ? names[1] : names[0];
    if (node.dataset.dmAttr) node.setAttribute(node.dataset.dmAttr, node.getAttribute(node.dataset.dmAttr).replace(node.dataset.dmName, other));
    else node.textContent = other;
  }
}
