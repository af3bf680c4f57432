// Builds message elements. Every piece of user text enters the DOM as a text node:
// never innerHTML, so a message can't inject markup. The one exception is MESSAGE.html,
// which the server rendered from Markdown and sanitized with an allowlist.

import { attachmentsElement } from "./attachments.js";
import { absolute, clock, dayKey, dayLabel, timeElement } from "./time.js";

const GROUP_GAP_MS = 5 * 60_000;
const URL_RE = /\bhttps?:\/\/[^\s<>]+/gi;
const CLOSERS = { ")": "(", "]": "[", "}": "{" };

/** createElement with attributes and children (strings become text nodes). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// Sentence punctuation after a URL usually isn't part of it; a closing bracket is kept
// only when the URL opened one (Wikipedia-style links).
function trimUrl(url) {
  for (;;) {
    const last = url.at(-1);
    if (".,;:!?'\"*".includes(last)) {
      url = url.slice(0, -1);
    } else if (last in CLOSERS && url.split(CLOSERS[last]).length <= url.split(last).length - 1) {
      url = url.slice(0, -1);
    } else {
      return url;
    }
  }
}

function linkElement(text) {
  let parsed;
  try {
    parsed = new URL(text);
  } catch {
    return null;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
  return h("a", { href: parsed.href, target: "_blank", rel: "noopener noreferrer" }, text);
}

/** Append `text` to `parent`, turning http(s) URLs into links. */
export function appendLinkified(parent, text) {
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    const url = trimUrl(match[0]);
    if (match.index > last) parent.append(text.slice(last, match.index));
    parent.append(linkElement(url) ?? url);
    last = match.index + url.length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

/** A stable hue per username, so people are recognisable by colour at a glance. */
export function hue(name) {
  let n = 0;
  for (const ch of name) n = (n * 31 + ch.codePointAt(0)) % 360;
  return n;
}

/** Up to two initials: "ann.lee" → "AL", "bob" → "B". */
export function initials(username) {
  const parts = username.split(/[._\-\s]+/u).filter(Boolean);
  const first = [...(parts[0] ?? "?")][0];
  const second = parts.length > 1 ? [...parts[1]][0] : "";
  return (first + second).toUpperCase();
}

export function avatar(username, className = "avatar") {
  const node = h("span", { class: className, "aria-hidden": "true" }, initials(username));
  node.style.setProperty("--hue", String(hue(username)));
  return node;
}

/** Extra parts of a message (threads.js, reactions.js): functions (msg, me) → element or null,
 * placed before the body (a reply's quote) or after it (reaction chips, reply count). */
export const messageParts = { before: [], after: [] };

function parts(list, msg, me) {
  return msg.id == null ? [] : list.map((part) => part(msg, me)).filter(Boolean);
}

/** (Re)render MESSAGE `msg` into `node`; status classes set by others (pending, failed) are kept. */
export function renderMessage(node, msg, me) {
  const username = msg.author?.username ?? "unknown";
  const ts = Date.parse(msg.created_at) || Date.now();
  node.classList.add("msg");
  node.classList.toggle("mine", username === me);
  node.classList.toggle("deleted", Boolean(msg.deleted));
  node.dataset.author = username;
  node.dataset.ts = String(ts);
  if (msg.id != null) node.dataset.id = String(msg.id);
  if (msg.seq != null) node.dataset.seq = String(msg.seq);

  const body = h("div", { class: "msg-body" });
  if (msg.deleted) {
    body.append(h("span", { class: "msg-removed" }, msg.by === "moderator" ? "message removed by a moderator" : "message removed"));
  } else {
    if (typeof msg.html === "string" && msg.html) {
      body.classList.add("msg-html");
      body.innerHTML = msg.html; // sanitized by the server (docs/protocol.md, Formatting)
    } else {
      appendLinkified(body, msg.body ?? "");
    }
    if (msg.edited_at) {
      const edited = Date.parse(msg.edited_at);
      (body.lastElementChild?.matches("p") ? body.lastElementChild : body)
        .append(" ", h("span", { class: "msg-edited", title: `Edited ${absolute(edited)}` }, "(edited)"));
    }
  }
  const clockEl = h("time", { class: "msg-clock", datetime: new Date(ts).toISOString(), title: absolute(ts) }, clock(ts));
  const head = h("div", { class: "msg-head" },
    // Someone else's name opens their card (usercard.js, by event delegation).
    username === me ? h("span", { class: "msg-author" }, username)
      : h("button", { type: "button", class: "msg-author", "aria-haspopup": "dialog" }, username),
    // A bot's messages say so (docs/protocol.md, Bots and incoming webhooks).
    msg.author?.bot ? h("span", { class: "msg-bot", title: "Bot" }, "BOT") : null,
    " ", timeElement(ts, "msg-time"));
  const row = h("div", { class: "msg-row" },
    h("div", { class: "msg-gutter" }, avatar(username), clockEl),
    h("div", { class: "msg-main" }, head, ...parts(messageParts.before, msg, me), body, attachmentsElement(msg),
      ...parts(messageParts.after, msg, me)),
    // Report, delete, mute, ban (msgmenu.js, by event delegation); not on pending or deleted ones.
    msg.id != null && !msg.deleted
      ? h("button", { type: "button", class: "msg-menu-button", "aria-haspopup": "menu", "aria-label": `Actions for ${username}'s message` }, "⋯")
      : null);
  node.replaceChildren(row);
  return node;
}

/** Mark `node` as continuing its author's group, or as the first message of a day. */
export function regroup(node) {
  if (!node) return;
  const prev = node.previousElementSibling;
  const ts = Number(node.dataset.ts);
  const newDay = !prev || dayKey(Number(prev.dataset.ts)) !== dayKey(ts);
  const continued = !newDay && prev.dataset.author === node.dataset.author
    && ts - Number(prev.dataset.ts) < GROUP_GAP_MS;
  node.classList.toggle("continued", continued);

  let divider = node.firstElementChild?.classList.contains("day-divider") ? node.firstElementChild : null;
  if (newDay && !divider) {
    divider = h("div", { class: "day-divider", role: "separator" }, h("span", {}, ""));
    node.prepend(divider);
  } else if (!newDay && divider) {
    divider.remove();
  }
  if (newDay) {
    divider.dataset.ts = String(ts);
    divider.firstElementChild.textContent = dayLabel(ts);
  }
}

/** Give the header's avatar the same colour the user's messages have. */
export function paintAccountAvatar() {
  const node = document.querySelector(".account .avatar");
  if (!node) return;
  node.style.setProperty("--hue", String(hue(document.body.dataset.username ?? "")));
  node.textContent = initials(document.body.dataset.username || "?");
}
