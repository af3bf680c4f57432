// Rooms in the page: create one (public or private), browse and join public rooms, and —
// for a room's owner and moderators — set the topic and add people to a private room.
// Every action is a call to the REST API (docs/api.md); a form in a modal dialog asks first.

import { addMember, createRoom, fetchRooms, removeMember, updateRoom } from "./api.js";
import { roomUrl } from "./dm.js";
import { h } from "./render.js";

let dialog = null;

function field(label, control, hint = null) {
  const id = `room-dialog-${control.name}`;
  control.id = id;
  return [h("label", { for: id }, label), control, hint && h("p", { class: "field-hint" }, hint)];
}

/** A modal form: `fields` (label, control pairs), a submit button; `submit` may throw to show an error. */
function ask({ title, action, fields = [], submit, body = [] }) {
  dialog ??= document.body.appendChild(h("dialog", { class: "msg-dialog room-dialog", "aria-labelledby": "room-dialog-title" }));
  const status = h("p", { class: "msg-dialog-status", role: "alert" });
  const form = h("form", { method: "dialog" },
    h("h2", { id: "room-dialog-title" }, title),
    ...fields.flat(),
    ...body,
    status,
    h("div", { class: "msg-dialog-buttons" },
      h("button", { type: "button", class: "btn btn-quiet", value: "cancel" }, action ? "Cancel" : "Close"),
      action ? h("button", { type: "submit", class: "btn btn-primary" }, action) : null));
  form.querySelector("[value=cancel]").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "";
    try {
      await submit(form);
      dialog.close();
    } catch (error) {
      status.textContent = error.message || "That didn't work. Try again.";
    }
  });
  dialog.replaceChildren(form);
  dialog.showModal();
  (form.querySelector("input, textarea, select, [type=submit]") ?? form.querySelector("button"))?.focus();
  return form;
}

function slugFrom(name) {
  return name.toLowerCase().normalize("NFKD").replace(/[^a-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 64);
}

export function openCreateRoom() {
  const name = h("input", { name: "name", maxlength: "100", required: "" });
  const slug = h("input", { name: "slug", maxlength: "64", required: "", pattern: "[a-z0-9][a-z0-9_\\-]*" });
  const priv = h("input", { name: "private", type: "checkbox" });
  name.addEventListener("input", () => {
    if (!slug.dataset.edited) slug.value = slugFrom(name.value);
  });
  slug.addEventListener("input", () => { slug.dataset.edited = "1"; });
  ask({
    title: "Create a room",
    action: "Create",
    fields: [
      field("Name", name),
      field("Address", slug, "Lowercase letters, digits, - and _: /rooms/<address>/"),
      [h("label", { class: "check" }, priv, " Private: only people added by its owner or moderators can see it")],
    ],
    submit: async () => {
      const room = await createRoom({ slug: slug.value.trim(), name: name.value.trim(), private: priv.checked });
      location.assign(roomUrl(room.slug));
    },
  });
}

export async function openBrowseRooms() {
  const list = h("ul", { class: "browse-list" }, h("li", { class: "muted" }, "Loading…"));
  ask({ title: "Browse rooms", action: null, body: [list], submit: async () => {} });
  let rooms;
  try {
    rooms = await fetchRooms();
  } catch {
    list.replaceChildren(h("li", {}, "The rooms can't be loaded right now."));
    return;
  }
  const open = rooms.filter((r) => !r.private);
  list.replaceChildren(...open.map((room) => h("li", { class: "browse-room" },
    h("span", { class: "browse-name" }, `#${room.name}`, room.topic ? h("span", { class: "muted" }, ` · ${room.topic}`) : null),
    // Opening a public room joins it (the socket's `join` makes the user a member).
    h("a", { class: "btn btn-small " + (room.role ? "btn-quiet" : "btn-primary"), href: roomUrl(room.slug), "aria-label": `${room.role ? "Open" : "Join"} ${room.name}` },
      room.role ? "Open" : "Join"))));
  if (!open.length) list.append(h("li", {}, "No public rooms yet."));
}

export function setupRoomTools({ slug, onTopic, notify }) {
  document.getElementById("room-create")?.addEventListener("click", openCreateRoom);
  document.getElementById("room-browse")?.addEventListener("click", openBrowseRooms);
  document.getElementById("topic-edit")?.addEventListener("click", () => {
    const topic = h("input", { name: "topic", maxlength: "250" });
    topic.value = document.getElementById("room-topic")?.textContent.trim() ?? "";
    ask({
      title: "Set the topic",
      action: "Save",
      fields: [field("Topic", topic, "Shown under the room's name. Leave it empty to clear it.")],
      submit: async () => onTopic((await updateRoom(slug, { topic: topic.value.trim() })).topic ?? ""),
    });
  });
  document.getElementById("member-add")?.addEventListener("click", () => {
    const username = h("input", { name: "username", maxlength: "150", required: "", autocomplete: "off" });
    ask({
      title: "Add people to this private room",
      action: "Add",
      fields: [field("Username", username)],
      submit: async () => {
        await addMember(slug, username.value.trim());
        notify(`${username.value.trim()} was added to the room.`);
      },
    });
  });
  document.getElementById("member-remove")?.addEventListener("click", () => {
    const username = h("input", { name: "username", maxlength: "150", required: "", autocomplete: "off" });
    ask({
      title: "Remove people from this private room",
      action: "Remove",
      fields: [field("Username", username, "They stop seeing the room at once; add them again to undo.")],
      submit: async () => {
        await removeMember(slug, username.value.trim());
        notify(`${username.value.trim()} was removed from the room.`);
      },
    });
  });
}
