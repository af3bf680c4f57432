// Who is online in the room and who is typing.

const TYPING_SHOWN_MS = 6000;

export class Presence {
  constructor({ count, container, typing, me }) {
    Object.assign(this, { countEl: count, container, typingEl: typing, me });
    this.online = new Set();
    this.typing = new Map(); // username → timeout id
    this.known = false;
  }

  set(usernames) {
    this.online = new Set(usernames);
    this.known = true;
    this.#renderOnline();
  }

  update(username, online) {
    if (online) this.online.add(username);
    else this.online.delete(username);
    this.#renderOnline();
  }

  /** The socket is down: the list is no longer trustworthy. */
  unknown() {
    this.known = false;
    this.#renderOnline();
    for (const user of [...this.typing.keys()]) this.stoppedTyping(user);
  }

  startedTyping(username) {
    if (username === this.me) return;
    clearTimeout(this.typing.get(username));
    this.typing.set(username, setTimeout(() => this.stoppedTyping(username), TYPING_SHOWN_MS));
    this.#renderTyping();
  }

  stoppedTyping(username) {
    if (!this.typing.has(username)) return;
    clearTimeout(this.typing.get(username));
    this.typing.delete(username);
    this.#renderTyping();
  }

  #renderOnline() {
    if (!this.known) {
      this.countEl.textContent = "…";
      this.container.title = "";
      this.container.classList.remove("has-online");
      return;
    }
    const names = [...this.online].sort((a, b) => a.localeCompare(b));
    this.countEl.textContent = `${names.length} online`;
    this.container.title = names.join(", ");
    this.container.classList.toggle("has-online", names.length > 0);
  }

  #renderTyping() {
    const names = [...this.typing.keys()];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    this.typingEl.textContent = text;
  }
}
