// Editing one's own message in place: the body becomes a text box; Enter saves (PATCH
// /api/v1/messages/<id>/), Shift+Enter breaks the line, Escape cancels. The room's socket
// then brings `message.edited` to every page; the saved MESSAGE is shown here at once.

import { editMessage } from "./api.js";
import { h } from "./render.js";

export function setupEditor({ timeline, composer, me }) {
  let open = null; // { node, form }

  const close = ({ focusComposer = true } = {}) => {
    if (!open) return;
    const { node, form } = open;
    open = null;
    form.remove();
    node.classList.remove("editing");
    if (focusComposer) composer.focus();
  };

  const start = (node) => {
    const id = Number(node?.dataset.id);
    const msg = timeline.message(id);
    if (!msg || msg.deleted || msg.author?.username !== me) return false;
    close({ focusComposer: false });
    const input = h("textarea", { class: "msg-edit-input", rows: "1", "aria-label": "Edit your message" });
    input.value = msg.body;
    const status = h("p", { class: "msg-edit-status", role: "alert" });
    const form = h("form", { class: "msg-edit" }, input,
      h("p", { class: "msg-edit-hint" }, h("kbd", {}, "Enter"), " to save · ", h("kbd", {}, "Esc"), " to cancel"),
      status);
    const save = async () => {
      const body = input.value.trim();
      if (!body || body === msg.body) {
        close();
        return;
      }
      input.disabled = true;
      try {
        const edited = await editMessage(id, body);
        close();
        timeline.edit(edited);
      } catch (error) {
        input.disabled = false;
        status.textContent = `Not saved: ${error.message}`;
        input.focus();
      }
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        save();
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        close();
      }
    });
    const resize = () => {
      input.style.height = "auto";
      input.style.height = `${input.scrollHeight}px`;
    };
    input.addEventListener("input", resize);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      save();
    });
    node.classList.add("editing");
    node.querySelector(".msg-main").append(form);
    open = { node, form };
    resize();
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
    node.scrollIntoView({ block: "nearest" });
    return true;
  };

  // Up arrow in an empty composer edits one's last message, as in Slack.
  composer.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowUp" || composer.value !== "" || event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) return;
    const last = timeline.lastOwn();
    if (last && start(last)) event.preventDefault();
  });

  // The message was rebuilt (an edit or a reaction from elsewhere): keep the box, with what was typed.
  const rerendered = (node) => {
    if (open?.node === node && node.classList.contains("deleted")) close({ focusComposer: node.contains(document.activeElement) });
    else if (open?.node === node && !node.contains(open.form)) node.querySelector(".msg-main")?.append(open.form);
    else if (open?.node !== node) node.classList.remove("editing");
  };

  return { start, close, rerendered };
}
