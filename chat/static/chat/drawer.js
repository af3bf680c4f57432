// Phones: the room list is a drawer that slides over the conversation, opened from the
// header's button. Escape, a click outside or choosing a room closes it. Wider screens show
// the list as a column and never use the drawer (CSS decides; the button is hidden there).

const NARROW = matchMedia("(max-width: 700px)");

export function setupDrawer({ button, drawer }) {
  if (!button || !drawer) return;
  const setOpen = (open, { focus = false } = {}) => {
    drawer.classList.toggle("open", open);
    button.setAttribute("aria-expanded", String(open));
    if (open) (drawer.querySelector("[aria-current]") ?? drawer.querySelector("a, button"))?.focus();
    else if (focus) button.focus();
  };
  button.addEventListener("click", () => setOpen(!drawer.classList.contains("open")));
  drawer.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && drawer.classList.contains("open")) setOpen(false, { focus: true });
  });
  document.addEventListener("pointerdown", (event) => {
    if (drawer.classList.contains("open") && !drawer.contains(event.target) && !button.contains(event.target)) setOpen(false);
  });
  NARROW.addEventListener("change", () => setOpen(false));
}
