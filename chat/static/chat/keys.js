// Keyboard use of the message list: the whole list is ONE tab stop (a roving tabindex).
// The active message has tabindex 0 and its own buttons and links are reachable with Tab;
// every other message and everything inside it has tabindex -1. Arrow keys, Home and End
// move between messages; Enter opens the active message's "⋯" menu; Escape goes back to
// the composer. Messages added or re-rendered later are fixed up by a MutationObserver.

const INNER = "button, a[href], input, textarea, select";

export function setupRovingFocus({ list, composer, onEnter = () => false }) {
  let active = null;

  const messages = () => [...list.querySelectorAll(":scope > .msg")];

  const mute = (node, off) => {
    for (const el of node.querySelectorAll(INNER)) {
      if (el.closest(".msg-edit")) continue; // the in-place editor stays reachable
      el.tabIndex = off ? -1 : 0;
    }
  };

  const activate = (node, { focus = false } = {}) => {
    if (active && active !== node && active.isConnected) {
      active.tabIndex = -1;
      mute(active, true);
    }
    active = node;
    if (!node) return;
    node.tabIndex = 0;
    mute(node, false);
    if (focus) {
      node.focus({ preventScroll: true });
      node.scrollIntoView({ block: "nearest" });
    }
  };

  const settle = () => {
    const all = messages();
    for (const node of all) {
      if (node === active) continue;
      node.tabIndex = -1;
      mute(node, true);
    }
    // Reading elsewhere (the composer, another panel): the tab stop is the newest message.
    if (!active?.isConnected || !list.contains(document.activeElement)) activate(all.at(-1) ?? null);
    else mute(active, false);
  };

  new MutationObserver(settle).observe(list, { childList: true, subtree: true });

  list.addEventListener("focusin", (event) => {
    const node = event.target.closest(".msg");
    if (node && node.parentElement === list && node !== active) activate(node);
  });

  list.addEventListener("keydown", (event) => {
    if (event.target.closest(".msg-edit") || event.altKey || event.ctrlKey || event.metaKey) return;
    const node = event.target.closest(".msg");
    if (!node) return;
    const all = messages();
    const at = all.indexOf(node);
    let next = null;
    if (event.key === "ArrowUp") next = all[Math.max(0, at - 1)];
    else if (event.key === "ArrowDown") next = all[Math.min(all.length - 1, at + 1)];
    else if (event.key === "Home") next = all[0];
    else if (event.key === "End") next = all.at(-1);
    else if (event.key === "Escape") {
      event.preventDefault();
      composer.focus();
      return;
    } else if (event.key === "Enter" && event.target === node) {
      if (onEnter(node)) event.preventDefault();
      return;
    }
    if (!next) return;
    event.preventDefault();
    activate(next, { focus: true });
  });

  settle();
  return { activate: (node) => activate(node, { focus: true }) };
}
