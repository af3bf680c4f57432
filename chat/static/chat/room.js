// The room page: wires the socket, the timeline, the outbox and the composer together.
// Start-up order matters: history over REST first, then `join` with `since` = the newest
// seq in that history, so the replay covers exactly the gap: nothing missed, nothing twice.

import { fetchHistory } from "./api.js";
import { watchUnreadBadges } from "./badges.js";
import { setupComposer } from "./composer.js";
import { Outbox } from "./outbox.js";
import { Presence } from "./presence.js";
import { h, paintAccountAvatar } from "./render.js";
import { ChatSocket } from "./socket.js";
import { startTicker } from "./time.js";
import { Timeline } from "./timeline.js";
import { setupMessageMenu } from "./msgmenu.js";
import { setupUserCards } from "./usercard.js";
import { Notifications, jumpFromHash } from "./notifications.js";
import { highlightMentions, setupMentionAutocomplete } from "./mentions.js";

const $ = (id) => document.getElementById(id);
const chat = $("chat");
const slug = chat.dataset.roomSlug;
const roomName = chat.dataset.roomName;
const me = document.body.dataset.username;
const banner = $("banner");
const historyStatus = $("history-status");
const pageTitle = document.title;

const history = { ok: false, hasMoreBefore: false, loading: false, failedOlder: false };
let unseen = 0;
let readSent = 0;
let readTimer = null;

const timeline = new Timeline({
  scroller: $("timeline"),
  list: $("messages"),
  pill: $("new-pill"),
  me,
  onNearTop: () => loadOlder(),
  onPinned: (pinned) => pinned && markRead(),
});
const presence = new Presence({ count: $("online-count"), container: $("online"), typing: $("typing"), me });
const socket = new ChatSocket({ onFrame, onStatus });
const outbox = new Outbox({ room: slug, socket, timeline });
const composer = setupComposer({
  form: $("composer"),
  input: $("composer-input"),
  counter: $("composer-count"),
  onSend: (body) => outbox.submit(body),
  onTyping: () => socket.isJoined(slug) && socket.send({ type: "typing", room: slug }),
});

function showBanner(text, { link = null, tone = "info" } = {}) {
  banner.hidden = false;
  banner.dataset.tone = tone;
  banner.replaceChildren(text);
  if (link) banner.append(" ", h("a", { href: link.href }, link.text));
}

function showHistoryStatus(text, retry = null) {
  historyStatus.replaceChildren();
  if (!text) return;
  historyStatus.append(h("p", {}, text));
  if (retry) {
    const button = h("button", { type: "button", class: "link-button" }, "Try again");
    button.addEventListener("click", retry);
    historyStatus.append(button);
  }
}

function showHistoryEdge() {
  showHistoryStatus(history.hasMoreBefore ? "" : `This is the very beginning of ${roomName}.`);
}

/** Load the newest page; returns the highest seq in it, or null when history is unavailable. */
async function loadLatest() {
  history.loading = true;
  showHistoryStatus("Loading messages…");
  try {
    const page = await fetchHistory(slug);
    timeline.addHistory(page.results);
    history.ok = true;
    history.hasMoreBefore = Boolean(page.has_more_before);
    showHistoryEdge();
    return page.results.reduce((max, m) => Math.max(max, m.seq), 0);
  } catch (error) {
    console.info("chat: history unavailable, showing live messages only", error);
    history.ok = false;
    showHistoryStatus("Earlier messages can't be loaded right now. New messages will appear here.");
    return null;
  } finally {
    history.loading = false;
  }
}

async function loadOlder() {
  const before = timeline.oldestSeq;
  if (!history.ok || !history.hasMoreBefore || history.loading || history.failedOlder || before === null) return;
  history.loading = true;
  showHistoryStatus("Loading earlier messages…");
  try {
    const page = await fetchHistory(slug, { before });
    timeline.addHistory(page.results, { older: true });
    history.hasMoreBefore = Boolean(page.has_more_before) && page.results.length > 0;
    showHistoryEdge();
  } catch {
    history.failedOlder = true;
    showHistoryStatus("Couldn't load earlier messages.", () => {
      history.failedOlder = false;
      loadOlder();
    });
  } finally {
    history.loading = false;
  }
  // A short page may not fill the screen, so no scroll event would ask for more.
  if (history.hasMoreBefore && timeline.scroller.scrollTop < 300) requestAnimationFrame(loadOlder);
}

// After `joined` with resync the server replays nothing: start over from REST. Pending
// messages stay; the socket already counts from the room's current seq.
async function resync() {
  timeline.clear();
  history.failedOlder = false;
  await loadLatest();
}

// Read positions let other tabs and the rooms list drop their unread counts.
function markRead() {
  clearTimeout(readTimer);
  readTimer = setTimeout(() => {
    const seq = socket.lastSeq(slug);
    if (document.hidden || !timeline.pinned || !socket.isJoined(slug) || seq === null || seq <= readSent) return;
    if (socket.send({ type: "read", room: slug, seq })) {
      readSent = seq;
      notifications.read(slug, seq);
    }
  }, 800);
}

function noteUnseen(msg) {
  if (!document.hidden || msg.author.username === me) return;
  unseen += 1;
  document.title = `(${unseen}) ${pageTitle}`;
}

function onFrame(frame) {
  notifications.onFrame(frame);
  switch (frame.type) {
    case "joined":
      presence.set(frame.online ?? []);
      if (frame.resync) resync();
      outbox.flush();
      markRead();
      break;
    case "message": {
      const msg = frame.message;
      const mine = msg.author.username === me;
      timeline.putLive(msg, mine ? outbox.settle(msg.client_id) : null);
      presence.stoppedTyping(msg.author.username);
      noteUnseen(msg);
      markRead();
      break;
    }
    case "message.edited":
      timeline.edit(frame.message);
      break;
    case "message.deleted":
      timeline.remove(frame.id, frame.by);
      break;
    case "ack":
      outbox.ack(frame);
      break;
    case "typing":
      if (frame.room === slug) presence.startedTyping(frame.user);
      break;
    case "presence":
      if (frame.room === slug) presence.update(frame.user, frame.online);
      break;
    case "kicked":
      showBanner(`You were removed from this room.${frame.reason ? ` Reason: ${frame.reason}` : ""}`,
        { tone: "danger", link: { href: "/", text: "Back to rooms" } });
      composer.disable("You can't post in this room");
      break;
    case "error":
      if (outbox.error(frame)) break;
      if (frame.ref === `join:${slug}` && ["not_found", "forbidden", "invalid"].includes(frame.code)) {
        showBanner(frame.code === "forbidden" ? "You're banned from this room." : "This room isn't available.",
          { tone: "danger", link: { href: "/", text: "Back to rooms" } });
        composer.disable("You can't post in this room");
      } else if (frame.code !== "unauthenticated") {
        console.warn("chat: server error frame", frame);
      }
      break;
    case "read": // another tab of ours read a room: its badge (or our own read position) moves
      if (frame.room === slug) readSent = Math.max(readSent, frame.seq);
      else refreshBadges();
      break;
    default:
      break; // pong, left: nothing to show
  }
}

function onStatus(status) {
  if (status === "live") {
    banner.hidden = true;
    refreshBadges();
    return;
  }
  outbox.disconnected();
  presence.unknown();
  if (status === "connecting") showBanner("Connecting…");
  else if (status === "reconnecting") showBanner("Reconnecting…", { tone: "warn" });
  else if (status === "logged_out") {
    const login = `/accounts/login/?next=${encodeURIComponent(location.pathname)}`;
    showBanner("You're logged out: your session has ended.", { tone: "danger", link: { href: login, text: "Log in again" } });
    composer.disable("Log in again to send messages");
  } else if (status === "banned") {
    showBanner("Your account has been banned.", { tone: "danger" });
    composer.disable("You can't send messages");
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  unseen = 0;
  document.title = pageTitle;
  markRead();
});

paintAccountAvatar();
// On phones the rooms are a horizontal strip; make sure the current one is visible.
document.querySelector(".room-nav [aria-current]")?.scrollIntoView({ block: "nearest", inline: "nearest" });
startTicker(chat);
const refreshBadges = watchUnreadBadges({ skip: slug });
setupUserCards({ root: $("messages"), me, isOnline: (username) => presence.isOnline(username) });
setupMessageMenu({ root: $("messages"), slug, me, canModerate: chat.dataset.canModerate === "true" });
const notifications = new Notifications({ slug, me });
highlightMentions({ list: $("messages"), me });
setupMentionAutocomplete({ form: $("composer"), input: $("composer-input"), slug, me });

socket.connect(); // the handshake overlaps the history request
const since = await loadLatest();
socket.join(slug, since);
if (history.hasMoreBefore && timeline.scroller.scrollHeight <= timeline.scroller.clientHeight) loadOlder();
jumpFromHash();
