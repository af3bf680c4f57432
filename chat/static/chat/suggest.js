// The keyboard of a suggestion list under the composer (the `@` list of mentions.js, the `/`
// list of commands.js): typing updates it; while it is open, Up/Down move, Enter or Tab pick,
// Escape closes. Captured on the form, so it runs before the composer's Enter-sends handler.

/** Wire `listbox` to `input`: update() on typing, and move(±1), pick(), close() on keys. */
export function bindSuggestionKeys({ form, input, listbox, update, move, pick, close }) {
  input.addEventListener("input", (event) => {
    if (event.isTrusted || !listbox.hidden) update();
  });
  input.addEventListener("blur", () => setTimeout(close, 100));
  form.addEventListener("keydown", (event) => {
    if (listbox.hidden || event.target !== input) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      move(event.key === "ArrowDown" ? 1 : -1);
    } else if (event.key === "Enter" || event.key === "Tab") {
      pick();
    } else if (event.key === "Escape") {
      close();
    } else {
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
  }, true);
}
