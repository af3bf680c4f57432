// The search box: searches the room's history (GET …/messages/?q=), lists the hits with
// room, author, time and an excerpt with the words marked, and opens a hit in context.
// Hit text enters the DOM as text nodes; the marks are built around them, never as HTML.

import { fetchHistory } from "./api.js";
import { h } from "./render.js";
import { absolute, relative } from "./time.js";

const EXCERPT = 160; // characters around the first match
const LIMIT = 20;

function words(q) {
  return [...new Set(q.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [])];
}

/** `text` cut around the first word found, with every word wrapped in <mark>. */
export function excerpt(text, terms) {
  const lower = text.toLowerCase();
  const first = Math.min(...terms.map((t) => lower.indexOf(t)).filter((i) => i >= 0), text.length);
  const start = Math.max(0, first - EXCERPT / 3);
  const piece = text.slice(start, start + EXCERPT);
  const out = h("span", { class: "search-excerpt" });
  if (start > 0) out.append("…");
  const re = terms.length ? new RegExp(terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "giu") : null;
  let last = 0;
  for (const match of re ? piece.matchAll(re) : []) {
    if (match.index > last) out.append(piece.slice(last, match.index));
    out.append(h("mark", {}, match[0]));
    last = match.index + match[0].length;
  }
  out.append(piece.slice(last));
  if (start + EXCERPT < text.length) out.append("…");
  return out;
}

export function setupSearch({ form, input, panel, slug, roomLabel, onOpen }) {
  const list = panel.querySelector(".search-list");
  const status = panel.querySelector(".search-status");
  let asked = 0;

  const close = ({ focus = false } = {}) => {
    panel.hidden = true;
    if (focus) input.focus();
  };

  const show = (q, results) => {
    const terms = words(q);
    status.textContent = results.length
      ? `${results.length}${results.length === LIMIT ? "+" : ""} message${results.length === 1 ? "" : "s"} match “${q}”`
      : `No messages match “${q}”.`;
    list.replaceChildren(...[...results].reverse().map((msg) => {
      const ts = Date.parse(msg.created_at);
      const hit = h("button", { type: "button", class: "search-hit", "data-id": String(msg.id) },
        h("span", { class: "search-meta" },
          h("span", { class: "search-room" }, roomLabel()), " · ",
          h("span", { class: "search-author" }, msg.author?.username ?? "unknown"), " · ",
          h("time", { datetime: new Date(ts).toISOString(), title: absolute(ts) }, relative(ts))),
        excerpt(msg.body ?? "", terms));
      hit.addEventListener("click", () => {
        close();
        onOpen(msg);
      });
      return h("li", {}, hit);
    }));
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = input.value.trim();
    if (!q) {
      close();
      return;
    }
    const mine = ++asked;
    panel.hidden = false;
    status.textContent = "Searching…";
    list.replaceChildren();
    try {
      const page = await fetchHistory(slug, { q, limit: LIMIT });
      if (mine === asked) show(q, page.results);
    } catch {
      if (mine === asked) status.textContent = "Search isn't available right now. Try again.";
    }
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden) {
      event.preventDefault();
      close();
    }
  });
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close({ focus: true });
  });
  panel.querySelector(".search-close")?.addEventListener("click", () => close({ focus: true }));
}
