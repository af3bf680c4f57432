// Attachments: files chosen by the button, dropped on the room or pasted into the composer
// upload at once (POST /api/v1/rooms/<slug>/uploads/), each with a progress bar and a cancel
// button; the next message sends the ready ones. In messages, images show as thumbnails that
// open a full view, other files as a card (name, size, type). File names are text: they enter
// the DOM as text nodes only.

const MAX_FILES = 10; // per message, as the server allows

/** createElement with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(value.join("="));
  }
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

/** "48 KB", "3.2 MB": sizes as people read them. */
export function formatSize(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes;
  let unit = "B";
  for (const next of units) {
    if (value < 1000) break;
    value /= 1000;
    unit = next;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${unit}`;
}

function typeIcon(contentType) {
  if (contentType === "application/pdf") return "📄";
  if (/zip|tar|gzip|x-7z|rar|bzip2|xz/.test(contentType)) return "🗜";
  if (contentType.startsWith("image/")) return "🖼";
  if (contentType.startsWith("video/")) return "🎞";
  if (contentType.startsWith("audio/")) return "🎵";
  return "📎";
}

function typeLabel(contentType) {
  if (contentType === "application/octet-stream") return "File";
  const sub = contentType.split("/")[1] ?? contentType;
  return sub.replace(/^x-/, "").replace(/^vnd\./, "").toUpperCase();
}

// --- in messages ----------------------------------------------------------------------

/** The files of MESSAGE `msg` as an element, or null when it has none. */
export function attachmentsElement(msg) {
  const files = msg.deleted ? [] : msg.attachments ?? [];
  if (!files.length) return null;
  const box = el("div", { class: "msg-files" });
  for (const file of files) {
    if (file.thumbnail_url) {
      const img = el("img", { src: file.thumbnail_url, alt: file.name, loading: "lazy", class: "msg-thumb" });
      if (file.width && file.height) {
        const scale = Math.min(1, 400 / Math.max(file.width, file.height));
        img.width = Math.round(file.width * scale);
        img.height = Math.round(file.height * scale);
      }
      box.append(el("a", { href: file.url, class: "msg-image", "data-full": file.url, "data-name": file.name,
        "aria-label": `Open image ${file.name}` }, img));
    } else {
      box.append(el("a", { href: file.url, class: "file-card", download: file.name },
        el("span", { class: "file-icon", "aria-hidden": "true" }, typeIcon(file.content_type)),
        el("span", { class: "file-meta" },
          el("span", { class: "file-name" }, file.name),
          el("span", { class: "file-info" }, `${formatSize(file.size)} · ${typeLabel(file.content_type)}`))));
    }
  }
  return box;
}

/** Clicking a thumbnail in `root` opens the image in a full view (a modal dialog). */
export function setupImageViewer(root) {
  const img = el("img", { class: "viewer-image", alt: "" });
  const caption = el("span", { class: "viewer-name" });
  const close = el("button", { type: "button", class: "icon-button viewer-close", "aria-label": "Close" }, "×");
  const download = el("a", { class: "link-button viewer-open", target: "_blank", rel: "noopener" }, "Open original");
  const dialog = el("dialog", { class: "viewer", "aria-label": "Image" },
    el("div", { class: "viewer-bar" }, caption, download, close), img);
  document.body.append(dialog);
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  dialog.addEventListener("close", () => img.removeAttribute("src"));
  root.addEventListener("click", (event) => {
    const link = event.target.closest("a.msg-image");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    img.src = link.dataset.full;
    img.alt = link.dataset.name ?? "";
    caption.textContent = link.dataset.name ?? "";
    download.href = link.dataset.full;
    dialog.showModal();
    close.focus();
  });
}

// --- in the composer ------------------------------------------------------------------

/**
 * Uploads for the next message. `slug`: the room; `tray`: where the pending files show;
 * `button`, `fileInput`: the attach button and its hidden <input type=file>; `dropZone`:
 * the element files may be dropped on; `pasteTarget`: the composer's textarea; `maxBytes`:
 * CHAT_MAX_UPLOAD; `onChange`: called whenever the set of files changes.
 * Returns { ready(): ids of the uploaded files, busy(): any still uploading, clear() }.
 */
export function setupAttachments({ slug, tray, button, fileInput, dropZone, pasteTarget, maxBytes, onChange = () => {} }) {
  const items = []; // { id, file, state: "uploading" | "ready" | "failed", xhr, node }

  const changed = () => {
    tray.hidden = items.length === 0;
    onChange();
  };

  const remove = (item) => {
    item.xhr?.abort();
    items.splice(items.indexOf(item), 1);
    item.node.remove();
    changed();
  };

  const fail = (item, text) => {
    item.state = "failed";
    item.node.classList.add("failed");
    item.node.querySelector("progress")?.remove();
    item.status.textContent = text;
    item.status.setAttribute("role", "alert");
    item.cancel.textContent = "Dismiss";
    item.cancel.setAttribute("aria-label", `Dismiss ${item.file.name}`);
    changed();
  };

  const add = (file) => {
    const cancel = el("button", { type: "button", class: "icon-button upload-cancel", "aria-label": `Cancel ${file.name}` }, "×");
    const progress = el("progress", { max: "100", value: "0", "aria-label": `Uploading ${file.name}` });
    const status = el("span", { class: "upload-status" }, formatSize(file.size));
    const node = el("li", { class: "upload" },
      el("span", { class: "upload-name" }, file.name), progress, status, cancel);
    const item = { id: null, file, state: "uploading", xhr: null, node, status, cancel };
    cancel.addEventListener("click", () => remove(item));
    items.push(item);
    tray.append(node);
    changed();

    if (items.filter((i) => i.state !== "failed").length > MAX_FILES) {
      fail(item, `At most ${MAX_FILES} files per message.`);
      return;
    }
    if (maxBytes && file.size > maxBytes) {
      fail(item, `Too large: files are limited to ${formatSize(maxBytes)}.`);
      return;
    }
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open("POST", `/api/v1/rooms/${encodeURIComponent(slug)}/uploads/`);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) progress.value = Math.round((event.loaded / event.total) * 100);
    });
    xhr.addEventListener("load", () => {
      item.xhr = null;
      const data = xhr.response;
      if (xhr.status === 201 && data?.id) {
        item.id = data.id;
        item.state = "ready";
        progress.remove();
        node.classList.add("ready");
        status.textContent = `${formatSize(data.size)} · ready`;
        cancel.setAttribute("aria-label", `Remove ${file.name}`);
        changed();
      } else if (xhr.status === 413) {
        fail(item, `Too large: files are limited to ${formatSize(maxBytes)}.`);
      } else if (xhr.status === 429) {
        const wait = Number(xhr.getResponseHeader("Retry-After")) || Math.ceil(data?.retry_after ?? 0);
        fail(item, `Too many uploads: try again${wait ? ` in ${wait} s` : " later"}.`);
      } else {
        fail(item, data?.detail ? `Not uploaded: ${data.detail}` : `Not uploaded (HTTP ${xhr.status}).`);
      }
    });
    xhr.addEventListener("error", () => {
      item.xhr = null;
      // A server refuses an oversize body by closing the connection before the browser has sent it.
      fail(item, maxBytes && file.size > maxBytes ? "Too large." : "Not uploaded: the connection failed.");
    });
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  };

  const addAll = (files) => {
    for (const file of files) add(file);
  };

  button.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    addAll(fileInput.files);
    fileInput.value = "";
  });
  let depth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes("Files");
  dropZone.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    depth += 1;
    dropZone.classList.add("dropping");
  });
  dropZone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) dropZone.classList.remove("dropping");
  });
  dropZone.addEventListener("dragover", (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  dropZone.addEventListener("drop", (event) => {
    if (!event.dataTransfer?.files?.length) return;
    event.preventDefault();
    depth = 0;
    dropZone.classList.remove("dropping");
    addAll(event.dataTransfer.files);
  });
  pasteTarget.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files ?? [])];
    if (!files.length) return;
    event.preventDefault();
    addAll(files);
  });

  return {
    ready: () => items.filter((i) => i.state === "ready").map((i) => i.id),
    busy: () => items.some((i) => i.state === "uploading"),
    /** After a send: the ready files went with it; failed ones stay to be read and dismissed. */
    clear() {
      for (const item of items.filter((i) => i.state === "ready")) {
        items.splice(items.indexOf(item), 1);
        item.node.remove();
      }
      changed();
    },
  };
}
