// The REST calls the page makes. Reads fail soft (callers treat a failure as "not
// available" and carry on); writes report what went wrong so the caller can say so.

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status !== 200) throw new Error(`GET ${url.pathname ?? url}: HTTP ${response.status}`);
  return response.json();
}

/** Django's CSRF token: the csrftoken cookie, else the one any form on the page carries. */
function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(value.join("="));
  }
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

async function postJSON(url, body, method = "POST") {
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "The server can't be reached.");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, errorText(data));
  return data;
}

// A 400's field errors say more than its summary ("Enter a valid slug").
function errorText(data) {
  const fields = data?.errors && typeof data.errors === "object" ? Object.values(data.errors).flat() : [];
  const first = fields.find((e) => typeof e === "string");
  return first ?? (typeof data?.detail === "string" ? data.detail : "");
}

/** A page of history: {results: [MESSAGE…] ascending seq, has_more_before, has_more_after}. */
export async function fetchHistory(slug, { before = null, after = null, q = null, limit = 50 } = {}) {
  const url = new URL(`/api/v1/rooms/${encodeURIComponent(slug)}/messages/`, location.origin);
  url.searchParams.set("limit", String(limit));
  if (before !== null) url.searchParams.set("before", String(before));
  if (after !== null) url.searchParams.set("after", String(after));
  if (q !== null) url.searchParams.set("q", q);
  const page = await getJSON(url);
  if (!Array.isArray(page?.results)) throw new Error("history: unexpected response");
  return page;
}

/** The rooms the user can see, each with `slug`, `name`, `private` and `unread`. */
export async function fetchRooms() {
  const data = await getJSON(new URL("/api/v1/rooms/", location.origin));
  const rooms = Array.isArray(data) ? data : data?.results; // plain list or a DRF page
  if (!Array.isArray(rooms)) throw new Error("rooms: unexpected response");
  return rooms;
}

/** The private two-person room of the caller and `username` (created on first use). */
export async function openDirectRoom(username) {
  const room = await postJSON(new URL("/api/v1/dms/", location.origin), { username });
  if (typeof room?.slug !== "string") throw new ApiError(500, "Unexpected response.");
  return room;
}

const api = (path) => new URL(`/api/v1/${path}`, location.origin);
const roomPath = (slug) => `rooms/${encodeURIComponent(slug)}/`;

/** Edit one's own message; returns the edited MESSAGE. */
export const editMessage = (id, body) => postJSON(api(`messages/${id}/`), { body }, "PATCH");

/** Create a room owned by the caller; returns the room object. */
export const createRoom = ({ slug, name, private: isPrivate }) => postJSON(api("rooms/"), { slug, name, private: isPrivate });

/** Owner or moderator: change the room's settings (`topic`, `name`, `locked`). */
export const updateRoom = (slug, fields) => postJSON(api(roomPath(slug)), fields, "PATCH");

/** Owner or moderator: add `username` to the room. */
export const addMember = (slug, username) => postJSON(api(`${roomPath(slug)}members/`), { username, role: "member" });

/** Owner or moderator: remove `username` from the room (their sockets get `kicked`). */
export const removeMember = (slug, username) =>
  postJSON(api(`${roomPath(slug)}members/${encodeURIComponent(username)}/`), {}, "DELETE");

/** Change the caller's preferences (`timezone`, `email_notifications`); returns GET /api/v1/me/'s object. */
export const updateMe = (fields) => postJSON(api("me/"), fields, "PATCH");
