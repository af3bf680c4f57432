// The REST calls the page makes. Both endpoints may be missing while the API is being
// built; callers treat a failure as "not available" and carry on.

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status !== 200) throw new Error(`GET ${url.pathname ?? url}: HTTP ${response.status}`);
  return response.json();
}

/** A page of history: {results: [MESSAGE…] ascending seq, has_more_before, has_more_after}. */
export async function fetchHistory(slug, { before = null, limit = 50 } = {}) {
  const url = new URL(`/api/v1/rooms/${encodeURIComponent(slug)}/messages/`, location.origin);
  url.searchParams.set("limit", String(limit));
  if (before !== null) url.searchParams.set("before", String(before));
  const page = await getJSON(url);
  if (!Array.isArray(page?.results)) throw new Error("history: unexpected response");
  return page;
}

/** The rooms the user can see, each with `slug` and `unread`. */
export async function fetchRooms() {
  const data = await getJSON(new URL("/api/v1/rooms/", location.origin));
  const rooms = Array.isArray(data) ? data : data?.results; // plain list or a DRF page
  if (!Array.isArray(rooms)) throw new Error("rooms: unexpected response");
  return rooms;
}
