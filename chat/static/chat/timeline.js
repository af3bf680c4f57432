// The message list: one element per message id, kept in seq order, with pending
// messages (not yet acknowledged) always last. Owns scrolling: follows new messages
// while the reader is at the bottom; scrolled up, a "jump to latest" button shows, with
// the count of messages that arrived meanwhile. Marks the first unread message with the
// "new messages" line.

import { h, regroup, renderMessage } from "./render.js";

const NEAR_BOTTOM_PX = 48;
const NEAR_TOP_PX = 300;
const reducedMotion = matchMedia("(prefers-reduced-motion: reduce)");

export class Timeline {
  /** `onRender(node)`: after a message element was (re)built, for what decorates it (the editor). */
  constructor({ scroller, list, pill, me, onNearTop = () => {}, onPinned = () => {}, onRender = () => {} }) {
    Object.assign(this, { scroller, list, pill, me, onNearTop, onPinned, onRender });
    this.nodes = new Map(); // id → element
    this.shown = new Map(); // id → MESSAGE as rendered
    // The socket's copy of a message is at least as new as any REST page fetched around
    // the same time, so it wins when a history page arrives late.
    this.live = new Map(); // id → MESSAGE
    this.removedBy = new Map(); // id → "author" | "moderator", for deletions of messages not loaded yet
    this.pinned = true;
    this.newCount = 0;
    this.unreadNode = null;

    scroller.addEventListener("scroll", () => this.#onScroll(), { passive: true });
    pill.addEventListener("click", () => this.scrollToBottom({ smooth: true }));
    // The composer growing or the window resizing must not unpin a reader at the bottom.
    new ResizeObserver(() => this.pinned && this.scrollToBottom()).observe(scroller);
  }

  get atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight <= NEAR_BOTTOM_PX;
  }

  get oldestSeq() {
    for (const node of this.list.children) if (node.dataset.seq) return Number(node.dataset.seq);
    return null;
  }

  scrollToBottom({ smooth = false } = {}) {
    const s = this.scroller;
    smooth &&= !reducedMotion.matches;
    // A long smooth scroll takes seconds; jump most of the way and animate the rest.
    if (smooth && s.scrollHeight - s.scrollTop > 3 * s.clientHeight) s.scrollTop = s.scrollHeight - 2 * s.clientHeight;
    s.scrollTo({ top: s.scrollHeight, behavior: smooth ? "smooth" : "instant" });
    this.#setNew(0);
    this.pill.hidden = true;
    this.#setPinned(true);
  }

  /** The MESSAGE as shown for `id`, or undefined. */
  message(id) {
    return this.shown.get(id);
  }

  /** The element of message `id`, if loaded. */
  node(id) {
    return this.nodes.get(id) ?? null;
  }

  /** The reader's newest message that may be edited (confirmed, not deleted). */
  lastOwn() {
    const mine = this.list.querySelectorAll(":scope > .msg.mine[data-id]:not(.deleted):not(.pending)");
    return mine[mine.length - 1] ?? null;
  }

  /** Scroll `node` into the middle of the view (or its top edge near the top: `start`). */
  scrollToNode(node, { start = false } = {}) {
    const s = this.scroller;
    const top = s.scrollTop + node.getBoundingClientRect().top - s.getBoundingClientRect().top;
    s.scrollTop = start ? top - 16 : top - (s.clientHeight - node.offsetHeight) / 2;
    const pinned = this.atBottom;
    this.pill.hidden = pinned;
    this.#setPinned(pinned);
  }

  /** Draw the "new messages" line above the first message after `readSeq` by someone else. */
  markUnread(readSeq) {
    this.unreadNode?.classList.remove("first-unread");
    this.unreadNode?.querySelector(".unread-line")?.remove();
    this.unreadNode = null;
    for (const node of this.list.children) {
      if (!node.dataset.seq || Number(node.dataset.seq) <= readSeq || node.dataset.author === this.me) continue;
      this.unreadNode = node;
      node.classList.add("first-unread");
      this.#decorate(node);
      break;
    }
    return this.unreadNode;
  }

  /** A `message` event. `adopt` is this tab's pending element for it, if any. */
  putLive(msg, adopt = null) {
    this.live.set(msg.id, msg);
    this.#atEnd(() => {
      const existing = this.nodes.get(msg.id);
      if (existing) {
        adopt?.remove();
        this.#render(existing, msg);
        return;
      }
      const node = adopt ?? document.createElement("div");
      node.classList.remove("pending", "failed");
      this.nodes.set(msg.id, node);
      this.#render(node, msg);
      this.#place(node);
    }, { notify: msg.author.username !== this.me });
  }

  /** A `message.edited` event; edits of messages not loaded are remembered for later pages. */
  edit(msg) {
    this.live.set(msg.id, msg);
    const node = this.nodes.get(msg.id);
    if (node) this.#atEnd(() => this.#render(node, msg));
  }

  /** A `message.deleted` event. */
  remove(id, by) {
    const known = this.live.get(id) ?? this.shown.get(id);
    if (!known) {
      this.removedBy.set(id, by);
      return;
    }
    const gone = { ...known, body: "", deleted: true, by };
    this.live.set(id, gone);
    const node = this.nodes.get(id);
    if (node) this.#atEnd(() => this.#render(node, gone));
  }

  /** Add a page of REST history (ascending seq). Older pages keep the reader's place. */
  addHistory(messages, { older = false } = {}) {
    const apply = () => {
      for (const raw of messages) {
        const msg = this.#freshest(raw);
        let node = this.nodes.get(msg.id);
        if (node) {
          this.#render(node, msg);
          continue;
        }
        node = document.createElement("div");
        this.nodes.set(msg.id, node);
        this.#render(node, msg);
        this.#place(node);
      }
    };
    this.list.setAttribute("aria-busy", "true");
    if (older) this.keepPlace(apply);
    else this.#atEnd(apply);
    this.list.removeAttribute("aria-busy");
  }

  /** Forget every confirmed message (a resync); pending ones stay. */
  clear() {
    for (const node of this.nodes.values()) node.remove();
    for (const map of [this.nodes, this.shown, this.live, this.removedBy]) map.clear();
    regroup(this.list.firstElementChild);
  }

  addPending(clientId, body) {
    const node = document.createElement("div");
    renderMessage(node, {
      id: null, seq: null, author: { username: this.me }, body, client_id: clientId,
      created_at: new Date().toISOString(), edited_at: null, deleted: false,
    }, this.me);
    node.classList.add("pending");
    node.dataset.clientId = clientId;
    this.list.append(node);
    regroup(node);
    this.scrollToBottom();
    return node;
  }

  /** The `ack` arrived before the broadcast: the pending element becomes the message. */
  confirm(node, { id, seq }) {
    this.#atEnd(() => {
      const next = node.nextElementSibling;
      if (this.nodes.has(id)) {
        node.remove();
      } else {
        node.classList.remove("pending", "failed");
        node.querySelector(".msg-status")?.remove();
        node.dataset.id = String(id);
        node.dataset.seq = String(seq);
        this.nodes.set(id, node);
        this.#place(node);
      }
      regroup(next);
    });
  }

  discard(node) {
    const next = node.nextElementSibling;
    node.remove();
    regroup(next);
  }

  #freshest(msg) {
    const live = this.live.get(msg.id);
    if (live) return live;
    const by = this.removedBy.get(msg.id);
    return by ? { ...msg, body: "", deleted: true, by } : msg;
  }

  #render(node, msg) {
    this.shown.set(msg.id, msg);
    renderMessage(node, msg, this.me);
    regroup(node);
    this.#decorate(node);
    this.onRender(node);
  }

  #decorate(node) {
    if (node !== this.unreadNode || node.querySelector(".unread-line")) return;
    const line = h("div", { class: "unread-line", role: "separator", "aria-label": "New messages" }, h("span", {}, "New messages"));
    const divider = node.firstElementChild?.classList.contains("day-divider") ? node.firstElementChild : null;
    if (divider) divider.after(line);
    else node.prepend(line);
  }

  #setNew(count) {
    this.newCount = count;
    this.pill.querySelector(".new-pill-text").textContent = count > 0
      ? `${count} new message${count === 1 ? "" : "s"}` : "Jump to latest";
  }

  // Insert (or move) `node` after the last confirmed message with a lower seq.
  #place(node) {
    const oldNext = node.isConnected ? node.nextElementSibling : null;
    const seq = Number(node.dataset.seq);
    let after = this.list.lastElementChild;
    while (after && (after === node || after.classList.contains("pending") || Number(after.dataset.seq) > seq)) {
      after = after.previousElementSibling;
    }
    if (after) after.after(node);
    else this.list.prepend(node);
    regroup(node);
    regroup(node.nextElementSibling);
    if (oldNext && oldNext !== node.nextElementSibling) regroup(oldNext);
  }

  #atEnd(change, { notify = false } = {}) {
    const follow = this.atBottom;
    change();
    if (follow) this.scrollToBottom();
    else if (notify) {
      this.#setNew(this.newCount + 1);
      this.pill.hidden = false;
    }
  }

  /** Run `change` (to what is above the view) without moving what the reader sees. */
  keepPlace(change) {
    const s = this.scroller;
    const fromBottom = s.scrollHeight - s.scrollTop;
    change();
    s.scrollTop = s.scrollHeight - fromBottom;
  }

  #setPinned(pinned) {
    if (pinned === this.pinned) return;
    this.pinned = pinned;
    this.onPinned(pinned);
  }

  #onScroll() {
    const pinned = this.atBottom;
    this.#setPinned(pinned);
    // Scrolled up by hand: a way back down, whether or not anything new arrived.
    this.pill.hidden = pinned;
    if (pinned) this.#setNew(0);
    if (this.scroller.scrollTop < NEAR_TOP_PX) this.onNearTop();
  }
}
