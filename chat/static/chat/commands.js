// Slash commands in the composer (docs/protocol.md, Slash commands): typing `/` at the start
// of the message box offers the commands, keyboard first like the `@` list (mentions.js):
// Up/Down choose, Enter or Tab insert, Escape closes. The server parses and runs them; the
// `command` frame that answers /help and /topic shows here as a local line above the
// composer that only this tab sees (text only: textContent, never markup).

import { h } from "./render.js";
import { bindSuggestionKeys } from "./suggest.js";

// As chat/commands.py lists them (the server's is the word that counts).
export const COMMANDS = [
  { name: "me", usage: "/me <text>", what: "post an action, in italics" },
  { name: "shrug", usage: "/shrug [text]", what: "append ¯\\_(ツ)_/¯" },
  { name: "topic", usage: "/topic <text>", what: "set the room's topic (owners, moderators)" },
  { name: "help", usage: "/help", what: "list the commands (only you see it)" },
];

/** The command list of the composer: shown while the box holds `/` and a partial name. */
export function setupCommandAutocomplete({ form, input }) {
  if (!form || !input) return;
  let matches = [];
  let active = 0;
  const listbox = h("ul", { class: "mention-suggest command-suggest", id: "command-suggest", role: "listbox", hidden: "", "aria-label": "Commands" });
  form.append(listbox);

  function close() {
    listbox.hidden = true;
    matches = [];
    if (input.getAttribute("aria-activedescendant")?.startsWith("command-option-")) input.removeAttribute("aria-activedescendant");
  }

  function show() {
    listbox.replaceChildren(...matches.map((command, i) => {
      const option = h("li", { role: "option", id: `command-option-${i}`, "aria-selected": String(i === active), class: i === active ? "active" : "" },
        h("span", { class: "command-usage" }, command.usage), " ", h("span", { class: "muted" }, command.what));
      option.addEventListener("mousedown", (event) => {
        event.preventDefault(); // keep the focus in the composer
        insert(command);
      });
      return option;
    }));
    listbox.hidden = matches.length === 0;
    if (matches.length) {
      input.setAttribute("aria-controls", "command-suggest");
      input.setAttribute("aria-activedescendant", `command-option-${active}`);
    }
  }

  function insert(command) {
    input.value = `/${command.name} ${input.value.slice(input.selectionStart)}`.replace(/ $/, " ");
    const at = command.name.length + 2;
    input.setSelectionRange(at, at);
    close();
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function update() {
    const match = /^\/(\w*)$/.exec(input.value.slice(0, input.selectionStart));
    if (!match) return close();
    const prefix = match[1].toLowerCase();
    matches = COMMANDS.filter((command) => command.name.startsWith(prefix) && command.name !== prefix);
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

/** A local line above the composer for `command` frames; returns show(text). */
export function setupCommandOutput({ form }) {
  const text = h("p", { class: "command-output-text" });
  const dismiss = h("button", { type: "button", class: "icon-button", "aria-label": "Dismiss" }, "×");
  const box = h("div", { class: "command-output", id: "command-output", role: "status", hidden: "" }, text, dismiss);
  dismiss.addEventListener("click", () => { box.hidden = true; });
  form.before(box);
  return (value) => {
    text.textContent = value;
    box.hidden = false;
  };
}
