// Time formatting for messages. Relative labels go stale, so a ticker refreshes them.

const relativeFmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absoluteFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });
const clockFmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const dayYearFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "long" });
const shortDateFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export function relative(ms, now = Date.now()) {
  const delta = ms - now;
  const abs = Math.abs(delta);
  if (abs < 45_000) return "just now";
  if (abs < HOUR) return relativeFmt.format(Math.round(delta / MINUTE), "minute");
  if (abs < DAY) return relativeFmt.format(Math.round(delta / HOUR), "hour");
  if (abs < 7 * DAY) return relativeFmt.format(Math.round(delta / DAY), "day");
  return shortDateFmt.format(ms);
}

export const absolute = (ms) => absoluteFmt.format(ms);
export const clock = (ms) => clockFmt.format(ms);

export function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function dayLabel(ms, now = Date.now()) {
  if (dayKey(ms) === dayKey(now)) return "Today";
  if (dayKey(ms) === dayKey(now - DAY)) return "Yesterday";
  return new Date(ms).getFullYear() === new Date(now).getFullYear() ? dayFmt.format(ms) : dayYearFmt.format(ms);
}

/** A <time> element with a relative label and the absolute time on hover. */
export function timeElement(ms, className) {
  const t = document.createElement("time");
  t.className = className;
  t.dateTime = new Date(ms).toISOString();
  t.title = absolute(ms);
  t.dataset.relative = String(ms);
  t.textContent = relative(ms);
  return t;
}

export function startTicker(root, intervalMs = 30_000) {
  return setInterval(() => {
    const now = Date.now();
    for (const t of root.querySelectorAll("time[data-relative]")) {
      t.textContent = relative(Number(t.dataset.relative), now);
    }
    // "Today" becomes "Yesterday" at midnight for a page left open.
    for (const d of root.querySelectorAll(".day-divider[data-ts]")) {
      d.firstElementChild.textContent = dayLabel(Number(d.dataset.ts), now);
    }
  }, intervalMs);
}
