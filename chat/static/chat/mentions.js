// Mentions in the room page: messages that mention me are highlighted, and typing `@` in the
// composer offers the room's members (GET /api/v1/rooms/<slug>/members/), keyboard first:
// Up/Down choose, Enter or Tab insert, Escape closes.
//
// Nothing here changes how messages are rendered: a MutationObserver marks the message nodes
// the timeline adds. A server-rendered `<span class="mention" data-user="me">` counts, and so
// does `@me` in a plain-text body (outside `code`).

import { h } from "./render.js";
import { bindSuggestionKeys } from "./suggest.js";

const MAX_SUGGESTIONS = 8;

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Mark every message in `list` that mentions `me` (now and as messages arrive). */
export function highlightMentions({ list, me }) {
  if (!list || !me) return;
  const pattern = new RegExp(`(^|[^\\w.+\\-@])@${escapeRegExp(me)}(?![\\w])`);
  const mark = (node) => {
    if (!(node instanceof HTMLElement) || !node.dataset.author) return;
    if (node.dataset.author === me) return; // one's own message is no mention
    const span = node.querySelector(`.mention[data-user="${CSS.escape(me)}"]`);
    let mentioned = Boolean(span);
    if (!mentioned) {
      const body = node.querySelector(".msg-body, .body, p") ?? node;
      const text = [...body.childNodes].filter((c) => !(c instanceof HTMLElement && c.closest("code"))).map((c) => c.textContent).join("");
      mentioned = pattern.test(text);
    }
    node.classList.toggle("mentions-me", mentioned);
  };
  for (const node of list.children) mark(node);
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === "childList") for (const node of record.addedNodes) mark(node);
      const owner = record.target instanceof HTMLElement ? record.target.closest("[data-author]") : record.target.parentElement?.closest("[data-author]");
      if (owner) mark(owner); // an edit
    }
  }).observe(list, { childList: true, subtree: true, characterData: true });
}

/** The `@name` autocomplete of the composer over the room's members. */
export function setupMentionAutocomplete({ form, input, slug, me }) {
  if (!form || !input) return;
  let members = null;
  let matches = [];
  let active = 0;
  let start = -1;
  const listbox = h("ul", { class: "mention-suggest", id: "mention-suggest", role: "listbox", hidden: "", "aria-label": "Members" });
  form.append(listbox);
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", "mention-suggest");

  async function load() {
    if (members) return members;
    try {
      const response = await fetch(`/api/v1/rooms/${encodeURIComponent(slug)}/members/`, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      const data = response.ok ? await response.json() : [];
      const rows = Array.isArray(data) ? data : data?.results ?? [];
      members = rows.map((m) => m.username ?? m.user?.username).filter((name) => name && name !== me);
    } catch {
      members = [];
    }
    return members;
  }

  function close() {
    listbox.hidden = true;
    matches = [];
    start = -1;
    input.removeAttribute("aria-activedescendant");
  }

  function show() {
    listbox.replaceChildren(...matches.map((name, i) => {
      const option = h("li", { role: "option", id: `mention-option-${i}`, "aria-selected": String(i === active), class: i === active ? "active" : "" }, `@${name}`);
      option.addEventListener("mousedown", (event) => {
        event.preventDefault(); // keep the focus in the composer
        insert(name);
      });
      return option;
    }));
    listbox.hidden = matches.length === 0;
    if (matches.length) input.setAttribute("aria-activedescendant", `mention-option-${active}`);
  }

  function insert(name) {
    const caret = input.selectionStart;
    const before = input.value.slice(0, start);
    const after = input.value.slice(caret);
    input.value = `${before}@${name} ${after}`;
    const at = before.length + name.length + 2;
    input.setSelectionRange(at, at);
    close();
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }

  async function update() {
    const caret = input.selectionStart;
    const match = /(^|[^\w.+\-@])@([\w.+-]*)$/.exec(input.value.slice(0, caret));
    if (!match) return close();
    start = caret - match[2].length - 1;
    const prefix = match[2].toLowerCase();
    const names = await load();
    matches = names.filter((name) => name.toLowerCase().startsWith(prefix)).slice(0, MAX_SUGGESTIONS);
    if ("room".startsWith(prefix) && matches.length < MAX_SUGGESTIONS) matches.push("room");
    active = 0;
    show();
  }

  bindSuggestionKeys({
    form, input, listbox, update, close,
    move: (step) => {
      active = (active + (step > 0 ? 1 : matches.length - 1)) % matches.length;
      show();
    },
    pick: () => insert(matches[active]),
  });
}
