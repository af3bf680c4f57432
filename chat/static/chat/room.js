// The room page: wires the socket, the timeline, the outbox and the composer together.
// Start-up order matters: history over REST first, then `join` with `since` = the newest
// seq in that history, so the replay covers exactly the gap: nothing missed, nothing twice.
// Where the page opens: at a permalink's message (?m=<id>), else at the "new messages"
// line when there is unread, else at the bottom. The same socket also joins the user's
// other rooms for the live room list (badges.js).
// #chat[data-room-state] says where the page stands with its room: "joining" (loading, or
// the socket is reconnecting), "joined", "removed" (a `kicked` frame) or "unavailable" (its
// `join` was refused); the last two are final: the banner says so and the composer is off.

import { fetchHistory } from "./api.js";
import { setupAttachments, setupImageViewer } from "./attachments.js";
import { RoomList } from "./badges.js";
import { setupComposer } from "./composer.js";
import { ConnectionBanner } from "./connection.js";
import { dmPartner } from "./dm.js";
import { setupDrawer } from "./drawer.js";
import { setupEditor } from "./editor.js";
import { setupRovingFocus } from "./keys.js";
import { DisplayNames } from "./names.js";
import { Outbox } from "./outbox.js";
import { Presence } from "./presence.js";
import { h, paintAccountAvatar } from "./render.js";
import { setupRoomTools } from "./rooms.js";
import { setupSearch } from "./search.js";
import { ChatSocket } from "./socket.js";
import { reportTimezone } from "./timezone.js";
import { startTicker } from "./time.js";
import { Timeline } from "./timeline.js";
import { setupMessageMenu } from "./msgmenu.js";
import { setupReactions } from "./reactions.js";
import { setupThreads } from "./thread.js";
import { setupUserCards } from "./usercard.js";
import { Notifications, jumpFromHash } from "./notifications.js";
import { highlightMentions, setupMentionAutocomplete } from "./mentions.js";
import { setupCommandAutocomplete, setupCommandOutput } from "./commands.js";
import { NoticeBoard } from "./notices.js";

const $ = (id) => document.getElementById(id);
const chat = $("chat");
const slug = chat.dataset.roomSlug;
const me = document.body.dataset.username;
const dmWith = chat.dataset.dm === "true" ? dmPartner(chat.dataset.roomName, me) : null;
let roomName = dmWith ?? chat.dataset.roomName;
const readSeq = chat.dataset.readSeq === "" ? null : Number(chat.dataset.readSeq);
const focus = chat.dataset.focusId ? { id: Number(chat.dataset.focusId), seq: Number(chat.dataset.focusSeq) } : null;
const PAGE_FROM = 200; // messages per page when loading forward from a position
const PAGES_FROM = 10; // … at most this many pages; further back, the page opens at the bottom
const banner = $("banner");
const historyStatus = $("history-status");
let pageTitle = document.title;

const history = { ok: false, hasMoreBefore: false, loading: false, failedOlder: false };
let unseen = 0;
let editor = null; // set up below; the timeline asks it after each render
let readSent = 0;
let readTimer = null;

const displayNames = new DisplayNames({ root: document.getElementById("chat") });
const timeline = new Timeline({
  scroller: $("timeline"),
  list: $("messages"),
  pill: $("new-pill"),
  me,
  onNearTop: () => loadOlder(),
  onPinned: (pinned) => pinned && markRead(),
  onRender: (node) => {
    editor?.rerendered(node);
    displayNames.decorate(node);
  },
});
const presence = new Presence({ count: $("online-count"), container: $("online"), typing: $("typing"), me, dmWith });
const notices = new NoticeBoard({ container: $("notices"), room: slug });
const socket = new ChatSocket({ onFrame, onStatus });
const connection = new ConnectionBanner({ banner, retry: () => socket.retryNow() });
const threads = setupThreads({ chat, slug, me, socket, timeline, onRender: (node) => displayNames.decorate(node) });
setupReactions({ me, socket });
const roomList = new RoomList({ socket, me, current: slug });
const outbox = new Outbox({ room: slug, socket, timeline });
const files = setupAttachments({
  slug,
  tray: $("uploads"),
  button: $("attach"),
  fileInput: $("attach-input"),
  dropZone: chat,
  pasteTarget: $("composer-input"),
  maxBytes: Number($("composer").dataset.maxUpload) || 0,
});
const composer = setupComposer({
  form: $("composer"),
  input: $("composer-input"),
  counter: $("composer-count"),
  canSendEmpty: () => files.ready().length > 0,
  onSend: (body) => {
    outbox.submit(body, files.ready());
    files.clear();
  },
  onTyping: () => socket.isJoined(slug) && socket.send({ type: "typing", room: slug }),
});

function roomGone() {
  return ["removed", "unavailable"].includes(chat.dataset.roomState);
}

function setRoomState(state) {
  chat.dataset.roomState = state;
  connection.quiet = roomGone(); // the banner keeps saying so, whatever the connection does next
}

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
  const start = dmWith ? `This is the beginning of your conversation with ${dmWith}.` : `This is the very beginning of ${roomName}.`;
  showHistoryStatus(history.hasMoreBefore ? "" : start);
}

/**
 * Load from just before `seq` up to the newest message, contiguously (so `join` with
 * `since` covers the rest); returns the highest seq loaded, or null when it is too far back
 * (or history is unavailable) and the caller should open at the bottom instead.
 */
async function loadFrom(seq) {
  history.loading = true;
  showHistoryStatus("Loading messages…");
  let after = Math.max(0, seq - 10);
  let newest = 0;
  try {
    for (let i = 0; i < PAGES_FROM; i++) {
      const page = await fetchHistory(slug, { after, limit: PAGE_FROM });
      if (i === 0) history.hasMoreBefore = Boolean(page.has_more_before);
      timeline.addHistory(page.results);
      newest = page.results.reduce((max, m) => Math.max(max, m.seq), newest);
      if (!page.has_more_after || !page.results.length) {
        history.ok = true;
        showHistoryEdge();
        return newest;
      }
      after = newest;
    }
  } catch (error) {
    console.info("chat: history from a position unavailable", error);
  } finally {
    history.loading = false;
  }
  timeline.clear();
  return null;
}

/** Show message `id` (already loaded): scrolled to, highlighted, focused. */
function highlight(node) {
  timeline.scrollToNode(node);
  node.classList.remove("highlight");
  void node.offsetWidth; // restart the animation when the same message is shown again
  node.classList.add("highlight");
  roving.activate(node);
}

/** Open a message in context: here if it is loaded, else the room page at its permalink. */
function openMessage(msg) {
  const node = timeline.node(msg.id);
  if (node) highlight(node);
  else location.assign(`/rooms/${encodeURIComponent(slug)}/?m=${msg.id}`);
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
  // The status line sits above the messages: its changes must not move them either.
  timeline.keepPlace(() => showHistoryStatus("Loading earlier messages…"));
  try {
    const page = await fetchHistory(slug, { before });
    timeline.keepPlace(() => {
      timeline.addHistory(page.results, { older: true });
      history.hasMoreBefore = Boolean(page.has_more_before) && page.results.length > 0;
      showHistoryEdge();
    });
  } catch {
    history.failedOlder = true;
    timeline.keepPlace(() => showHistoryStatus("Couldn't load earlier messages.", () => {
      history.failedOlder = false;
      loadOlder();
    }));
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

// The newest seq the reader has seen: all of it at the bottom, else the newest message
// whose end is on screen.
function seenSeq() {
  if (timeline.atBottom) return socket.lastSeq(slug);
  const box = timeline.scroller.getBoundingClientRect();
  let seen = null;
  for (const node of timeline.list.children) {
    if (!node.dataset.seq) continue;
    const { bottom } = node.getBoundingClientRect();
    if (bottom > box.bottom) break;
    if (bottom > box.top) seen = Number(node.dataset.seq);
  }
  return seen;
}

// Read positions let other tabs and the rooms list drop their unread counts. They move
// only while the page is visible, and only over what was on screen.
function markRead() {
  clearTimeout(readTimer);
  readTimer = setTimeout(() => {
    const seq = seenSeq();
    if (document.hidden || !socket.isJoined(slug) || seq === null || seq <= readSent) return;
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
  if (roomList.onFrame(frame)) return; // about another room of the list
  if (threads.onFrame(frame)) return; // replies, reactions and the thread panel (thread.js)
  if (notices.onFrame(frame)) return; // the room's live values (notices.js)
  switch (frame.type) {
    case "joined":
      setRoomState("joined");
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
    case "command": // /help, /topic: nothing was stored; the text is for this tab alone
      outbox.answered(frame);
      if (frame.room === slug) showCommand(frame.text);
      break;
    case "typing":
      if (frame.room === slug) presence.startedTyping(frame.user);
      break;
    case "presence":
      if (frame.room === slug) presence.update(frame.user, frame.online);
      break;
    case "kicked":
      setRoomState("removed");
      presence.unknown();
      showBanner(`You were removed from this room.${frame.reason ? ` Reason: ${frame.reason}` : ""}`,
        { tone: "danger", link: { href: "/", text: "Back to rooms" } });
      composer.disable("You can't post in this room");
      break;
    case "error":
      if (outbox.error(frame)) break;
      if (frame.ref === `join:${slug}` && ["not_found", "forbidden", "invalid"].includes(frame.code)) {
        setRoomState("unavailable");
        showBanner(frame.code === "forbidden" ? "You're banned from this room." : "This room isn't available.",
          { tone: "danger", link: { href: "/", text: "Back to rooms" } });
        composer.disable("You can't post in this room");
      } else if (frame.code !== "unauthenticated") {
        console.warn("chat: server error frame", frame);
      }
      break;
    case "read": // another tab of ours read a room: its badge (or our own read position) moves
      readSent = Math.max(readSent, frame.seq);
      break;
    case "room.updated": // the owner or a moderator set the name or topic, here or in another tab
      if (frame.room === slug && !dmWith) retitleRoom(frame);
      break;
    default:
      break; // pong, left: nothing to show
  }
}

function showTopic(topic) {
  const line = $("room-topic");
  line.textContent = topic;
  line.hidden = !topic;
}

function retitleRoom({ name, topic }) {
  document.querySelector("#room-title .room-title-text").textContent = name;
  $("composer-input").placeholder = `Message #${name}`;
  showTopic(topic);
  roomName = name;
  pageTitle = pageTitle.replace(chat.dataset.roomName, name);
  chat.dataset.roomName = name;
  document.title = unseen ? `(${unseen}) ${pageTitle}` : pageTitle;
}

function onStatus(status, detail) {
  connection.show(status, detail);
  if (status === "live") return;
  if (!roomGone()) setRoomState("joining");
  outbox.disconnected();
  presence.unknown();
  if (status === "logged_out") {
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
reportTimezone();
startTicker(chat);
setupDrawer({ button: $("drawer-button"), drawer: $("rooms-nav") });
const input = $("composer-input");
editor = setupEditor({ timeline, composer: input, me });
const roving = setupRovingFocus({
  list: $("messages"),
  composer: input,
  onEnter: (node) => {
    const button = node.querySelector(".msg-menu-button");
    button?.click();
    return Boolean(button);
  },
});
setupUserCards({ root: $("messages"), me, isOnline: (username) => presence.isOnline(username) });
const notify = setupMessageMenu({
  root: $("messages"), slug, me, canModerate: chat.dataset.canModerate === "true", onEdit: (node) => editor.start(node),
});
const notifications = new Notifications({ slug, me });
highlightMentions({ list: $("messages"), me });
setupMentionAutocomplete({ form: $("composer"), input: $("composer-input"), slug, me });
setupCommandAutocomplete({ form: $("composer"), input: $("composer-input") });
const showCommand = setupCommandOutput({ form: $("composer") });
setupSearch({
  form: $("search"), input: $("search-input"), panel: $("search-results"), slug, roomLabel: () => (dmWith ? `@${dmWith}` : `#${roomName}`),
  onOpen: openMessage,
});
setupRoomTools({
  slug,
  notify: (text) => notify?.(text),
  onTopic: showTopic,
});
timeline.scroller.addEventListener("scroll", () => markRead(), { passive: true });
roomList.start();
input.focus();
setupImageViewer($("messages"));

setRoomState("joining");
socket.expect(slug); // "live" waits for this room's join too, not only the room list's
socket.connect(); // the handshake overlaps the history request
const roomSeq = Number(document.querySelector(`.sidebar [data-room="${CSS.escape(slug)}"]`)?.dataset.seq ?? 0);
let since = null;
let at = null; // the element to open at
if (focus) {
  since = await loadFrom(focus.seq);
  at = since !== null ? timeline.node(focus.id) : null;
} else if (readSeq !== null && readSeq < roomSeq) {
  since = await loadLatest();
  // The first unread isn't in the newest page: load forward from the read position instead.
  if (since !== null && history.hasMoreBefore && (timeline.oldestSeq ?? 0) > readSeq + 1) {
    timeline.clear();
    since = await loadFrom(readSeq);
  }
}
if (since === null) since = await loadLatest();
if (readSeq !== null) {
  const line = timeline.markUnread(readSeq);
  if (line && !at) timeline.scrollToNode(line, { start: true });
}
if (at) highlight(at);
socket.join(slug, since);
markRead();
if (history.hasMoreBefore && timeline.scroller.scrollHeight <= timeline.scroller.clientHeight) loadOlder();
jumpFromHash();
