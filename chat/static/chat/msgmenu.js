// The "⋯" menu on a message: edit it (your own, in place: editor.js); copy its link (a
// permalink /rooms/<slug>/?m=<id>); report it; delete it (your own, or anyone's for the
// room's moderators); mute or ban its author (moderators). Wired by event delegation on the
// message list, so rendering a message only adds the button (render.js). Every action is
// a REST call; the room's sockets then show the result (message.deleted, kicked …).

import { h } from "./render.js";

const DURATIONS = [
  ["10 minutes", 10 * 60_000],
  ["1 hour", 60 * 60_000],
  ["1 day", 24 * 60 * 60_000],
  ["Until lifted", null],
];

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  return document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.slice("csrftoken=".length) ?? "";
}

async function call(method, url, body = undefined) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.ok) return response.status === 204 ? null : response.json();
  let detail = `HTTP ${response.status}`;
  try {
    detail = (await response.json()).detail ?? detail;
  } catch {
    // not JSON: keep the status
  }
  throw new Error(detail);
}

/**
 * `canModerate`: whether the user moderates the room, as the server computed it for the page
 * (the room's `can_moderate` in the REST API); the server still checks every action.
 */
export function setupMessageMenu({ root, slug, me, canModerate = false, onEdit = () => {} }) {
  if (typeof HTMLElement.prototype.showPopover !== "function") return;

  const menu = h("div", { class: "msg-menu", popover: "auto", role: "menu", "aria-label": "Message actions" });
  const dialog = h("dialog", { class: "msg-dialog", "aria-labelledby": "msg-dialog-title" });
  const toast = h("p", { class: "msg-toast", role: "status", hidden: true });
  document.body.append(menu, dialog, toast);
  let invoker = null;
  let toastTimer = null;

  const notify = (text) => {
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.hidden = true; }, 4000);
  };

  const item = (text, onSelect, { danger = false } = {}) => {
    const button = h("button", { type: "button", role: "menuitem", class: danger ? "danger" : null }, text);
    button.addEventListener("click", () => {
      menu.hidePopover();
      onSelect();
    });
    return button;
  };

  // A small form in a modal dialog: a title, an optional duration and reason, and a button.
  const ask = ({ title, action, withDuration = false, withReason = true, reasonLabel = "Reason (optional)", submit }) => {
    const status = h("p", { class: "msg-dialog-status", role: "alert" });
    const reason = withReason ? h("textarea", { name: "reason", id: "msg-dialog-reason", rows: "3", maxlength: "500" }) : null;
    const duration = withDuration
      ? h("select", { name: "duration", id: "msg-dialog-duration" },
        ...DURATIONS.map(([label], i) => h("option", { value: String(i) }, label)))
      : null;
    const form = h("form", { method: "dialog" },
      h("h2", { id: "msg-dialog-title" }, title),
      duration && h("label", { for: "msg-dialog-duration" }, "How long"),
      duration,
      reason && h("label", { for: "msg-dialog-reason" }, reasonLabel),
      reason,
      status,
      h("div", { class: "msg-dialog-buttons" },
        h("button", { type: "button", class: "btn btn-quiet", value: "cancel" }, "Cancel"),
        h("button", { type: "submit", class: "btn btn-primary" }, action)));
    form.querySelector("[value=cancel]").addEventListener("click", () => dialog.close());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const ms = duration ? DURATIONS[Number(duration.value)][1] : null;
      const until = ms === null ? null : new Date(Date.now() + ms).toISOString();
      status.textContent = "";
      try {
        await submit({ reason: reason?.value.trim() ?? "", until });
        dialog.close();
      } catch (error) {
        status.textContent = error.message;
      }
    });
    dialog.replaceChildren(form);
    dialog.showModal();
    (reason ?? form.querySelector("[type=submit]")).focus();
  };

  const open = (button) => {
    const node = button.closest(".msg");
    const id = Number(node?.dataset.id);
    const author = node?.dataset.author;
    if (!id || !author) return;
    const mine = author === me;
    const items = [];
    if (mine) items.push(item("Edit", () => onEdit(node)));
    items.push(item("Copy link", async () => {
      const link = new URL(`/rooms/${encodeURIComponent(slug)}/?m=${id}`, location.origin).href;
      try {
        await navigator.clipboard.writeText(link);
        notify("Link copied.");
      } catch {
        notify(`Link: ${link}`);
      }
    }));
    if (!mine) {
      items.push(item("Report…", () => ask({
        title: `Report ${author}'s message`,
        action: "Report",
        reasonLabel: "What is wrong with it? (optional)",
        submit: async ({ reason }) => {
          await call("POST", `/api/v1/messages/${id}/report/`, { reason });
          notify("Reported. A moderator will look at it.");
        },
      })));
    }
    if (mine || canModerate) {
      items.push(item("Delete", () => ask({
        title: mine ? "Delete your message?" : `Delete ${author}'s message for everyone?`,
        action: "Delete",
        withReason: false,
        submit: () => call("DELETE", `/api/v1/messages/${id}/`),
      }), { danger: true }));
    }
    if (!mine && canModerate) {
      const room = `/api/v1/rooms/${encodeURIComponent(slug)}/`;
      for (const [action, title, path, verb] of [
        ["Mute", `Mute ${author}`, "mutes/", "muted"],
        ["Ban", `Ban ${author} from this room`, "bans/", "banned from this room"],
      ]) {
        items.push(item(`${title}…`, () => ask({
          title,
          action,
          withDuration: true,
          submit: async ({ reason, until }) => {
            await call("POST", room + path, { username: author, reason, until });
            notify(`${author} is ${verb}.`);
          },
        }), { danger: true }));
      }
    }
    invoker = button;
    button.setAttribute("aria-expanded", "true");
    menu.replaceChildren(...items);
    menu.showPopover();
    const at = button.getBoundingClientRect();
    const { width, height } = menu.getBoundingClientRect();
    const top = at.bottom + height + 8 > innerHeight ? at.top - height - 4 : at.bottom + 4;
    menu.style.top = `${Math.max(8, top)}px`;
    menu.style.left = `${Math.max(8, Math.min(at.right - width, innerWidth - width - 8))}px`;
    items[0].focus();
  };

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button.msg-menu-button");
    if (button && root.contains(button)) open(button);
  });
  menu.addEventListener("keydown", (event) => {
    const items = [...menu.querySelectorAll("[role=menuitem]")];
    const at = items.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      items[(at + (event.key === "ArrowDown" ? 1 : items.length - 1)) % items.length]?.focus();
    }
  });
  menu.addEventListener("toggle", (event) => {
    if (event.newState !== "closed" || !invoker) return;
    invoker.setAttribute("aria-expanded", "false");
    const lost = menu.contains(document.activeElement) || document.activeElement === document.body;
    if (invoker.isConnected && !dialog.open && lost) invoker.focus({ preventScroll: true });
  });
  return notify;
}
