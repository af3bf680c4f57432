// Threads: a reply's quote of its root (a click jumps to it), "N replies" under a root, and
// the thread panel beside the room (its own view on a narrow screen) with the root, its
// replies live and a composer. Also keeps every shown message's current state from the
// room's frames: reply counts (from replies and their deletions) and reactions.

import { h, messageParts, renderMessage } from "./render.js";

const PAGE = 200;

function replies(n) {
  return `${n} ${n === 1 ? "reply" : "replies"}`;
}

function quote(msg) {
  const root = msg.reply_to;
  if (!root) return null;
  return h("button", { type: "button", class: "msg-quote", "data-jump": root.id,
    title: "Show the message this replies to" },
  h("span", { class: "msg-quote-author" }, root.author?.username ?? ""), " ",
  h("span", { class: "msg-quote-text" }, root.excerpt || "message removed"));
}

function tools(msg) {
  const bar = h("div", { class: "msg-tools" });
  if (!msg.deleted) {
    bar.append(h("button", { type: "button", class: "msg-tool reaction-add", "data-message-id": msg.id,
      "aria-haspopup": "dialog", title: "Add a reaction", "aria-label": "Add a reaction" }, "☺"));
    bar.append(h("button", { type: "button", class: "msg-tool", "data-thread": msg.reply_to?.id ?? msg.id,
      title: "Reply in thread", "aria-label": "Reply in thread" }, "↩"));
  }
  return bar;
}

function replyCount(msg) {
  if (msg.reply_to || !msg.reply_count) return null;
  return h("button", { type: "button", class: "msg-replies link-button", "data-thread": msg.id },
    replies(msg.reply_count));
}

async function fetchThread(id, after) {
  const url = new URL(`/api/v1/messages/${id}/thread/`, location.origin);
  url.searchParams.set("limit", String(PAGE));
  if (after !== null) url.searchParams.set("after", String(after));
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status !== 200) throw new Error(`thread ${id}: HTTP ${response.status}`);
  return response.json();
}

export function setupThreads({ chat, slug, me, socket, timeline, onRender = () => {} }) {
  messageParts.before.push(quote);
  messageParts.after.push(replyCount, tools);

  const title = h("h2", { class: "thread-title", id: "thread-title" }, "Thread");
  const close = h("button", { type: "button", class: "icon-button thread-close", "aria-label": "Close the thread" },
    h("span", { "aria-hidden": "true" }, "×"));
  const rootBox = h("div", { class: "thread-root" });
  const count = h("p", { class: "thread-count" });
  const list = h("div", { class: "thread-replies", role: "log", "aria-live": "polite", "aria-label": "Replies" });
  const input = h("textarea", { class: "thread-input", rows: "1", placeholder: "Reply…", "aria-label": "Reply in thread" });
  const status = h("p", { class: "thread-status", role: "alert" });
  const form = h("form", { class: "thread-composer", autocomplete: "off" }, h("div", { class: "composer-box" }, input,
    h("button", { type: "submit", class: "btn btn-primary composer-send" }, "Reply")), status);
  const panel = h("aside", { class: "thread", id: "thread", "aria-labelledby": "thread-title", tabindex: "-1", hidden: "" },
    h("div", { class: "thread-head" }, title, close),
    h("div", { class: "thread-scroll" }, rootBox, count, list), form);
  chat.querySelector(".chat-body").append(panel);

  let rootId = null;
  const shown = new Map(); // id → MESSAGE shown in the panel
  const nodes = new Map(); // id → element in the panel

  const current = (id) => timeline.live.get(id) ?? timeline.shown.get(id) ?? shown.get(id);

  function showInPanel(msg) {
    if (rootId === null) return;
    if (msg.id === rootId) {
      shown.set(msg.id, msg);
      onRender(renderMessage(rootBox.firstElementChild ?? rootBox.appendChild(h("div")), msg, me));
      count.textContent = msg.reply_count ? replies(msg.reply_count) : "No replies yet";
      return;
    }
    if (msg.reply_to?.id !== rootId) return;
    shown.set(msg.id, msg);
    let node = nodes.get(msg.id);
    if (!node) {
      node = h("div");
      nodes.set(msg.id, node);
      const after = [...list.children].findLast((n) => Number(n.dataset.seq) < msg.seq);
      if (after) after.after(node);
      else list.prepend(node);
    }
    onRender(renderMessage(node, msg, me));
  }

  /** Change the message `id` wherever it is shown (the room and the panel). */
  function update(id, change) {
    const msg = current(id);
    if (!msg) return;
    const next = { ...msg, ...change(msg) };
    if (timeline.live.has(id) || timeline.shown.has(id)) timeline.edit(next);
    if (shown.has(id)) showInPanel(next);
  }

  function bump(rootOf, delta, at = null) {
    update(rootOf, (root) => ({
      reply_count: Math.max(0, (root.reply_count ?? 0) + delta),
      last_reply_at: at ?? root.last_reply_at,
    }));
  }

  async function open(id) {
    rootId = id;
    shown.clear();
    nodes.clear();
    rootBox.replaceChildren();
    list.replaceChildren();
    count.textContent = "Loading…";
    status.textContent = "";
    panel.hidden = false;
    chat.classList.add("thread-open");
    input.focus();
    try {
      let after = null;
      for (;;) {
        const page = await fetchThread(id, after);
        if (rootId !== id) return;
        showInPanel(current(page.root.id) ?? page.root);
        for (const reply of page.results) showInPanel(shown.get(reply.id) ?? reply);
        if (!page.has_more_after || page.results.length === 0) break;
        after = page.results.at(-1).seq;
      }
    } catch {
      if (rootId === id) count.textContent = "This thread can't be loaded right now.";
    }
  }

  function closePanel() {
    const opener = rootId;
    rootId = null;
    panel.hidden = true;
    chat.classList.remove("thread-open");
    document.querySelector(`#messages [data-id="${opener}"] [data-thread]`)?.focus();
  }

  function jump(id) {
    const node = document.querySelector(`#messages [data-id="${id}"]`);
    if (!node) {
      open(id); // not loaded in the room: the thread shows it
      return;
    }
    node.scrollIntoView({ block: "center", behavior: matchMedia("(prefers-reduced-motion: reduce)").matches ? "instant" : "smooth" });
    node.classList.remove("flash");
    void node.offsetWidth; // restart the highlight
    node.classList.add("flash");
  }

  close.addEventListener("click", closePanel);
  panel.addEventListener("keydown", (event) => event.key === "Escape" && closePanel());
  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-thread]");
    if (opener) open(Number(opener.dataset.thread));
    const jumper = event.target.closest("[data-jump]");
    if (jumper) jump(Number(jumper.dataset.jump));
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = input.value.trim();
    if (!body || rootId === null) return;
    const clientId = crypto.randomUUID();
    const sent = socket.isJoined(slug) && socket.send({
      type: "send", room: slug, body, client_id: clientId, reply_to: rootId, ref: `thread:${clientId}`,
    });
    if (!sent) {
      status.textContent = "Not connected: the reply was not sent.";
      return;
    }
    status.textContent = "";
    input.value = "";
  });

  /** Follow a room frame; true when it was a reply to this module's own frame (nothing else to do). */
  function onFrame(frame) {
    switch (frame.type) {
      case "message": {
        const msg = frame.message;
        const known = current(msg.id);
        if (msg.reply_to && !known) bump(msg.reply_to.id, 1, msg.created_at);
        showInPanel(msg);
        return false;
      }
      case "message.edited": {
        const msg = frame.message;
        const known = current(msg.id);
        if (msg.reply_to && known?.deleted && !msg.deleted) bump(msg.reply_to.id, 1);
        showInPanel(msg);
        return false;
      }
      case "message.deleted": {
        const known = current(frame.id);
        if (frame.reply_to && known && !known.deleted) bump(frame.reply_to, -1);
        if (shown.has(frame.id)) showInPanel({ ...shown.get(frame.id), deleted: true, body: "", html: "", by: frame.by });
        return false;
      }
      case "message.reacted":
        update(frame.id, () => ({ reactions: frame.reactions }));
        return true;
      case "ack":
        return typeof frame.ref === "string" && frame.ref.startsWith("thread:");
      case "error":
        if (typeof frame.ref === "string" && frame.ref.startsWith("thread:")) {
          status.textContent = `Not sent: ${frame.detail}`;
          return true;
        }
        return typeof frame.ref === "string" && frame.ref.startsWith("react:");
      default:
        return false;
    }
  }

  return { onFrame, open };
}
