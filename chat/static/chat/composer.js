// The message box: Enter sends, Shift+Enter breaks the line, the box grows with its text.

const MAX_CHARS = 4000; // code points, as the server counts them
const WARN_AT = 3500;
const TYPING_EVERY_MS = 3000; // the server forwards at most one typing frame per 3 s anyway

export function setupComposer({ form, input, counter, onSend, onTyping = () => {}, canSendEmpty = () => false }) {
  let lastTyping = 0;

  const resize = () => {
    input.style.height = "auto";
    input.style.height = `${input.scrollHeight}px`;
  };

  const length = () => [...input.value.trim()].length;

  const updateCount = () => {
    const n = length();
    counter.textContent = n >= WARN_AT ? `${n} / ${MAX_CHARS}` : "";
    counter.classList.toggle("over", n > MAX_CHARS);
  };

  const submit = () => {
    const body = input.value.trim();
    if ((!body && !canSendEmpty()) || length() > MAX_CHARS) return; // empty: with attachments only
    onSend(body);
    input.value = "";
    lastTyping = 0;
    resize();
    updateCount();
  };

  input.addEventListener("keydown", (event) => {
    // isComposing: Enter also confirms an IME composition (Japanese, Chinese…).
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  input.addEventListener("input", () => {
    resize();
    updateCount();
    const now = Date.now();
    if (input.value.trim() && now - lastTyping > TYPING_EVERY_MS) {
      lastTyping = now;
      onTyping();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
    input.focus();
  });

  return {
    disable(placeholder) {
      input.disabled = true;
      form.querySelector("button[type=submit]").disabled = true;
      if (placeholder) input.placeholder = placeholder;
    },
  };
}
