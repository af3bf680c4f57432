// Reaction chips under a message: emoji and count, pressed when they include me, a click
// toggles mine, the title names who reacted. The server's `message.reacted` is the answer
// to a click (threads.js re-renders the message with it), so two tabs stay in step.

import { openEmojiPicker, rememberEmoji } from "./emojipicker.js";
import { h, messageParts } from "./render.js";

function names(reaction) {
  const more = reaction.count - reaction.users.length;
  return reaction.users.join(", ") + (more > 0 ? ` and ${more} more` : "");
}

function chips(msg, me) {
  const reactions = msg.deleted ? [] : msg.reactions ?? [];
  if (reactions.length === 0) return null;
  const row = h("div", { class: "reactions", role: "group", "aria-label": "Reactions", "data-message-id": msg.id });
  for (const reaction of reactions) {
    const mine = reaction.users.includes(me);
    row.append(h("button", {
      type: "button",
      class: "reaction",
      "data-emoji": reaction.emoji,
      "aria-pressed": String(mine),
      title: `${names(reaction)} reacted with ${reaction.emoji}`,
      "aria-label": `${reaction.emoji} ${reaction.count}${mine ? ", including you" : ""}`,
    }, h("span", { class: "reaction-emoji" }, reaction.emoji), h("span", { class: "reaction-count" }, String(reaction.count))));
  }
  row.append(h("button", { type: "button", class: "reaction-add", "data-message-id": msg.id,
    "aria-haspopup": "dialog", "aria-label": "Add a reaction", title: "Add a reaction" }, "+"));
  return row;
}

/** Chips on every message; clicks on chips and on any `.reaction-add` button react over `socket`. */
export function setupReactions({ me, socket, onRefused = () => {} }) {
  messageParts.after.push(chips);

  function send(id, emoji, add) {
    if (!Number.isInteger(id)) return;
    if (add) rememberEmoji(emoji);
    if (!socket.send({ type: add ? "react" : "unreact", id, emoji, ref: `react:${id}` })) onRefused("Not connected.");
  }

  document.addEventListener("click", (event) => {
    const chip = event.target.closest(".reaction");
    if (chip) {
      const id = Number(chip.closest(".reactions").dataset.messageId);
      send(id, chip.dataset.emoji, chip.getAttribute("aria-pressed") !== "true");
      return;
    }
    const add = event.target.closest(".reaction-add");
    if (add) {
      const id = Number(add.dataset.messageId);
      openEmojiPicker(add, (emoji) => send(id, emoji, true));
    }
  });
}
