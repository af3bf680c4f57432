// One WebSocket to /ws/chat/, kept alive across drops. It rejoins rooms with `since`
// so the server replays what was missed, and drops any room event already seen, so
// the page never shows a change twice.

const SUBPROTOCOL = "chat.v1";
const PING_EVERY_MS = 25_000;
const PONG_WITHIN_MS = 10_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_CAP_MS = 10_000;
const FLOODED_WAIT_MS = 15_000; // after close 4429 the server wants a pause, not a quick retry
// After 1013 "try again later" the server is full (CHAT_MAX_CONNECTIONS): back off from a
// higher floor to a higher cap, so a reconnect storm thins out instead of coming back at once.
const TRY_AGAIN_FIRST_MS = 2_000;
const TRY_AGAIN_CAP_MS = 30_000;
const ROOM_EVENTS = new Set(["message", "message.edited", "message.deleted"]);
const FINAL_JOIN_ERRORS = new Set(["not_found", "forbidden", "invalid"]);
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_BANNED = 4403;
const CLOSE_FLOODED = 4429;
const CLOSE_TRY_AGAIN_LATER = 1013;

export function defaultUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/chat/`;
}

export class ChatSocket {
  /**
   * onFrame(frame): every server frame that survives the seq check.
   * onStatus(status, detail): "connecting" | "reconnecting" (an attempt is under way) |
   * "offline" (waiting out the backoff; detail.retryAt is when the next attempt starts, in
   * Date.now() milliseconds) | "live" (every room asked for is joined, those `expect`ed
   * included) | "logged_out" | "banned".
   */
  constructor({ url = defaultUrl(), onFrame = () => {}, onStatus = () => {} } = {}) {
    Object.assign(this, { url, onFrame, onStatus });
    this.rooms = new Map(); // slug → { lastSeq: number | null, joined: boolean, sentSince: number | null }
    this.awaited = new Set(); // rooms the page will join once it knows their `since` (expect())
    this.status = null;
    this.ws = null;
    this.attempt = 0;
    this.everOpened = false;
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;

    // A laptop waking up or a network coming back should not wait out the backoff.
    addEventListener("online", () => this.#reconnectNow());
    document.addEventListener("visibilitychange", () => !document.hidden && this.#reconnectNow());
  }

  connect() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.#setStatus(this.everOpened ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url, [SUBPROTOCOL]);
    this.ws = ws;
    ws.onopen = () => this.#opened();
    ws.onmessage = (event) => this.#received(event);
    ws.onclose = (event) => this.#closed(event.code);
  }

  /** `slug` will be joined soon (its history is still loading): the socket is not "live" until then. */
  expect(slug) {
    this.awaited.add(slug);
  }

  /** Subscribe to `slug`; `since` is the last seq already shown (omit it when nothing is). */
  join(slug, since = null) {
    this.awaited.delete(slug);
    this.rooms.set(slug, { lastSeq: since, joined: false, sentSince: null });
    if (this.ws?.readyState === WebSocket.OPEN) this.#sendJoin(slug);
    else this.connect();
  }

  isJoined(slug) {
    return Boolean(this.rooms.get(slug)?.joined);
  }

  lastSeq(slug) {
    return this.rooms.get(slug)?.lastSeq ?? null;
  }

  /** Send a frame now; false when the socket isn't open (the caller keeps it for later). */
  send(frame) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  #opened() {
    this.everOpened = true;
    for (const slug of this.rooms.keys()) this.#sendJoin(slug);
    this.pingTimer = setInterval(() => this.#ping(), PING_EVERY_MS);
  }

  #sendJoin(slug) {
    const room = this.rooms.get(slug);
    const frame = { type: "join", room: slug, ref: `join:${slug}` };
    if (room.lastSeq !== null) frame.since = room.lastSeq;
    room.sentSince = room.lastSeq;
    this.send(frame);
  }

  #ping() {
    if (!this.send({ type: "ping" })) return;
    clearTimeout(this.pongTimer);
    // No answer at all means a half-open connection that may never report a close.
    this.pongTimer = setTimeout(() => this.#drop(), PONG_WITHIN_MS);
  }

  #received(event) {
    clearTimeout(this.pongTimer);
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== "string") return;

    if (ROOM_EVENTS.has(frame.type)) {
      const room = this.rooms.get(frame.room);
      if (!room?.joined || typeof frame.seq !== "number") return;
      if (room.lastSeq !== null && frame.seq <= room.lastSeq) return; // already shown
      if (room.lastSeq !== null && frame.seq > room.lastSeq + 1) {
        console.warn(`chat: ${frame.room} jumped from seq ${room.lastSeq} to ${frame.seq}`);
      }
      room.lastSeq = frame.seq;
    } else if (frame.type === "joined") {
      const room = this.rooms.get(frame.room);
      if (!room) return;
      room.joined = true;
      // With `since`, the replay that follows brings lastSeq up to joined.seq; without it
      // (or on resync) nothing is replayed and the room's current seq is the baseline.
      if (room.sentSince === null || frame.resync) room.lastSeq = frame.seq;
      this.attempt = 0;
      this.#liveIfJoined();
    } else if (frame.type === "error" && frame.ref?.startsWith("join:")) {
      const slug = frame.ref.slice(5);
      if (FINAL_JOIN_ERRORS.has(frame.code)) {
        this.rooms.delete(slug); // never asked for again, so it does not hold "live" back
        this.#liveIfJoined();
      } else {
        this.#drop(); // unavailable / server_error: try again after a backoff
      }
    } else if (frame.type === "kicked") {
      this.rooms.delete(frame.room);
      this.#liveIfJoined();
    }
    this.onFrame(frame);
  }

  #closed(code) {
    this.#forget();
    if (code === CLOSE_UNAUTHENTICATED || code === CLOSE_BANNED) {
      this.stopped = true;
      this.#setStatus(code === CLOSE_BANNED ? "banned" : "logged_out");
      return;
    }
    const delay =
      code === CLOSE_FLOODED
        ? FLOODED_WAIT_MS * (1 + Math.random() / 2)
        : code === CLOSE_TRY_AGAIN_LATER
          ? this.#backoff(TRY_AGAIN_FIRST_MS, TRY_AGAIN_CAP_MS)
          : this.#backoff();
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.#setStatus("offline", { retryAt: Date.now() + delay });
  }

  #setStatus(status, detail = undefined) {
    this.status = status;
    this.onStatus(status, detail);
  }

  #liveIfJoined() {
    if (this.status === "live" || this.ws?.readyState !== WebSocket.OPEN || this.awaited.size) return;
    if ([...this.rooms.values()].every((r) => r.joined)) this.#setStatus("live");
  }

  /** Start the next attempt now instead of waiting out the backoff (a "Retry now" button). */
  retryNow() {
    if (this.stopped || this.ws || this.retryTimer === null) return;
    this.connect(); // keeps `attempt`: a retry that fails again waits a little longer
  }

  // Exponential backoff with "equal jitter", so many clients dropped at once don't
  // all come back in the same instant: a delay in [ceiling / 2, ceiling], the ceiling
  // doubling with each failed attempt up to `cap` (reset once a room is joined again).
  #backoff(first = BACKOFF_FIRST_MS, cap = BACKOFF_CAP_MS) {
    const ceiling = Math.min(cap, first * 2 ** this.attempt);
    this.attempt += 1;
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  // Give up on the current socket without waiting for the browser to notice it's dead.
  #drop() {
    const ws = this.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.close();
    this.#closed(1006);
  }

  #forget() {
    this.ws = null;
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    for (const room of this.rooms.values()) room.joined = false;
  }

  #reconnectNow() {
    if (this.stopped || this.ws || this.retryTimer === null) return;
    this.attempt = 0;
    this.connect();
  }
}
