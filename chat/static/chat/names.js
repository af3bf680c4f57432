// Display names in the message headers. MESSAGE's `author` is the protocol's {id, username,
// bot}, so the page asks /users/names/?u=… for the authors it shows (in batches of up to 100,
// each username once per page) and writes the name in the header, with the username on hover
// (the user card, @mentions and everything else still go by username). Without a display
// name, or before the answer, the header shows the username.

const BATCH = 100;

export class DisplayNames {
  /** `root`: the element whose messages (`.msg[data-author]`) to decorate once names arrive. */
  constructor({ root }) {
    this.root = root;
    this.names = new Map(); // username → display name ("" for none)
    this.wanted = new Set(); // asked for, not answered yet
    this.queue = new Set(); // to ask for in the next batch
    this.timer = null;
  }

  /** Show the display names in `node`'s header and reply quote where known; ask for the rest. */
  decorate(node) {
    for (const label of node.querySelectorAll(".msg-author, .msg-quote-author")) {
      const username = label.dataset.user
        ?? (label.classList.contains("msg-author") ? node.dataset.author : label.textContent.trim());
      if (!username) continue;
      label.dataset.user = username;
      const name = this.names.get(username);
      if (name === undefined) {
        this.#want(username);
      } else if (name && label.textContent !== name) {
        label.textContent = name;
        if (label.classList.contains("msg-author")) label.title = `@${username}`;
      }
    }
  }

  #want(username) {
    if (this.wanted.has(username)) return;
    this.wanted.add(username);
    this.queue.add(username);
    this.timer ??= setTimeout(() => this.#ask(), 20); // one request for a whole page of history
  }

  async #ask() {
    this.timer = null;
    const batch = [...this.queue].slice(0, BATCH);
    for (const username of batch) this.queue.delete(username);
    if (this.queue.size) this.timer = setTimeout(() => this.#ask(), 0);
    let names = {};
    try {
      const query = new URLSearchParams(batch.map((username) => ["u", username]));
      const response = await fetch(`/users/names/?${query}`, { credentials: "same-origin" });
      if (response.ok) names = (await response.json()).names ?? {};
    } catch {
      // Offline: usernames it is, for this page.
    }
    for (const username of batch) this.names.set(username, names[username] ?? "");
    if (!batch.some((username) => this.names.get(username))) return;
    for (const node of this.root.querySelectorAll(".msg[data-author]")) this.decorate(node);
  }
}
