// The user's time zone as this browser knows it (an IANA name), kept in their preferences
// (PATCH /api/v1/me/) so that other people's user cards show the user's local time. Sent
// only when it differs from the stored one (base.html's body data-timezone): once per
// device or move, not on every page.

import { updateMe } from "./api.js";

export function reportTimezone() {
  const stored = document.body.dataset.timezone;
  if (stored === undefined) return; // logged out
  let zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch {
    return;
  }
  if (!zone || zone === stored) return;
  updateMe({ timezone: zone })
    .then(() => { document.body.dataset.timezone = zone; })
    .catch((error) => console.info("chat: time zone not saved", zone, error.message));
}

/** The time now in `zone` ("14:05" or "2:05 PM", as the reader's locale writes times), or "" if unknown. */
export function localTime(zone, now = new Date()) {
  if (!zone) return "";
  try {
    return new Intl.DateTimeFormat(undefined, { timeZone: zone, hour: "numeric", minute: "2-digit" }).format(now);
  } catch {
    return "";
  }
}
