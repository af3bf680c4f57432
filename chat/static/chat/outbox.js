// Sending with a client_id: the message shows at once as pending, and the server's
// `ack` or broadcast (whichever comes first) turns it into the real message. The
// server dedupes on client_id, so re-sending after a reconnect or a retry is safe.

import { h } from "./render.js";

const FAILURES = {
  rate_limited: "You're sending messages too fast.",
  muted: "You're muted in this room.",
  room_locked: "This room is locked.",
  forbidden: "You can't post here.",
  not_joined: "Not connected to the room.",
  invalid: "This message can't be sent.",
  unavailable: "The server is busy.",
  server_error: "Something went wrong.",
};

export class Outbox {
  constructor({ room, socket, timeline }) {
    Object.assign(this, { room, socket, timeline });
    this.entries = new Map(); // client_id → { body, node, state: "queued" | "sending" | "failed" }
  }

  submit(body, attachments = []) {
    const clientId = crypto.randomUUID();
    const entry = { clientId, body, attachments, node: this.timeline.addPending(clientId, body), state: "queued" };
    this.entries.set(clientId, entry);
    this.#trySend(entry);
  }

  /** After `joined`: everything queued or possibly lost in flight goes out once, in order. */
  flush() {
    for (const entry of this.entries.values()) {
      if (entry.state !== "failed") this.#trySend(entry);
    }
  }

  /** The socket dropped: unacknowledged sends may never have arrived. */
  disconnected() {
    for (const entry of this.entries.values()) {
      if (entry.state === "sending") this.#setState(entry, "queued");
    }
  }

  ack(frame) {
    const entry = this.entries.get(frame.client_id);
    if (!entry) return;
    this.entries.delete(frame.client_id);
    this.timeline.confirm(entry.node, frame);
  }

  /** A `command` frame: the send was a command that stored nothing, so its pending element goes. */
  answered(frame) {
    const entry = this.entries.get(frame.client_id);
    if (!entry) return;
    this.entries.delete(frame.client_id);
    this.timeline.discard(entry.node);
  }

  /** The broadcast of one of this tab's messages: returns its pending element to reuse. */
  settle(clientId) {
    const entry = this.entries.get(clientId);
    if (!entry) return null;
    this.entries.delete(clientId);
    return entry.node;
  }

  /** An `error` frame; true when it answered one of our sends. */
  error(frame) {
    const entry = this.entries.get(frame.ref);
    if (!entry) return false;
    // An unknown command's detail lists the commands: more use than the generic line.
    const command = frame.code === "invalid" && entry.body.startsWith("/") && frame.detail;
    let reason = command || (FAILURES[frame.code] ?? frame.detail ?? "Not sent.");
    if (frame.retry_after) reason += ` Try again in ${Math.ceil(frame.retry_after)} s.`;
    this.#setState(entry, "failed", reason);
    return true;
  }

  #trySend(entry) {
    const sent = this.socket.isJoined(this.room) && this.socket.send({
      type: "send", room: this.room, body: entry.body, client_id: entry.clientId, ref: entry.clientId,
      ...(entry.attachments?.length ? { attachments: entry.attachments } : {}),
    });
    this.#setState(entry, sent ? "sending" : "queued");
  }

  #setState(entry, state, reason = "") {
    entry.state = state;
    entry.node.classList.toggle("failed", state === "failed");
    entry.node.querySelector(".msg-status")?.remove();
    let status;
    if (state === "queued") {
      status = h("div", { class: "msg-status" }, "Waiting for connection…");
    } else if (state === "failed") {
      const retry = h("button", { type: "button", class: "link-button" }, "Retry");
      retry.addEventListener("click", () => this.#trySend(entry));
      const drop = h("button", { type: "button", class: "link-button" }, "Discard");
      drop.addEventListener("click", () => {
        this.entries.delete(entry.clientId);
        this.timeline.discard(entry.node);
      });
      status = h("div", { class: "msg-status", role: "alert" }, `Not sent. ${reason} `, retry, " · ", drop);
    } else {
      status = h("div", { class: "msg-status visually-hidden" }, "Sending…");
    }
    entry.node.querySelector(".msg-main").append(status);
  }
}
