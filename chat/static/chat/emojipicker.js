// The emoji picker: a popover with a search box, the recently used emoji and a grid of
// common ones. Each emoji is written fully qualified (with U+FE0F where Unicode wants it),
// the spelling the server stores; the server still validates whatever is sent.

import { h } from "./render.js";

const RECENT_KEY = "chat.recentEmoji";
const RECENT_MAX = 16;

// [emoji, its name and search words]
const EMOJI = [
  ["👍", "thumbs up yes like approve"],
  ["👎", "thumbs down no dislike"],
  ["❤️", "red heart love"],
  ["😂", "face with tears of joy laugh lol"],
  ["🎉", "party popper tada celebrate"],
  ["🙏", "folded hands please thanks pray"],
  ["🔥", "fire lit hot"],
  ["👀", "eyes look see"],
  ["✅", "check mark button done yes"],
  ["❌", "cross mark no wrong"],
  ["😄", "grinning face with smiling eyes happy smile"],
  ["😀", "grinning face smile"],
  ["😁", "beaming face grin"],
  ["😅", "grinning face with sweat phew"],
  ["🤣", "rolling on the floor laughing rofl"],
  ["🙂", "slightly smiling face"],
  ["😉", "winking face wink"],
  ["😊", "smiling face with smiling eyes blush"],
  ["😍", "smiling face with heart eyes love"],
  ["🥰", "smiling face with hearts love"],
  ["😘", "face blowing a kiss"],
  ["😎", "smiling face with sunglasses cool"],
  ["🤔", "thinking face hmm think"],
  ["🤨", "face with raised eyebrow skeptical"],
  ["😐", "neutral face meh"],
  ["😑", "expressionless face"],
  ["🙄", "face with rolling eyes eyeroll"],
  ["😬", "grimacing face awkward"],
  ["😴", "sleeping face tired zzz"],
  ["🤯", "exploding head mind blown"],
  ["😱", "face screaming in fear scream"],
  ["😢", "crying face sad tear"],
  ["😭", "loudly crying face sob"],
  ["😡", "enraged face angry"],
  ["🤬", "face with symbols on mouth swear"],
  ["🥳", "partying face party"],
  ["🤩", "star struck wow"],
  ["😇", "smiling face with halo innocent"],
  ["🤗", "smiling face with open hands hug"],
  ["🤝", "handshake deal"],
  ["👏", "clapping hands clap applause"],
  ["🙌", "raising hands hooray"],
  ["💪", "flexed biceps strong"],
  ["👋", "waving hand hello bye wave"],
  ["✌️", "victory hand peace"],
  ["🤞", "crossed fingers luck"],
  ["👌", "ok hand perfect"],
  ["👉", "backhand index pointing right"],
  ["👆", "backhand index pointing up"],
  ["🫡", "saluting face salute"],
  ["🤷", "person shrugging shrug"],
  ["🤦", "person facepalming facepalm"],
  ["💯", "hundred points 100 perfect"],
  ["⭐", "star favorite"],
  ["✨", "sparkles shiny new"],
  ["⚡", "high voltage lightning fast"],
  ["💡", "light bulb idea"],
  ["🚀", "rocket ship launch deploy"],
  ["🐛", "bug insect"],
  ["🔧", "wrench fix tool"],
  ["🛠️", "hammer and wrench tools build"],
  ["📌", "pushpin pin"],
  ["📎", "paperclip attachment"],
  ["📝", "memo note write"],
  ["📅", "calendar date"],
  ["⏰", "alarm clock time"],
  ["⏳", "hourglass not done time wait"],
  ["✔️", "check mark"],
  ["❓", "red question mark question"],
  ["❗", "red exclamation mark important"],
  ["⚠️", "warning caution"],
  ["🚧", "construction wip"],
  ["🔒", "locked lock private"],
  ["🔑", "key"],
  ["💬", "speech balloon comment chat"],
  ["👁️", "eye"],
  ["🧠", "brain smart"],
  ["☕", "hot beverage coffee tea"],
  ["🍕", "pizza food"],
  ["🍺", "beer mug cheers"],
  ["🍻", "clinking beer mugs cheers"],
  ["🎂", "birthday cake"],
  ["🎁", "wrapped gift present"],
  ["🏆", "trophy win award"],
  ["🥇", "1st place medal gold first"],
  ["🎯", "bullseye target direct hit"],
  ["📈", "chart increasing up growth"],
  ["📉", "chart decreasing down"],
  ["💰", "money bag"],
  ["💸", "money with wings"],
  ["🌟", "glowing star"],
  ["☀️", "sun sunny"],
  ["🌈", "rainbow"],
  ["❄️", "snowflake cold"],
  ["🌧️", "cloud with rain"],
  ["🐶", "dog face puppy"],
  ["🐱", "cat face kitten"],
  ["🦄", "unicorn"],
  ["🐢", "turtle slow"],
  ["🐍", "snake python"],
  ["🦀", "crab rust"],
  ["🍿", "popcorn"],
  ["👻", "ghost"],
  ["💀", "skull dead"],
  ["🤖", "robot bot"],
  ["👽", "alien"],
  ["💩", "pile of poo"],
  ["🙈", "see no evil monkey"],
  ["🙉", "hear no evil monkey"],
  ["🙊", "speak no evil monkey"],
  ["💔", "broken heart"],
  ["💙", "blue heart"],
  ["💚", "green heart"],
  ["💛", "yellow heart"],
  ["💜", "purple heart"],
  ["🧡", "orange heart"],
  ["🖤", "black heart"],
  ["🤍", "white heart"],
  ["➕", "plus"],
  ["➖", "minus"],
  ["1️⃣", "keycap 1 one"],
  ["2️⃣", "keycap 2 two"],
  ["3️⃣", "keycap 3 three"],
  ["🆗", "ok button"],
  ["🆕", "new button"],
  ["🔴", "red circle"],
  ["🟢", "green circle"],
  ["🟡", "yellow circle"],
  ["🏁", "chequered flag finish"],
  ["🚩", "triangular flag red flag"],
];

function recent() {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) ?? "[]");
    return Array.isArray(list) ? list.filter((e) => typeof e === "string").slice(0, RECENT_MAX) : [];
  } catch {
    return [];
  }
}

/** Remember `emoji` as the most recently used one. */
export function rememberEmoji(emoji) {
  const list = [emoji, ...recent().filter((e) => e !== emoji)].slice(0, RECENT_MAX);
  try {
    localStorage.setItem(RECENT_KEY, JSON.stringify(list));
  } catch {
    // Private mode or full storage: the picker just has no recent row.
  }
}

const names = new Map(EMOJI);
let picker = null;
let chosen = null;
let opener = null;

function button(emoji) {
  const name = names.get(emoji)?.split(" ").slice(0, 3).join(" ") ?? "emoji";
  return h("button", { type: "button", class: "emoji-option", "data-emoji": emoji, title: name, "aria-label": name }, emoji);
}

function fill(query) {
  const words = query.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const matches = EMOJI.filter(([emoji, text]) => words.every((w) => text.includes(w) || emoji === w));
  const recentRow = picker.querySelector(".emoji-recent");
  const used = words.length ? [] : recent();
  recentRow.hidden = used.length === 0;
  recentRow.querySelector(".emoji-grid").replaceChildren(...used.map(button));
  picker.querySelector(".emoji-all .emoji-grid").replaceChildren(...matches.map(([emoji]) => button(emoji)));
  picker.querySelector(".emoji-none").hidden = matches.length > 0;
}

function build() {
  const search = h("input", { type: "search", class: "emoji-search", placeholder: "Search emoji", "aria-label": "Search emoji" });
  picker = h("div", { class: "emoji-picker", popover: "auto", role: "dialog", "aria-label": "Choose an emoji" },
    search,
    h("section", { class: "emoji-recent" }, h("h3", {}, "Recently used"), h("div", { class: "emoji-grid" })),
    h("section", { class: "emoji-all" }, h("h3", {}, "Emoji"), h("div", { class: "emoji-grid" }),
      h("p", { class: "emoji-none", hidden: "" }, "No emoji match.")));
  search.addEventListener("input", () => fill(search.value));
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      picker.querySelector(".emoji-all .emoji-option")?.click();
    }
  });
  picker.addEventListener("click", (event) => {
    const option = event.target.closest(".emoji-option");
    if (!option) return;
    const emoji = option.dataset.emoji;
    rememberEmoji(emoji);
    const callback = chosen;
    picker.hidePopover();
    callback?.(emoji);
  });
  picker.addEventListener("toggle", (event) => {
    if (event.newState === "closed") {
      chosen = null;
      if (opener?.isConnected) opener.focus();
    }
  });
  document.body.append(picker);
}

/** Open the picker by `anchor`; `onPick(emoji)` is called with the emoji chosen. */
export function openEmojiPicker(anchor, onPick) {
  if (!picker) build();
  if (picker.matches(":popover-open")) picker.hidePopover();
  chosen = onPick;
  opener = anchor;
  const search = picker.querySelector(".emoji-search");
  search.value = "";
  fill("");
  picker.showPopover();
  const box = anchor.getBoundingClientRect();
  const width = picker.offsetWidth;
  const height = picker.offsetHeight;
  picker.style.left = `${Math.max(8, Math.min(box.right - width, innerWidth - width - 8))}px`;
  picker.style.top = `${box.bottom + height + 8 < innerHeight ? box.bottom + 4 : Math.max(8, box.top - height - 4)}px`;
  search.focus();
}
