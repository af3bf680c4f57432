import { fillUnreadBadges } from "./badges.js";
import { paintAccountAvatar } from "./render.js";

paintAccountAvatar();
fillUnreadBadges();
// Counts change while the tab sits in the background; refresh when the reader comes back.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) fillUnreadBadges();
});
